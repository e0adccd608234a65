import pandas as pd

from taskaffinity.tasks.splits import deduplicate_across_tasks, split_frame, stratified_cap


def labelled(n_per_class: dict) -> pd.DataFrame:
    rows = [(f"{label} example {i}", label) for label, n in n_per_class.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["text", "label"])


def test_split_is_stratified_deterministic_and_keeps_rare_classes_in_train():
    frame = labelled({"a": 100, "b": 50, "c": 2, "d": 1})
    splits = split_frame(frame, val_fraction=0.1, test_fraction=0.2, seed=5, stratify=True)
    again = split_frame(frame, val_fraction=0.1, test_fraction=0.2, seed=5, stratify=True)
    assert all(splits[k].equals(again[k]) for k in splits)
    assert set(splits["train"]["label"]) == {"a", "b", "c", "d"}
    counts = {k: v["label"].value_counts().to_dict() for k, v in splits.items()}
    assert counts["validation"]["a"] == 10 and counts["test"]["a"] == 20 and counts["train"]["a"] == 70
    assert counts["validation"]["b"] == 5 and counts["test"]["b"] == 10
    combined = pd.concat(splits.values())
    assert sorted(combined["text"]) == sorted(frame["text"])  # a partition: nothing lost or repeated
    other = split_frame(frame, val_fraction=0.1, test_fraction=0.2, seed=6, stratify=True)
    assert not other["test"].equals(splits["test"])


def test_cap_keeps_class_proportions_and_rare_classes():
    frame = labelled({"a": 900, "b": 90, "c": 10})
    capped = stratified_cap(frame, 100, seed=0, stratify=True)
    counts = capped["label"].value_counts().to_dict()
    assert len(capped) == 100 and counts == {"a": 90, "b": 9, "c": 1}
    assert stratified_cap(frame, None, seed=0, stratify=True) is frame


def test_shared_texts_go_to_exactly_one_task_independent_of_unrelated_tasks():
    shared = [f"the same movie review {i}" for i in range(200)]
    a = pd.DataFrame({"text": shared + ["only in a"], "label": "x"})
    # Different case and punctuation is still the same text.
    b = pd.DataFrame({"text": [s.upper() + "!" for s in shared] + ["only in b"], "label": "y"})
    c = pd.DataFrame({"text": ["unrelated"], "label": "z"})
    kept, removed = deduplicate_across_tasks({"a": a, "b": b})
    assert len(kept["a"]) + len(kept["b"]) == 202 and removed["a"] + removed["b"] == 200
    assert "only in a" in set(kept["a"]["text"]) and "only in b" in set(kept["b"]["text"])
    assert 60 < len(kept["a"]) < 140  # shared texts are split fairly, not all to one task
    with_c, _ = deduplicate_across_tasks({"a": a, "b": b, "c": c})
    assert with_c["a"].equals(kept["a"]) and with_c["b"].equals(kept["b"])
