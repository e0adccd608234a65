"""Loss weighting: how one update combines the per-task mean losses L_i of its heterogeneous batch.

The update minimises Σ_i m_i · L_i (plus a regulariser for learned weights), with
m_i = λ_i / s_i: s_i the loss scale (log n_classes with ``training.loss_scaling``, Muppet
Eq. 1; 1 otherwise) and λ_i the scheme's weight (``training.weighting``):

    muppet       λ_i = b_i / B, the task's share of the batch (Aghajanyan et al. 2021)
    equal        λ_i = 1
    uncertainty  λ_i = c_i exp(−v_i), regulariser v_i / 2, with v_i = log σ_i² (task i's
                 homoscedastic variance) learned by the optimizer; c_i = 1 for classification, ½ for regression
                 (Kendall, Gal & Cipolla 2018, Eqs. 7 and 10)
    gradnorm     λ_i = w_i, Σ_i w_i = k, w trained so that the gradient norms of the weighted
                 losses on the last shared layer track the tasks' relative inverse training
                 rates (Chen et al. 2018, Eq. 2)
    dtp          λ_i = −(1 − κ_i)^γ log κ_i, κ_i a running KPI of task i (Guo et al. 2018, Eq. 3)

``m_i`` is what ``steps.parquet`` records as ``weight``. Every scheme is a small class:
``weights(step_context)`` gives m_i for the tasks of the step (from what is known before its
forward pass), ``observe(step, losses, layer_norms)`` learns from the step once its global
losses (and, for GradNorm, per-task gradient norms) are known, ``parameters()`` are the
tensors the optimizer trains (uncertainty's σ), ``state_dict`` / ``load_state_dict`` (JSON
floats, which round-trip float32 exactly) go into checkpoints so a resumed run is bit-identical.
"""

from __future__ import annotations

import math

import torch

from ..model.heads import loss_scale
from ..tasks.spec import REGRESSION


