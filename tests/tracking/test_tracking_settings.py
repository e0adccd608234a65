"""The ``tracking:`` section and ``--report-to``: parsing, errors that name the option and the extra,
identity (tracking never changes a run's fingerprint or a job's id), and ``none`` importing nothing."""

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import TINY_MODEL, tiny_config

from taskaffinity.cli import main
from taskaffinity.config import config_from_dict, load_config
from taskaffinity.errors import ConfigError
from taskaffinity.tracking import TrackingConfig, open_run, parse_report_to
from taskaffinity.tracking.settings import check_installed

ROOT = Path(__file__).resolve().parents[2]
BACKEND_MODULES = ("tensorboard", "torch.utils.tensorboard", "tensorboardX", "mlflow", "wandb")
RAW = {
    "seed": 3,
    "tasks": ["trec6", "sms_spam"],
    "model": TINY_MODEL,
    "data": {"max_train": 60, "max_eval": 20},
    "training": {"steps": 2, "batch_size": 8, "eval_batch_size": 32},
}


@pytest.mark.parametrize(
    "value, want",
    [
        ("none", ()),
        ([], ()),
        (None, ()),
        ("tensorboard", ("tensorboard",)),
        ("tensorboard,wandb", ("tensorboard", "wandb")),
        (["mlflow", "MLflow", "wandb"], ("mlflow", "wandb")),
        (["none"], ()),
    ],
)
def test_report_to_follows_the_trainer_convention(value, want):
    assert parse_report_to(value) == want


@pytest.mark.parametrize(
    "value, message",
    [
        ("tensorbord", "tracking.report_to: unknown back-end 'tensorbord' (use none, tensorboard, mlflow, wandb)"),
        (["none", "wandb"], "tracking.report_to: 'none' cannot be combined with wandb"),
    ],
)
def test_bad_report_to_names_the_key(value, message):
    with pytest.raises(ConfigError) as err:
        TrackingConfig(report_to=value)
    assert str(err.value) == message


def test_a_missing_backend_names_its_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        check_installed(("tensorboard", "wandb"))
    assert str(err.value) == "tracking.report_to wandb needs the wandb package: pip install 'taskaffinity[wandb]'"
    assert "\n" not in str(err.value)


def test_tracking_section_loads_and_never_changes_identity(tmp_path):
    config = config_from_dict(RAW)
    raw = {**RAW, "tracking": {"report_to": ["tensorboard", "mlflow"], "project": "p", "log_every": 5}}
    tracked = config_from_dict(raw)
    assert tracked.tracking.report_to == ("tensorboard", "mlflow") and tracked.tracking.log_every == 5
    assert tracked.fingerprint() == config.fingerprint() and "tracking" not in tracked.identity()
    assert tracked == config  # tracking is not compared: it never changes results
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**raw, "tracking": {"report_to": "none", "colour": "red"}}))
    with pytest.raises(ConfigError, match="unknown key 'tracking.colour'"):
        load_config(path)
    path.write_text(yaml.safe_dump({**raw, "tracking": {"log_every": 0}}))
    with pytest.raises(ConfigError, match="tracking.log_every must be an integer >= 1, got 0"):
        load_config(path)


def test_none_opens_no_run():
    assert open_run(TrackingConfig(), name="x", out_dir=None, project="p") is None


def test_bad_report_to_on_the_command_line_exits_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(RAW))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:  # argparse: usage line, the option named, status 2
        main(["train", str(config), "--out", str(out), "--report-to", "tensorbord"])
    assert exit_.value.code == 2
    assert "argument --report-to: unknown back-end 'tensorbord'" in capsys.readouterr().err
    assert main(["train", str(config), "--out", str(out), "--report-to", "none", "wandb"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "taskaffinity: error: --report-to: 'none' cannot be combined with a back-end"
    assert not out.exists()


def test_report_to_overrides_the_config(tmp_path):
    from taskaffinity.cli import build_parser
    from taskaffinity.cli.report_to import with_report_to

    config = dataclasses.replace(tiny_config(["trec6", "sms_spam"]), tracking=TrackingConfig(report_to="mlflow"))
    args = build_parser().parse_args(["train", "c.yaml", "--out", "o", "--report-to", "tensorboard,wandb", "mlflow"])
    assert with_report_to(config, args).tracking.report_to == ("tensorboard", "wandb", "mlflow")
    args = build_parser().parse_args(["train", "c.yaml", "--out", "o", "--report-to", "none"])
    assert with_report_to(config, args).tracking.report_to == ()
    args = build_parser().parse_args(["train", "c.yaml", "--out", "o"])
    assert with_report_to(config, args).tracking.report_to == ("mlflow",)


def test_none_imports_no_backend(tmp_path):
    """A whole joint run and an AffinityMeter loop with ``report_to: none``: the trainer runs without any
    tracking callback and every back-end stays unimported."""
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from conftest import TINY_MODEL, tiny_config
        from taskaffinity import AffinityMeter
        from taskaffinity.api import record_affinity, train_joint_model
        config = tiny_config(["trec6", "sms_spam"], steps=2)
        result = train_joint_model(config, {str(tmp_path / "run")!r}, progress=False)
        print([type(cb).__name__ for cb in result.trainer.callbacks.callbacks])
        net = torch.nn.Sequential(torch.nn.Linear(3, 3))
        meter = AffinityMeter(net, net, tasks=["a", "b"], lr=0.1, window=1)
        out = net(torch.ones(2, 3))
        meter.backward({{"a": out[:, 0].mean(), "b": out[:, 1].mean()}})
        print(sorted(m for m in {BACKEND_MODULES!r} if m in sys.modules))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    callbacks, modules = done.stdout.strip().splitlines()[-2:]
    assert callbacks == "[]" and modules == "[]"  # no callback in the trainer, no back-end imported
    assert (tmp_path / "run" / "steps.parquet").is_file() and not (tmp_path / "run" / "tensorboard").exists()
