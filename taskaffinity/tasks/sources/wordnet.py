"""Lexical tasks derived from the WordNet 3.0 database (Debian ``wordnet-base``).

Reads the ``data.noun``, ``data.verb``, ``data.adj`` and ``data.adv`` files of
``/usr/share/wordnet`` (override with ``TASKAFFINITY_WORDNET_DIR``). A data line
is::

    synset_offset lex_filenum ss_type w_cnt (word lex_id){w_cnt}
        p_cnt (pointer_symbol offset pos source/target){p_cnt} [frames] | gloss

with ``w_cnt`` in hex and ``p_cnt`` in decimal (``man 5 wndb``). Lines starting
with two spaces are the licence header.
"""

from __future__ import annotations

import functools
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from taskaffinity.errors import MissingSourceError, TaskDataError
from taskaffinity.tasks.sources import MAX_ROWS, SEED, finish

INSTALL_HINT = "apt-get install wordnet-base"
DEFAULT_DIR = "/usr/share/wordnet"
POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}

# The 45 standard lexicographer file names, indexed by lex_filenum
# (``man 5 lexnames``); Debian ships no ``lexnames`` file.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


@dataclass(eq=False)
class Synset:
    """One WordNet synset: ``key`` is ``(pos, offset)``; satellites ('s') count as 'a'.

    Pointers are kept as raw tokens and decoded on first use: decoding the
    350k pointers of all synsets up front would take seconds. Not frozen
    because frozen dataclasses are slow to build (117k of them) and because
    the decoded pointers are cached on the instance; treat it as read-only.
    """

    key: tuple[str, int]
    lexname: str
    lemmas: tuple[str, ...]
    definition: str
    pointers: tuple[str, ...]  # (symbol, offset, pos, source/target) * p_cnt

    @functools.cached_property
    def _decoded(self) -> list[tuple[str, tuple[str, int], str]]:
        p = self.pointers
        return [(sym, (_TAG_POS[pos], int(off)), st) for sym, off, pos, st in zip(p[0::4], p[1::4], p[2::4], p[3::4])]

    @property
    def hypernyms(self) -> list[tuple[str, int]]:
        """Keys of the synset's (non-instance) hypernyms."""
        return [key for sym, key, _ in self._decoded if sym == "@"]

    @property
    def related(self) -> set[tuple[str, int]]:
        """Keys of every synset this one points to, whatever the relation."""
        return {key for _, key, _ in self._decoded}

    @property
    def antonyms(self) -> list[tuple[int, tuple[str, int], int]]:
        """Lexical antonyms as (word number here, target key, word number there)."""
        return [(int(st[:2], 16), key, int(st[2:], 16)) for sym, key, st in self._decoded if sym == "!"]


def wordnet_dir() -> Path:
    """The WordNet dict folder: ``$TASKAFFINITY_WORDNET_DIR`` or /usr/share/wordnet."""
    return Path(os.environ.get("TASKAFFINITY_WORDNET_DIR") or DEFAULT_DIR)


def is_available() -> bool:
    """True when all four data files are present (no parsing)."""
    root = wordnet_dir()
    return all((root / name).is_file() for name in POS_FILES.values())


_TAG_POS = {"n": "n", "v": "v", "a": "a", "s": "a", "r": "r"}


def _clean_lemma(word: str) -> str:
    """'Canis_familiaris' -> 'Canis familiaris'; drops adjective markers like '(a)'."""
    if word.endswith(")"):  # cheap test first: parsing must stay fast
        word = re.sub(r"\([a-z]+\)$", "", word)
    return word.replace("_", " ")


def _definition(gloss: str) -> str:
    """The definition part of a gloss, without the quoted example sentences."""
    cut = gloss.find('; "')
    definition = gloss if cut < 0 else gloss[:cut]
    return definition.strip().rstrip(";").strip()