class LossWeighting:
    """Base class: fixed weights, nothing learned."""

    needs_task_gradients = False  # the trainer must compute per-task gradients for ``observe``

    def __init__(self, tasks: dict, loss_scales: dict[str, float]):
        self.tasks = list(tasks)
        self.loss_scales = loss_scales

    def weights(self, context) -> dict[str, float]:
        """m_i for every task of the step (``context``: :class:`~taskaffinity.training.callbacks.StepContext`)."""
        return {task: self.weight(task, context) / self.loss_scales[task] for task in context.counts}

    def weight(self, task: str, context) -> float:
        return 1.0

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def observe(self, step: int, losses: dict[str, float], layer_norms: dict[str, float] | None) -> None:
        """The step's global per-task mean losses L_i and, when ``needs_task_gradients`` and the
        encoder trains, ‖m_i ∇_W L_i‖ on the last shared layer W."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class MuppetWeighting(LossWeighting):
    """λ_i = b_i / B: the batch-share weighting of the joint trainer (the default)."""

    def weights(self, context) -> dict[str, float]:
        total = sum(context.counts.values())
        # the same expression, in the same order, as before weighting schemes existed: bit-identical runs
        return {task: count / total / self.loss_scales[task] for task, count in context.counts.items()}


class EqualWeighting(LossWeighting):
    """λ_i = 1: every task's mean loss counts the same, whatever its share of the batch."""


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018).

    Per task a learned log-variance v_i = log σ_i² (a scalar parameter, 0 at start: λ_i = c_i)
    in the objective c_i exp(−v_i) ℓ_i + v_i / 2, with ℓ_i = L_i / s_i and c_i = ½ for
    regression (Eq. 7: 1/(2σ²) L + log σ), 1 for classification (Eq. 10: 1/σ² L + log σ). The
    model sees the weight c_i exp(−v_i); v_i's gradient, −c_i exp(−v_i) ℓ_i + ½, is written into
    its ``.grad`` and the trainer's AdamW (lr ``training.weighting_lr``, no weight decay)
    steps it. One parameter per task, so a task absent from an update leaves its v_i alone.
    """

    def __init__(self, tasks: dict, loss_scales: dict[str, float], device=None):
        super().__init__(tasks, loss_scales)
        self.factor = {name: 0.5 if task.spec.type == REGRESSION else 1.0 for name, task in tasks.items()}
        self.log_variance = {name: torch.nn.Parameter(torch.zeros((), device=device)) for name in self.tasks}

    def weight(self, task, context) -> float:
        return self.factor[task] * math.exp(-self.log_variance[task].item())

    def parameters(self):
        return list(self.log_variance.values())

    def observe(self, step, losses, layer_norms):
        for task, loss in losses.items():
            v = self.log_variance[task]
            grad = -self.factor[task] * math.exp(-v.item()) * loss / self.loss_scales[task] + 0.5
            v.grad = torch.tensor(grad, dtype=v.dtype, device=v.device)

    def state_dict(self):
        return {"log_variance": {task: p.item() for task, p in self.log_variance.items()}}

    def load_state_dict(self, state):
        with torch.no_grad():
            for task, value in state.get("log_variance", {}).items():
                self.log_variance[task].fill_(value)


def gradnorm_update(
    weights: dict[str, float], norms: dict[str, float], loss_ratios: dict[str, float], *, alpha: float, lr: float
) -> dict[str, float]:
    """One GradNorm step on the weights of the tasks in ``norms`` (Chen et al. 2018, §3.2).

    ``norms``: G_i = ‖∇_W (w_i ℓ_i)‖ on the last shared layer W; ``loss_ratios``: L̃_i = ℓ_i(t) / ℓ_i(0).
    With r_i = L̃_i / mean_j L̃_j and the target Ḡ · r_i^α held constant (as in the paper), the
    gradient of L_grad = Σ_i |G_i − Ḡ r_i^α| is sign(G_i − Ḡ r_i^α) · G_i / w_i; after a step of
    size ``lr`` the weights are renormalised to keep their sum (Σ_i w_i = k over all tasks).
    Weights stay positive (floored at 1e-6 of their sum before renormalising).
    """
    tasks = list(norms)
    mean_norm = sum(norms.values()) / len(tasks)
    mean_ratio = sum(loss_ratios[t] for t in tasks) / len(tasks)
    updated = {}
    for t in tasks:
        target = mean_norm * (loss_ratios[t] / mean_ratio) ** alpha
        grad = math.copysign(1.0, norms[t] - target) * norms[t] / weights[t] if norms[t] != target else 0.0
        updated[t] = weights[t] - lr * grad
    before = sum(weights[t] for t in tasks)
    updated = {t: max(w, 1e-6 * before) for t, w in updated.items()}
    after = sum(updated.values())
    return {**weights, **{t: w * before / after for t, w in updated.items()}}


class GradNormWeighting(LossWeighting):
    """GradNorm (Chen et al. 2018): λ_i = w_i, start 1, updated after every joint step by
    :func:`gradnorm_update` with α = ``training.gradnorm_alpha`` and step ``training.weighting_lr``.

    ℓ_i(0) is task i's (scaled) loss at its first update that trains the encoder. W is the last
    shared layer's weight (:func:`last_shared_layer`); the trainer computes G_i = ‖m_i ∇_W L_i‖
    from the per-task gradients it already has (no extra backward pass)."""

    needs_task_gradients = True

    def __init__(self, tasks, loss_scales, *, alpha: float, lr: float):
        super().__init__(tasks, loss_scales)
        self.alpha, self.lr = alpha, lr
        self.w = {task: 1.0 for task in self.tasks}
        self.initial_loss: dict[str, float] = {}

    def weight(self, task, context) -> float:
        return self.w[task]

    def observe(self, step, losses, layer_norms):
        if not layer_norms:  # encoder frozen (head warm-up): no shared layer to balance
            return
        tasks = [t for t in layer_norms if t in losses]
        scaled = {t: losses[t] / self.loss_scales[t] for t in tasks}
        for t in tasks:
            self.initial_loss.setdefault(t, scaled[t])
        ratios = {t: scaled[t] / self.initial_loss[t] for t in tasks}
        if len(tasks) >= 2:  # one task has nothing to be balanced against
            self.w = gradnorm_update(self.w, {t: layer_norms[t] for t in tasks}, ratios, alpha=self.alpha, lr=self.lr)

    def state_dict(self):
        return {"w": dict(self.w), "initial_loss": dict(self.initial_loss)}

    def load_state_dict(self, state):
        self.w.update(state.get("w", {}))
        self.initial_loss = dict(state.get("initial_loss", {}))


def dtp_weight(kpi: float, gamma: float) -> float:
    """Dynamic task prioritisation's focal weight −(1 − κ)^γ log κ (Guo et al. 2018, Eq. 3), κ in (0, 1]."""
    return -((1.0 - kpi) ** gamma) * math.log(kpi)


