import pytest

from taskaffinity.config import load_config
from taskaffinity.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_full_config_loads_with_types(tmp_path):
    path = write(
        tmp_path,
        """
name: demo
seed: 7
tasks:
  - trec6
  - {catalog: sms_spam, max_train: 300}
  - {name: mine, file: data/mine.csv, text_fields: [body], label_field: stars}
  - {name: trec6_twin, duplicate_of: trec6}
model: {max_length: 48}
training: {lr: 5e-5, steps: 10}
""",
    )
    config = load_config(path)
    assert config.name == "demo" and config.seed == 7
    assert [t.name for t in config.tasks] == ["trec6", "sms_spam", "mine", "trec6_twin"]
    assert config.tasks[0].source == "catalog:trec6" and config.tasks[0].family == "question"
    assert config.tasks[1].max_train == 300
    assert config.tasks[2].source == f"file:{tmp_path / 'data/mine.csv'}"  # relative to the YAML
    assert config.tasks[3].duplicate_of == "trec6"
    assert config.training.lr == pytest.approx(5e-5)  # YAML 1.1 reads 5e-5 as a string
    assert config.model.max_length == 48 and config.training.steps == 10


@pytest.mark.parametrize(
    "text, culprit",
    [
        ("tasks: [trec6]\ntrainig: {steps: 3}\n", "'trainig'"),
        ("tasks: [trec6]\ntraining: {stpes: 3}\n", "'training.stpes'"),
        ("tasks: [trec6]\nmodel: {pooler: mean}\n", "'model.pooler'"),
        ("tasks: [{catalog: trec6, max_trian: 3}]\n", "'max_trian'"),
    ],
)
def test_unknown_keys_are_rejected_naming_key_and_file(tmp_path, text, culprit):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert culprit in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("tasks: [trec6, trec6]\n", "duplicate task name 'trec6'"),
        ("tasks: [{name: x, file: a.csv, type: ranking}]\n", "unknown type 'ranking'"),
        ("tasks: [{name: x, file: a.csv, type: regression, metric: accuracy}]\n", "metric 'accuracy'"),
        ("tasks: [{name: x, duplicate_of: nope}]\n", "unknown task 'nope'"),
        ("tasks: [nosuchtask]\n", "nosuchtask"),
        ("tasks: []\n", "at least one task"),
        ("tasks: [trec6]\ntraining: {steps: many}\n", "training.steps"),
        ("tasks: [{file: a.csv}]\n", "needs a 'name'"),
        ("tasks: [{name: x, file: a.csv, hf: glue}]\n", "exactly one data source"),
        ("- just\n- a list\n", "top level"),
    ],
)
def test_invalid_configs_name_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(write(tmp_path, text))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "tasks: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_fingerprint_tracks_result_changing_options(tmp_path):
    a = load_config(write(tmp_path, "tasks: [trec6]\ntraining: {steps: 3}\n"))
    b = load_config(write(tmp_path, "tasks: [trec6]\ntraining: {steps: 4}\n"))
    c = load_config(write(tmp_path, "tasks: [trec6]\ntraining: {steps: 3}\n"))
    assert a.fingerprint() != b.fingerprint() and a.fingerprint() == c.fingerprint()
    # the default probe seed written out is the same run; another probe seed is not
    same = load_config(write(tmp_path, "seed: 0\ntasks: [trec6]\ntraining: {steps: 3}\naffinity: {probe_seed: 0}\n"))
    other = load_config(write(tmp_path, "seed: 0\ntasks: [trec6]\ntraining: {steps: 3}\naffinity: {probe_seed: 1}\n"))
    assert same.fingerprint() == a.fingerprint() != other.fingerprint()


@pytest.mark.parametrize("option", ["probe_seed: 1", "probe_draws: 2"])
def test_held_out_draw_options_need_held_out_probes(tmp_path, option):
    text = f"tasks: [trec6]\naffinity: {{rules: [], {option}}}\n"
    with pytest.raises(ConfigError, match=f"affinity.{option.split(':')[0]} is .* but affinity.rules is empty"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "section, option, value, message",
    [
        ("model", "pooling", "max", "model.pooling must be 'mean' or 'cls', got 'max'"),
        ("model", "init", "zeros", "model.init must be 'pretrained' or 'random'"),
        ("model", "max_length", 2, "model.max_length must be at least 4 tokens, got 2"),
        ("training", "sampling", "random", "training.sampling must be one of natural, uniform, temperature"),
        ("training", "temperature", 0, "training.temperature must be > 0"),
        ("training", "steps", 0, "training.steps must be >= 1, got 0"),
        ("training", "eval_every", 0, "training.eval_every must be >= 1"),
        ("training", "tasks_per_step", 65, "training.tasks_per_step must be between 1 and batch_size (64)"),
        ("training", "warmup_ratio", 1.5, "training.warmup_ratio must be in [0, 1]"),
        ("affinity", "rules", ["adam"], "affinity.rules: unknown rule 'adam' (use sgd, optimizer)"),
        ("affinity", "lookahead", "taylor", "affinity.lookahead must be exact or first_order"),
        ("affinity", "probe_split", "test", "affinity.probe_split must be train or validation"),
        ("affinity", "probe_every", 0, "affinity.probe_every must be >= 1, got 0"),
        ("affinity", "sketch_dim", 0, "affinity.sketch_dim must be >= 1"),
        ("affinity", "confidence", 1.0, "affinity.confidence must be in (0, 1)"),
        ("affinity", "start_step", 400, "affinity.start_step 400 is outside the run's steps 1..300"),
    ],
)
def test_bad_option_values_are_rejected_when_loaded_naming_file_and_option(tmp_path, section, option, value, message):
    import yaml

    path = write(tmp_path, yaml.safe_dump({"tasks": ["trec6"], section: {option: value}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_a_bad_training_option_exits_2_before_anything_is_written(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path, "tasks: [trec6]\ntraining: {sampling: proportional}\n")
    result = subprocess.run(
        [sys.executable, "-m", "taskaffinity.cli", "train", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"taskaffinity: error: {path}: training.sampling must be one of natural, "
        "uniform, temperature, got 'proportional'"
    )
    assert not (tmp_path / "out").exists()
