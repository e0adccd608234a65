"""Grouping results as a document a study runner can consume (JSON or YAML), written atomically.

Schema::

    {"method": str, "estimator": str | null, "k": int, "objective": float,
     "groups": [{"tasks": [str, ...], "score": float, "serves": [str, ...]}, ...],
     "assignment": {task: group_index | null}, "per_task_score": {task: float},
     "leave_alone": true | absent, "alone": [{"task", "best_source", "best_score", "why"}, ...] | absent,
     "stability": {...} | absent, "reliability": {...} | absent}

``leave_alone`` (present when the grouping was fitted with it): training alone was a free
option (``k`` then bounds the groups of two or more tasks, :mod:`.alone`); ``alone`` lists
the tasks trained alone and why (their ``assignment`` is null).

``stability`` (see :class:`.stability.GroupingStability`): over bootstrap resamples of
the run's probes or windows, how often the chosen grouping came back
(``chosen_share``), each chosen group (``group_shares``), the mean adjusted Rand
index of the serving assignment and each pair's co-membership share.
``reliability``: the estimator's split-half reliability from ``fidelity.json``.

``tasks`` are the members to train together, ``serves`` the members whose
reported score comes from this group (the others only help, TAG's overlap,
Fifty et al. 2021), ``score`` the sum of the served tasks' scores.
"""

from __future__ import annotations

from pathlib import Path

from ..stats import verdict
from ..storage import write_json, write_text
from ._base import GroupingError


def grouping_document(
    grouping, *, estimator: str | None = None, stability=None, reliability: dict | None = None
) -> dict:
    """The result document of a fitted grouping object (with its stability and the estimator's
    reliability when given)."""
    if not hasattr(grouping, "groups_"):
        raise GroupingError("grouping is not fitted: call fit(affinity) first")
    document = {
        "method": grouping.method,
        "estimator": estimator,
        "k": int(grouping.k),
        "objective": float(grouping.objective_),
        "groups": [
            {"tasks": list(g), "score": float(s), "serves": list(v)}
            for g, s, v in zip(grouping.groups_, grouping.scores_, grouping.serves_)
        ],
        "assignment": {t: (None if g is None else int(g)) for t, g in grouping.assignment_.items()},
        "per_task_score": {t: float(s) for t, s in grouping.per_task_score_.items()},
    }
    if getattr(grouping, "leave_alone", False):
        document.update(leave_alone=True, alone=list(grouping.alone_reasons_))
    if stability is not None:
        document["stability"] = stability.to_dict()
    if reliability is not None:
        document["reliability"] = reliability
    return document


def write_document(path: str | Path, document: dict) -> Path:
    """Write as JSON (``.json``) or YAML (``.yaml``/``.yml``), atomically."""
    import yaml

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        write_json(path, document)
    elif suffix in (".yaml", ".yml"):
        write_text(path, yaml.safe_dump(document, sort_keys=False))
    else:
        raise GroupingError(f"output file must end in .json, .yaml or .yml, got '{path.name}'")
    return path


def trust_lines(document: dict) -> list[str]:
    """Plain sentences on how far a grouping document's choice can be believed."""
    lines = []
    reliability = document.get("reliability")
    if reliability:
        within = reliability["within_target_reliability"]
        needed = next((v for k, v in reliability.items() if k.startswith("samples_for_")), None)
        line = (
            f"trust: {document.get('estimator')} has within-target reliability {within:.2f} "
            f"({verdict(within)}) over {reliability['samples']} probes/windows"
        )
        if needed is not None and needed > 100 * reliability["samples"]:  # ~0 reliability: the prophecy is moot
            line += (
                "; its halves barely agree: more of the same samples are not predicted to help (larger "
                "or more diverse probe batches, more tasks' examples, or a longer run might)"
            )
        elif needed is not None and needed > reliability["samples"]:
            line += (
                f"; 0.9 would need about {needed:.0f} (more recorded steps, or larger probe batches: "
                "noise falls with the square of the batch)"
            )
        elif needed is None:
            line += "; its halves do not agree at all: more samples are not predicted to help"
        lines.append(line)
    alone = document.get("alone") or []
    if alone:
        lines.append(f"left alone ({len(alone)}): " + "; ".join(f"{a['task']}: {a['why']}" for a in alone))
    stability = document.get("stability")
    if stability and stability.get("alone_shares") is not None:
        shares = stability["alone_shares"]
        lines.append(
            "share of resamples in which each task was left alone: "
            + ", ".join(f"{t} {v:.0%}" for t, v in shares.items())
        )
    if stability:
        shares = ", ".join(f"G{i + 1} {s:.0%}" for i, s in enumerate(stability["group_shares"]))
        lines.append(
            f"stability over {stability['resamples']} bootstrap resamples of the probes/windows: the chosen "
            f"grouping came back in {stability['chosen_share']:.0%} "
            f"({'stable' if stability['stable'] else 'UNSTABLE: not a finding at this budget'}); "
            f"each group: {shares}; mean adjusted Rand index {stability['assignment_ari']:.2f}"
        )
    draws = document.get("draws")
    if draws:
        same, count = sum(draws["same_as_chosen"]), len(draws["same_as_chosen"])
        lines.append(
            f"held-out draws: {same} of {count} further draw{'s' if count != 1 else ''} of held-out examples "
            f"(probe seed{'s' if count != 1 else ''} {', '.join(map(str, draws['probe_seeds']))}) chose the same "
            "grouping"
            + (
                ""
                if same == count
                else " (another draw of probe examples, or another split of the same held-out pool where it "
                "holds at most two probe batches, gives another grouping: not a finding at this budget"
                + ("; a bootstrap of one draw's probes cannot show this)" if stability else ")")
            )
        )
    return lines
