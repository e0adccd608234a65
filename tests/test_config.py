import pytest

from taskaffinity.config import load_config
from taskaffinity.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_full_config_loads_with_types(tmp_path):
    path = write(tmp_path, """
name: demo
seed: 7
tasks:
  - trec6
  - {catalog: sms_spam, max_train: 300}
  - {name: mine, file: data/mine.csv, text_fields: [body], label_field: stars}
  - {name: trec6_twin, duplicate_of: trec6}
model: {max_length: 48}
training: {lr: 5e-5, steps: 10}
""")
    config = load_config(path)
    assert config.name == "demo" and config.seed == 7
    assert [t.name for t in config.tasks] == ["trec6", "sms_spam", "mine", "trec6_twin"]
    assert config.tasks[0].source == "catalog:trec6" and config.tasks[0].family == "question"
    assert config.tasks[1].max_train == 300
    assert config.tasks[2].source == f"file:{tmp_path / 'data/mine.csv'}"  # relative to the YAML
    assert config.tasks[3].duplicate_of == "trec6"
    assert config.training.lr == pytest.approx(5e-5)  # YAML 1.1 reads 5e-5 as a string
    assert config.model.max_length == 48 and config.training.steps == 10


@pytest.mark.parametrize("text, culprit", [
    ("tasks: [trec6]\ntrainig: {steps: 3}\n", "'trainig'"),
    ("tasks: [trec6]\ntraining: {stpes: 3}\n", "'training.stpes'"),
    ("tasks: [trec6]\nmodel: {pooler: mean}\n", "'model.pooler'"),
    ("tasks: [{catalog: trec6, max_trian: 3}]\n", "'max_trian'"),
])
def test_unknown_keys_are_rejected_naming_key_and_file(tmp_path, text, culprit):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert culprit in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("text, message", [
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
])
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
