"""Task grouping: which tasks should be trained together (Fifty et al. 2021, TAG).

Every method follows one scikit-learn style interface: keyword-only settings,
``fit(affinity)`` on a source x target DataFrame, results in ``groups_``,
``scores_``, ``assignment_`` (see :class:`._base.BaseGrouping`). Surrogates of group
gains (:mod:`.surrogate`) are fitted on measured subsets instead, and
:class:`SurrogateGrouping` chooses groups from their predictions.
"""

from __future__ import annotations

from ._base import BaseGrouping, GroupingError, affinity_distance, evaluate_groups, member_scores, validate_affinity
from .hierarchical import HierarchicalGrouping
from .louvain import LouvainGrouping
from .spectral import SpectralGrouping
from .surrogate import KernelSurrogate, LinearSurrogate, make_surrogate
from .surrogate_grouping import SurrogateGrouping
from .tag import TagGrouping

METHODS = {
    "tag": TagGrouping,
    "hierarchical": HierarchicalGrouping,
    "spectral": SpectralGrouping,
    "louvain": LouvainGrouping,
}


def make_grouping(method: str, **settings) -> BaseGrouping:
    """The grouping object of a method name, with its keyword settings."""
    if method not in METHODS:
        raise GroupingError(f"unknown grouping method '{method}' (choose from {', '.join(METHODS)})")
    return METHODS[method](**settings)


def accepted_settings(method: str, **settings) -> dict:
    """The subset of ``settings`` that ``method``'s constructor accepts (e.g. ``seed`` and ``solver``
    only where they mean something), so one set of options can serve every method."""
    import inspect

    if method not in METHODS:
        raise GroupingError(f"unknown grouping method '{method}' (choose from {', '.join(METHODS)})")
    accepted = inspect.signature(METHODS[method].__init__).parameters
    return {key: value for key, value in settings.items() if key in accepted}


__all__ = [
    "BaseGrouping",
    "GroupingError",
    "HierarchicalGrouping",
    "KernelSurrogate",
    "LinearSurrogate",
    "LouvainGrouping",
    "METHODS",
    "SpectralGrouping",
    "SurrogateGrouping",
    "TagGrouping",
    "accepted_settings",
    "affinity_distance",
    "evaluate_groups",
    "make_grouping",
    "make_surrogate",
    "member_scores",
    "validate_affinity",
]
