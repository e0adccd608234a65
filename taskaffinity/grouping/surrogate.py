"""Surrogate models of group gains: each member's gain in a task subset, fitted on measured subsets.

Setting (MTG-Net, Song et al. 2022, NeurIPS): a subset ``S`` of tasks is trained jointly, and
member ``t``'s gain ``g_t(S)`` is its metric in ``S`` minus its metric trained alone. The
surrogate is fitted on a sample of measured subsets and predicts ``g_t(S)`` for the others, so a
grouping can be scored by predicted group gains instead of averages of pairs (TAG's score, Fifty
et al. 2021, which ranks MTG-Net's measured MIMIC-III group gains at 0.35 within target even with
measured pairs; docs/grouping.md, "Group gains").

**One model per target.** ``g_t`` is defined only when ``t`` is trained, so each target gets its own
regression on the subsets that contain it (Li et al. 2023 fit one surrogate per target task). A
single model with target features (MTG-Net's task embeddings) could share strength between
targets, but it needs a neural meta-learner and assumes targets respond alike; per-target models
need only ``~n`` subsets per target for the linear form (Li et al. 2023: linearly many in the
number of tasks) and choose their own regularisation.

**Feature map** (Li et al. 2023; ``kernelsm_score`` in VirtuosoResearch/Kernel-surrogate-models):
the subset's 0/1 task indicator. Within a target's model its own entry is always 1, so the
features are the indicators of its ``n - 1`` possible mates (the RBF distance is unchanged).

* :class:`LinearSurrogate`: ``g_t(S) = b_t + sum_{s in S, s != t} theta[s, t]`` (Li et al. 2023,
  "Identification of Negative Transfers in Multitask Learning Using Surrogate Models", TMLR;
  ``theta`` are their relevance scores). Ridge, its penalty chosen by leave-one-out error
  (``RidgeCV``); at the smallest penalty it is the least-squares fit of the reference code.
* :class:`KernelSurrogate`: kernel ridge regression with ``k(S, S') = exp(-gamma |S xor S'|)``
  (RBF on indicators; Zhang, Duan & Zhang 2026, "Efficient Estimation of Kernel Surrogate Models
  for Task Attribution", ICLR), on the target's centred gains; ``gamma`` and the penalty chosen by
  inner K-fold cross-validation (``GridSearchCV``) on grids around the reference code's
  ``gamma = 1 / n_features`` and penalty 0.1. Captures interactions of every order.

Hyper-parameters are chosen by inner cross-validation on the training subsets only, never on
held-out ones. A group of one has gain 0 by definition (it is the reference), not a prediction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ._base import GroupingError
from .subsets import as_gains, as_indicators, check_tasks

LINEAR_ALPHAS = tuple(np.logspace(-3, 3, 13))  # ridge penalties (gain units drop out: 0/1 features)
KERNEL_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # the reference code uses 0.1 (ICL) and 0.01 (modular)
KERNEL_GAMMAS = (0.25, 0.5, 1.0, 2.0, 4.0)  # multiples of 1 / n_features (the reference default)


class GroupGainSurrogate(BaseEstimator):
    """Base of the per-target surrogates: ``fit(subsets, gains) -> self``, ``predict(subsets)``.

    ``subsets``: 0/1 rows (DataFrame with task columns, or array in ``tasks`` order) or task-name
    lists; ``gains``: the members' measured gains, same shape (non-members ignored, NaN = not
    measured). See :func:`.subsets.as_indicators` and :func:`.subsets.as_gains`.

    After ``fit``: ``tasks_``, ``targets_`` (tasks with a model), ``n_subsets_`` (target ->
    training subsets), ``models_`` (target -> fitted scikit-learn regressor), ``subsets_`` (the
    training indicator matrix, the reference set of :meth:`source_effects`).
    """

    def _regressor(self, n_mates: int, n_rows: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_params(self) -> None:
        if (
            isinstance(self.min_subsets, bool)
            or not isinstance(self.min_subsets, (int, np.integer))
            or self.min_subsets < 2
        ):
            raise GroupingError(f"min_subsets must be an integer >= 2, got {self.min_subsets!r}")

    def fit(self, subsets, gains) -> GroupGainSurrogate:
        self._check_params()
        tasks = None if self.tasks is None else check_tasks(self.tasks)
        tasks, M, index = as_indicators(subsets, tasks, "subsets")
        G = as_gains(gains, M, tasks, index, "gains")
        self.tasks_, self.subsets_ = tasks, M
        self.models_, self.n_subsets_ = {}, {}
        for t, task in enumerate(tasks):
            rows = M[:, t] & np.isfinite(G[:, t])
            self.n_subsets_[task] = int(rows.sum())
            if rows.sum() < self.min_subsets:
                continue
            X = self._mates(M[rows], t)
            self.models_[task] = self._regressor(X.shape[1], len(X)).fit(X, G[rows, t])
        if not self.models_:
            raise GroupingError(
                f"gains: no task is a measured member of at least min_subsets = {self.min_subsets} "
                f"subsets (most: {max(self.n_subsets_.values())})"
            )
        self.targets_ = [t for t in tasks if t in self.models_]
        return self

    @staticmethod
    def _mates(M: np.ndarray, t: int) -> np.ndarray:
        return np.delete(M, t, axis=1).astype(float)

    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise GroupingError(f"{type(self).__name__} is not fitted: call fit(subsets, gains) first")

    def predict_members(self, M: np.ndarray) -> np.ndarray:
        """Predicted gain of every member of the boolean (n_subsets, n_tasks) matrix ``M``, in
        ``tasks_`` order: NaN for non-members and for targets without a model, 0 for groups of one."""
        self._check_fitted()
        out = np.full(M.shape, np.nan)
        size = M.sum(axis=1)
        for t, task in enumerate(self.tasks_):
            members = M[:, t]
            out[members & (size == 1), t] = 0.0
            rows = members & (size >= 2)
            if task in self.models_ and rows.any():
                out[rows, t] = self.models_[task].predict(self._mates(M[rows], t))
        return out

    def predict(self, subsets):
        """Predicted member gains of ``subsets`` (same forms as ``fit``): a DataFrame (subsets x
        ``tasks_``) when ``subsets`` is one, else an (n_subsets, n_tasks) array. NaN for non-members."""
        self._check_fitted()
        _, M, index = as_indicators(subsets, self.tasks_, "subsets")
        out = self.predict_members(M)
        if index is not None:
            return pd.DataFrame(out, index=index, columns=self.tasks_)
        return out

    def source_effects(self, target: str) -> pd.Series:
        """Each source's mean effect on ``target``'s predicted gain: over the target's training
        subsets ``S``, the mean of ``g(S + s) - g(S - s)`` (the average marginal contribution, Li et
        al. 2023's relevance score; for :class:`LinearSurrogate` exactly ``theta[s, target]``)."""
        self._check_fitted()
        if target not in self.tasks_:
            raise GroupingError(f"unknown target task '{target}' (tasks: {', '.join(self.tasks_)})")
        if target not in self.models_:
            raise GroupingError(
                f"target '{target}' has no model: {self.n_subsets_[target]} measured subsets "
                f"< min_subsets = {self.min_subsets}"
            )
        t = self.tasks_.index(target)
        reference = self._mates(self.subsets_[self.subsets_[:, t]], t)
        model = self.models_[target]
        sources = [s for s in self.tasks_ if s != target]
        effects = []
        for j in range(len(sources)):
            with_s, without = reference.copy(), reference.copy()
            with_s[:, j], without[:, j] = 1.0, 0.0
            effects.append(float(np.mean(model.predict(with_s) - model.predict(without))))
        return pd.Series(effects, index=pd.Index(sources, name="source"), name=target)


class LinearSurrogate(GroupGainSurrogate):
    """Per-target linear surrogate (Li et al. 2023): ``g_t(S) = b_t + sum_{s in S - t} theta[s, t]``.

    Keyword-only: ``tasks`` (task order for arrays / name lists), ``alphas`` (ridge penalties,
    chosen per target by leave-one-out error), ``min_subsets`` (a target measured in fewer subsets
    gets no model; its predictions are NaN).

    After ``fit``, besides the base attributes: ``coef_`` (sources x targets DataFrame of
    ``theta``, the affinity convention: row = source, column = target; NaN on the diagonal and
    for targets without a model), ``intercept_`` and ``alpha_`` (per target Series).
    """

    def __init__(self, *, tasks=None, alphas=LINEAR_ALPHAS, min_subsets: int = 3):
        self.tasks = tasks
        self.alphas = alphas
        self.min_subsets = min_subsets

    def _check_params(self) -> None:
        super()._check_params()
        _check_positive("alphas", self.alphas)

    def _regressor(self, n_mates, n_rows):
        from sklearn.linear_model import RidgeCV

        return RidgeCV(alphas=np.asarray(self.alphas, dtype=float))

    def fit(self, subsets, gains) -> LinearSurrogate:
        super().fit(subsets, gains)
        coef = pd.DataFrame(np.nan, index=self.tasks_, columns=self.tasks_)
        for target, model in self.models_.items():
            coef.loc[[s for s in self.tasks_ if s != target], target] = model.coef_
        self.coef_ = coef
        self.intercept_ = pd.Series({t: float(m.intercept_) for t, m in self.models_.items()})
        self.alpha_ = pd.Series({t: float(m.alpha_) for t, m in self.models_.items()})
        return self


class KernelSurrogate(GroupGainSurrogate):
    """Per-target RBF kernel ridge surrogate (kernel surrogate models, Zhang et al. 2026).

    ``k(S, S') = exp(-gamma * |S xor S'|)`` on the mates' indicators, on the target's centred
    gains. Keyword-only: ``tasks``; ``alphas`` (penalties) and ``gammas`` (multiples of
    ``1 / (n - 1)``, the reference code's ``1 / n_features``) searched by ``cv``-fold inner
    cross-validation (mean squared error; fewer folds when a target has fewer subsets);
    ``min_subsets``; ``seed`` (fold shuffling).

    After ``fit``, besides the base attributes: ``alpha_`` and ``gamma_`` (per target Series,
    ``gamma_`` absolute) and ``cv_mse_`` (inner cross-validated mean squared error of the choice).
    """

    def __init__(
        self,
        *,
        tasks=None,
        alphas=KERNEL_ALPHAS,
        gammas=KERNEL_GAMMAS,
        cv: int = 5,
        min_subsets: int = 3,
        seed: int = 0,
    ):
        self.tasks = tasks
        self.alphas = alphas
        self.gammas = gammas
        self.cv = cv
        self.min_subsets = min_subsets
        self.seed = seed

    def _check_params(self) -> None:
        super()._check_params()
        _check_positive("alphas", self.alphas)
        _check_positive("gammas", self.gammas)
        if isinstance(self.cv, bool) or not isinstance(self.cv, (int, np.integer)) or self.cv < 2:
            raise GroupingError(f"cv must be an integer >= 2, got {self.cv!r}")

    def _regressor(self, n_mates, n_rows):
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.kernel_ridge import KernelRidge
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.preprocessing import StandardScaler

        # Centre the gains: kernel ridge has no intercept, and shrinking towards the target's
        # mean gain (not towards 0) is what a surrogate of one target's gains should do.
        model = TransformedTargetRegressor(
            regressor=KernelRidge(kernel="rbf"), transformer=StandardScaler(with_std=False)
        )
        grid = {
            "regressor__alpha": [float(a) for a in self.alphas],
            "regressor__gamma": [float(g) / max(n_mates, 1) for g in self.gammas],
        }
        folds = KFold(n_splits=min(self.cv, n_rows), shuffle=True, random_state=self.seed)
        return GridSearchCV(model, grid, cv=folds, scoring="neg_mean_squared_error")

    def fit(self, subsets, gains) -> KernelSurrogate:
        super().fit(subsets, gains)
        self.alpha_ = pd.Series({t: m.best_params_["regressor__alpha"] for t, m in self.models_.items()})
        self.gamma_ = pd.Series({t: m.best_params_["regressor__gamma"] for t, m in self.models_.items()})
        self.cv_mse_ = pd.Series({t: -float(m.best_score_) for t, m in self.models_.items()})
        return self


def _check_positive(name: str, values) -> None:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        array = np.array([])
    if array.ndim != 1 or not len(array) or not (np.isfinite(array) & (array > 0)).all():
        raise GroupingError(f"{name} must be a sequence of positive numbers, got {values!r}")


SURROGATES = {"linear": LinearSurrogate, "kernel": KernelSurrogate}


def make_surrogate(kind: str, **settings) -> GroupGainSurrogate:
    """The surrogate of a kind name (``linear`` or ``kernel``) with its keyword settings."""
    if kind not in SURROGATES:
        raise GroupingError(f"unknown surrogate '{kind}' (choose from {', '.join(SURROGATES)})")
    return SURROGATES[kind](**settings)