class DTPWeighting(LossWeighting):
    """Dynamic task prioritisation (Guo et al. 2018): harder tasks (lower KPI) weigh more.

    KPI: κ_i = 1 − L_i / C_i, clipped to [0.01, 1], with C_i the loss of a chance-level
    predictor (log n_classes for cross-entropy, 1 for the MSE of standardised regression
    targets: :func:`taskaffinity.model.heads.loss_scale`), smoothed over steps as a moving average
    κ̄_i ← s κ̄_i + (1 − s) κ_i (s = ``training.dtp_smoothing``). It is 0 at chance and 1 at a
    perfect fit, like an accuracy rescaled from chance; it is read from the training batches'
    losses the trainer already has, so it works for all four task types and both gradient
    paths at no cost (Guo et al. used accuracy or average precision). An update's weights use
    the KPIs of the steps before it; a task not yet seen has λ = 1.
    """

    FLOOR = 0.01  # κ = 0 would give an infinite weight

    def __init__(self, tasks, loss_scales, *, gamma: float, smoothing: float):
        super().__init__(tasks, loss_scales)
        self.gamma, self.smoothing = gamma, smoothing
        self.chance = {name: loss_scale(task.spec.type, task.n_classes) for name, task in tasks.items()}
        self.kpi: dict[str, float] = {}

    def weight(self, task, context) -> float:
        return dtp_weight(self.kpi[task], self.gamma) if task in self.kpi else 1.0

    def observe(self, step, losses, layer_norms):
        for task, loss in losses.items():
            kpi = min(1.0, max(self.FLOOR, 1.0 - loss / self.chance[task]))
            previous = self.kpi.get(task)
            self.kpi[task] = kpi if previous is None else self.smoothing * previous + (1 - self.smoothing) * kpi

    def state_dict(self):
        return {"kpi": dict(self.kpi)}

    def load_state_dict(self, state):
        self.kpi = dict(state.get("kpi", {}))


def make_weighting(training, tasks: dict, loss_scales: dict[str, float], device=None) -> LossWeighting:
    """The scheme named by ``training.weighting`` (checked when the config was made)."""
    name = training.weighting
    if name == "muppet":
        return MuppetWeighting(tasks, loss_scales)
    if name == "equal":
        return EqualWeighting(tasks, loss_scales)
    if name == "uncertainty":
        return UncertaintyWeighting(tasks, loss_scales, device=device)
    if name == "gradnorm":
        return GradNormWeighting(tasks, loss_scales, alpha=training.gradnorm_alpha, lr=training.weighting_lr)
    if name == "dtp":
        return DTPWeighting(tasks, loss_scales, gamma=training.dtp_gamma, smoothing=training.dtp_smoothing)
    raise ValueError(f"unknown weighting '{name}'")


def last_shared_layer(model) -> torch.nn.Parameter:
    """GradNorm's W: the last two-dimensional trainable encoder weight (BERT: the last layer's
    output projection; the pooler is dropped by the model)."""
    matrices = [p for p in model.encoder.parameters() if p.ndim == 2]
    return matrices[-1]
