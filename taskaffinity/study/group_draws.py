"""Random task groups for a validation study: groupings of given sizes that never repeat each other
(nor the chosen or oracle grouping), and sampled groups whose members' gains are measured."""

from __future__ import annotations

import math
import random


def _partition_key(parts) -> frozenset:
    return frozenset(frozenset(part) for part in parts if part)


def random_groupings(
    pool: tuple[str, ...], sizes: list[int], count: int, seed: int, *, avoid=()
) -> list[list[tuple[str, ...]]]:
    """``count`` random partitions of the first ``sum(sizes)`` shuffled pool tasks into parts of
    ``sizes``, none repeating another or any grouping in ``avoid`` (as sets of sets). The same for
    every study seed (each random grouping is then measured at every seed, like the chosen one);
    fewer when fewer distinct ones exist."""
    rng = random.Random(seed * 7919 + 1)
    seen = {_partition_key(parts) for parts in avoid}
    out: list[list[tuple[str, ...]]] = []
    for _ in range(200 * max(count, 1)):
        if len(out) == count:
            break
        shuffled, start, parts = rng.sample(pool, len(pool)), 0, []
        for size in sizes:
            parts.append(tuple(t for t in pool if t in shuffled[start : start + size]))
            start += size
        key = _partition_key(parts)
        if key not in seen:
            seen.add(key)
            out.append(parts)
    return out


def sample_groups(pool: tuple[str, ...], count: int, sizes: tuple[int, ...], seed: int) -> list[tuple[str, ...]]:
    """``count`` distinct random groups of the pool (members in pool order), their sizes spread as
    evenly as possible over ``sizes``: the groups whose members' gains a validation study
    measures (the same groups at every seed, so each gain is a paired difference over seeds)."""
    if count <= 0:
        return []
    rng = random.Random(seed * 7919 + 2)
    sizes = sorted({k for k in sizes if k <= len(pool)})
    room = {k: math.comb(len(pool), k) for k in sizes}
    want = {k: 0 for k in sizes}
    for i in range(count):  # round robin over the sizes that still have room
        open_ = [k for k in sizes if want[k] < room[k]]
        want[open_[i % len(open_)] if open_ else sizes[0]] += 1
    out: list[tuple[str, ...]] = []
    for k in sizes:
        picked: set[tuple[int, ...]] = set()
        while len(picked) < min(want[k], room[k]):
            picked.add(tuple(sorted(rng.sample(range(len(pool)), k))))
        out.extend(tuple(pool[i] for i in members) for members in sorted(picked))
    return out
