"""Subset pre-finetuning studies: plan experiments, run them anywhere, collect tidy results.

    from taskaffinity.study import load_study, run_study
    result = run_study(load_study("studies/quickstart.yaml"), "runs/quickstart")
    result.tables["transfer"]       # targets × (baseline, each combination of groups)
"""

from .plan import Plan, make_plan
from .runner import StudyResult, run_study, study_status
from .settings import Study, StudySettings, load_study

__all__ = ["Plan", "Study", "StudyResult", "StudySettings", "load_study", "make_plan", "run_study", "study_status"]
