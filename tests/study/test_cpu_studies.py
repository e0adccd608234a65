"""The CPU-sized study files measure what their headers say."""

from pathlib import Path

from taskaffinity.report.findings import own_groups
from taskaffinity.study import load_study
from taskaffinity.study.plan import make_plan
from taskaffinity.study.pool import load_pool, prepare_pool
from taskaffinity.study.pool import subsample_train as _subsample

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def test_families_study_has_one_family_group_per_target():
    study = load_study(STUDIES / "families_cpu.yaml")
    frame = make_plan(study).frame()
    families = {t.name: t.family for t in study.config.tasks}
    assert own_groups(frame, families) == {
        "vader_amazon": "sentiment",
        "trec6": "question",
        "debate_party": "political",
    }
    assert frame["label"].nunique() == 2**3  # 7 combinations + baseline
    assert set(frame["seed"]) == {0, 1, 2}


def test_scaling_study_grows_to_every_non_target_catalog_task():
    from taskaffinity.tasks.catalog import CATALOG

    study = load_study(STUDIES / "scaling_cpu.yaml")
    frame = make_plan(study).frame()
    largest = frame.loc[frame["n_pretrain_tasks"].idxmax(), "pretrain_set"].split("+")
    assert sorted(largest) == sorted(set(CATALOG) - set(study.settings.targets))
    assert len(set(frame["seed"])) >= 2


def test_low_resource_targets_get_tens_to_hundreds_of_examples(tmp_path):
    study = load_study(STUDIES / "low_resource_cpu.yaml")
    prepare_pool(study.config, tmp_path, progress=False)
    tasks = load_pool(study.config, tmp_path)
    for target in study.settings.targets:
        sizes = [
            len(_subsample(tasks[target], f, study.config.data.split_seed).train) for f in study.settings.fractions
        ]
        assert sizes == [50, 200, 1000], target
    assert len(study.settings.fractions) >= 3 and len([k for k in study.settings.sizes if k]) >= 3
