"""Task affinity in a plain PyTorch loop: handwritten digits as seven tasks on the same images.

scikit-learn's digits (1,797 8×8 images, shipped with scikit-learn) give tasks on the
same inputs, one head each on a shared MLP trunk:

    digit      the digit, 10 classes          parity     even / odd
    ge5        digit ≥ 5                      prime      2, 3, 5, 7
    loop       has a closed loop (0 4 6 8 9)  parity_twin  parity again, its own head
    shuffled   digit labels permuted across images (a control nothing can transfer from)

The known answer: the twin is its twin's top partner in both directions, and the
shuffled task is nobody's top partner. The loop is the reader's loop, with
``AffinityMeter.backward`` where ``loss.backward()`` was, and a probe now and then. Besides
the parameter-gradient estimators it records the cheap representation-gradient ones
(``feature_*``) and prints how well the two agree.

    python examples/digits_affinity.py --out runs/digits          # ~20 s on 2 CPU cores

writes ``runs/digits/``: ``affinity.parquet``, ``matrix_*.csv``, ``summary_*.csv``,
``fidelity.json``, ``heatmap_*.png`` and ``groups.json`` (TAG grouping with its bootstrap
stability over the recorded windows).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from torch import nn

from taskaffinity import AffinityMeter
from taskaffinity.grouping.output import trust_lines, write_document
from taskaffinity.study.choose import store_grouping

TWIN_OF = "parity"
ESTIMATORS = (
    "stream_gram",
    "stream_cosine",
    "stream_first_order_sgd",
    "stream_first_order_optimizer",
    "feature_gram",
    "feature_cosine",
)
# what meter.probe records on the held-out rows (first-order forms of both rules, the library's default probe)
PROBED = ("first_order_sgd", "first_order_optimizer", "gram", "cosine")


def digit_tasks(seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Images (1797 × 64, scaled to [0, 1]) and each task's labels."""
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    labels = {
        "digit": y,
        "parity": y % 2,
        "ge5": (y >= 5).long(),
        "prime": torch.isin(y, torch.tensor([2, 3, 5, 7])).long(),
        "loop": torch.isin(y, torch.tensor([0, 4, 6, 8, 9])).long(),
    }
    labels[f"{TWIN_OF}_twin"] = labels[TWIN_OF].clone()
    labels["shuffled"] = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1000))]
    return x, labels


class MultiHeadMLP(nn.Module):
    """A shared trunk and one linear head per task."""

    def __init__(self, classes: dict[str, int], hidden: int = 64):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleDict({task: nn.Linear(hidden, n) for task, n in classes.items()})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = self.trunk(x)
        return z, {task: head(z) for task, head in self.heads.items()}


def task_losses(
    model: nn.Module, x: torch.Tensor, labels: dict[str, torch.Tensor], rows, *, with_features: bool = False
):
    """Every task's mean cross-entropy on the same rows: one forward, one head per task
    (and the shared features z the heads read, for the meter's ``feature_*`` estimators)."""
    z, logits = model(x[rows])
    losses = {task: nn.functional.cross_entropy(out, labels[task][rows]) for task, out in logits.items()}
    return (losses, z) if with_features else losses


def train(
    seed: int = 0,
    *,
    warmup: int = 150,
    steps: int = 300,
    batch: int = 64,
    lr: float = 3e-3,
    window: int = 10,
    probe_every: int = 50,
):
    """Train the multi-head MLP with the meter; return the meter (records in ``meter.store``)."""
    torch.manual_seed(seed)
    x, labels = digit_tasks(seed)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train_rows, probe_rows = order[:1400], order[1400:]  # the probe pool is never trained on
    classes = {task: int(y.max()) + 1 for task, y in labels.items()}
    model = MultiHeadMLP(classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    # Record after the heads have learned: affinities through untrained heads are noise.
    meter = AffinityMeter(
        model,
        model.trunk,
        tasks=list(classes),
        optimizer=optimizer,
        window=window,
        start=warmup + 1,
        estimators=ESTIMATORS,
    )
    gen = torch.Generator().manual_seed(seed)
    for step in range(1, warmup + steps + 1):
        rows = train_rows[torch.randint(0, len(train_rows), (batch,), generator=gen)]
        optimizer.zero_grad()
        losses, features = task_losses(model, x, labels, rows, with_features=True)
        meter.backward(losses, features=features)  # instead of sum(losses.values()).backward()
        optimizer.step()
        if step > warmup and (step - warmup) % probe_every == 0:
            meter.probe(lambda m: task_losses(m, x, labels, probe_rows))
    model.eval()
    with torch.no_grad():
        _, logits = model(x[probe_rows])
    meter.accuracy = {
        task: float((out.argmax(1) == labels[task][probe_rows]).float().mean()) for task, out in logits.items()
    }
    return meter


def top_partners(matrix) -> dict[str, str]:
    """For each target, the source with the largest affinity onto it (itself excluded)."""
    values = matrix.to_numpy(dtype=float).copy()
    np.fill_diagonal(values, -np.inf)
    return {target: matrix.index[int(np.argmax(values[:, j]))] for j, target in enumerate(matrix.columns)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/digits", help="output folder (default runs/digits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimator", default="stream_cosine", help="estimator the grouping uses")
    parser.add_argument("--k", type=int, default=3, help="groups (at most)")
    args = parser.parse_args(argv)
    # 64-wide layers: one thread is fastest; more only add synchronisation (100x slower on a busy machine)
    torch.set_num_threads(1)
    started = time.perf_counter()
    meter = train(args.seed)
    out = Path(args.out)
    store = meter.save(out, metadata={"example": "digits", "seed": args.seed, "accuracy": meter.accuracy})
    document = store_grouping(store, args.estimator, "tag", k=args.k, n_boot=100, seed=args.seed)
    write_document(out / "groups.json", document)
    print("held-out accuracy: " + ", ".join(f"{t} {a:.2f}" for t, a in meter.accuracy.items()))
    for estimator in ESTIMATORS:
        partners = top_partners(store.matrix(estimator))
        print(
            f"{estimator:>30}: top partner of {TWIN_OF} = {partners[TWIN_OF]}, of {TWIN_OF}_twin = "
            f"{partners[TWIN_OF + '_twin']}; shuffled is top partner of "
            f"{[t for t, s in partners.items() if s == 'shuffled'] or 'nobody'}"
        )
    off = ~np.eye(len(store.tasks), dtype=bool)
    for a, b in (("stream_cosine", "feature_cosine"), ("stream_gram", "feature_gram")):
        rho = spearmanr(store.matrix(a).to_numpy()[off], store.matrix(b).to_numpy()[off]).statistic
        print(f"{a} vs {b}: Spearman {rho:.2f} over off-diagonal pairs of the run averages")
    print(
        f"TAG groups ({args.estimator}, k = {args.k}): " + " | ".join(", ".join(g["tasks"]) for g in document["groups"])
    )
    for line in trust_lines(document):
        print(line)
    print(f"wrote {out}/ in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
