"""Subset pre-finetuning studies: plan experiments, run them anywhere, collect tidy results.

    from taskaffinity.study import load_study, run_study
    result = run_study(load_study("studies/quickstart.yaml"), "runs/quickstart")
    result.tables["transfer"]       # targets × (baseline, each combination of groups)

Names are imported lazily: executor worker processes import this package and
should not pay for torch and the trainer before they need them.
"""

from importlib import import_module

_EXPORTS = {
    "Plan": "plan",
    "make_plan": "plan",
    "StudyResult": "runner",
    "run_study": "runner",
    "study_status": "status",
    "Study": "settings",
    "StudySettings": "settings",
    "load_study": "settings",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