def parse_line(line: str) -> Synset:
    """Parse one data-file line into a :class:`Synset`."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    n_words = int(fields[3], 16)
    lemmas = tuple(map(_clean_lemma, fields[4 : 4 + 2 * n_words : 2]))
    at = 4 + 2 * n_words
    pointers = tuple(fields[at + 1 : at + 1 + 4 * int(fields[at])])
    return Synset((_TAG_POS[fields[2]], int(fields[0])), LEXNAMES[int(fields[1])], lemmas, _definition(gloss), pointers)


@functools.lru_cache(maxsize=2)
def _parse_dir(root: str) -> dict[tuple[str, int], Synset]:
    """Parse all four data files of ``root`` (memoised in memory per folder)."""
    synsets: dict[tuple[str, int], Synset] = {}
    for name in POS_FILES.values():
        with open(Path(root) / name, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  ") or not line.strip():
                    continue
                try:
                    synset = parse_line(line)
                except (ValueError, IndexError) as exc:
                    raise TaskDataError(f"malformed WordNet line in {root}/{name}: {line[:60]!r}") from exc
                synsets[synset.key] = synset
    return synsets


def load_synsets(task: str = "wordnet") -> dict[tuple[str, int], Synset]:
    """All synsets keyed by ``(pos, offset)``; MissingSourceError when files are absent."""
    if not is_available():
        raise MissingSourceError(
            task,
            f"WordNet 3.0 database (data.noun etc. in {wordnet_dir()}; or set TASKAFFINITY_WORDNET_DIR)",
            INSTALL_HINT,
        )
    return _parse_dir(str(wordnet_dir()))


def lookup(word: str, pos: str | None = None) -> list[Synset]:
    """Synsets containing ``word`` (case-insensitive), optionally of one POS, in file order."""
    word = word.lower()
    return [
        s
        for s in load_synsets().values()
        if (pos is None or s.key[0] == pos) and word in (lemma.lower() for lemma in s.lemmas)
    ]


def antonym_pairs(synsets: dict[tuple[str, int], Synset]) -> list[tuple[str, str, str]]:
    """Lexical antonym pairs ``(word, antonym, pos)``, each unordered pair once."""
    seen: set[frozenset[str]] = set()
    pairs = []
    for synset in synsets.values():
        if "!" not in synset.pointers:  # cheap filter: only ~7k synsets have antonyms
            continue
        for src, target, tgt in synset.antonyms:
            other = synsets.get(target)
            if other is None or not 0 < src <= len(synset.lemmas) or not 0 < tgt <= len(other.lemmas):
                continue
            a, b = synset.lemmas[src - 1], other.lemmas[tgt - 1]
            if a.lower() != b.lower() and frozenset((a, b)) not in seen:
                seen.add(frozenset((a, b)))
                pairs.append((a, b, synset.key[0]))
    return pairs


# ------------------------------------------------------------------ tasks


def load_supersense(task: str, per_class: int = 150, min_class: int = 40) -> pd.DataFrame:
    """Gloss -> supersense (noun.* / verb.* lexicographer file).

    The adj.* and adv.all files are syntactic, not semantic, so they are left
    out, and so is noun.Tops (about 50 very abstract top-level synsets); classes
    under ``min_class`` after de-duplication are dropped. At most ``per_class`` glosses per class (seeded sample) keep
    the classes balanced and the task under 6000 rows.
    """
    synsets = load_synsets(task)
    rng = random.Random(SEED)
    by_class: dict[str, list[str]] = {}
    for synset in synsets.values():
        if synset.key[0] in "nv" and synset.lexname != "noun.Tops":
            by_class.setdefault(synset.lexname, []).append(synset.definition)
    rows = []
    for lexname in sorted(by_class):
        glosses = by_class[lexname]
        picked = rng.sample(glosses, per_class) if len(glosses) > per_class else glosses
        rows.extend((gloss, lexname) for gloss in picked)
    frame = finish(pd.DataFrame(rows, columns=["text", "label"]), ["text"])
    counts = frame["label"].value_counts()
    return frame[frame["label"].isin(counts[counts >= min_class].index)].reset_index(drop=True)


def _unrelated_pair(
    rng: random.Random, pools: dict[str, list[Synset]], pos: str, synsets: dict[tuple[str, int], Synset]
) -> tuple[str, str] | None:
    """Head lemmas of two random same-POS synsets with no direct pointer between them."""
    first, second = rng.choice(pools[pos]), rng.choice(pools[pos])
    if first.key == second.key or second.key in first.related or first.key in second.related:
        return None
    if first.lemmas[0].lower() == second.lemmas[0].lower():
        return None
    return first.lemmas[0], second.lemmas[0]


def load_relation(task: str, per_class: int = MAX_ROWS // 3) -> pd.DataFrame:
    """(word, word) -> antonym / hypernym / unrelated.

    Antonyms are WordNet's lexical '!' pointers; hypernym pairs are (hyponym,
    hypernym) head lemmas of noun and verb '@' pointers; unrelated pairs join
    two random synsets with the POS mix of the related pairs, so POS alone
    does not give the label away. Antonym pairs are put in random order.
    """
    synsets = load_synsets(task)
    rng = random.Random(SEED)
    antonyms = antonym_pairs(synsets)
    antonyms = rng.sample(antonyms, min(per_class, len(antonyms)))
    hypernyms = []
    nouns_verbs = [s for s in synsets.values() if s.key[0] in "nv"]
    # Sample synsets first so that only their pointers get decoded.
    for synset in rng.sample(nouns_verbs, min(3 * per_class, len(nouns_verbs))):
        parents = [h for h in synset.hypernyms if h in synsets]
        if parents and len(hypernyms) < per_class:
            hypernyms.append((synset.lemmas[0], synsets[parents[0]].lemmas[0], synset.key[0]))
    rows = [((a, b) if rng.random() < 0.5 else (b, a)) + ("antonym",) for a, b, _ in antonyms]
    rows += [(a, b, "hypernym") for a, b, _ in hypernyms]
    pools: dict[str, list[Synset]] = {}
    for synset in synsets.values():
        pools.setdefault(synset.key[0], []).append(synset)
    pos_mix = [p for _, _, p in antonyms + hypernyms]
    unrelated: list[tuple[str, str, str]] = []
    while len(unrelated) < per_class:
        pair = _unrelated_pair(rng, pools, rng.choice(pos_mix), synsets)
        if pair is not None:
            unrelated.append(pair + ("unrelated",))
    frame = pd.DataFrame(rows + unrelated, columns=["text", "text_pair", "label"])
    frame = frame.sample(frac=1.0, random_state=SEED)  # interleave the classes
    return finish(frame, ["text", "text_pair"])


def _distractors(
    rng: random.Random, answer: str, target: Synset, pool: list[Synset], senses: dict[str, set[tuple[str, int]]]
) -> list[str]:
    """Three head lemmas of other same-POS synsets that are not synonyms of ``answer``."""
    answer_senses = senses.get(answer.lower(), set())
    own = {lemma.lower() for lemma in target.lemmas}
    picked: list[str] = []
    while len(picked) < 3:
        word = rng.choice(pool).lemmas[0]
        low = word.lower()
        if low in own or senses.get(low, set()) & answer_senses or low in (p.lower() for p in picked):
            continue
        picked.append(word)
    return picked


def _mentions(text: str, word: str) -> bool:
    """True when ``word`` occurs in ``text`` as a whole word (case-insensitive)."""
    padded = " " + re.sub(r"[^a-z0-9]+", " ", text.lower()) + " "
    return " " + re.sub(r"[^a-z0-9]+", " ", word.lower()).strip() + " " in padded


def load_define(task: str, size: int = MAX_ROWS) -> pd.DataFrame:
    """Gloss -> which of 4 words it defines (multiple choice).

    The answer is the synset's head lemma; glosses that contain the answer word
    are skipped (give-away). Distractors are head lemmas of other synsets of the
    same POS that share no synset with the answer. The correct position cycles
    0..3 over the rows, then is shuffled with a seeded RNG, so it is uniform.
    """
    synsets = load_synsets(task)
    rng = random.Random(SEED)
    every = list(synsets.values())
    pools = {pos: [s for s in every if s.key[0] == pos] for pos in POS_FILES}
    # Two words are synonyms only through a synset with 2+ lemmas; indexing
    # just those halves the work.
    senses: dict[str, set[tuple[str, int]]] = {}
    for synset in every:
        if len(synset.lemmas) > 1:
            for lemma in synset.lemmas:
                senses.setdefault(lemma.lower(), set()).add(synset.key)
    drawn = rng.sample(every, min(2 * size, len(every)))
    targets = [s for s in drawn if not _mentions(s.definition, s.lemmas[0])][:size]
    positions = [i % 4 for i in range(len(targets))]
    rng.shuffle(positions)
    rows = []
    for target, position in zip(targets, positions):
        answer = target.lemmas[0]
        choices = _distractors(rng, answer, target, pools[target.key[0]], senses)
        choices.insert(position, answer)
        rows.append((target.definition, choices, position))
    frame = pd.DataFrame(rows, columns=["text", "choices", "label"])
    return finish(frame, ["text"])
