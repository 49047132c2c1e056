"""Gold sets: questions over the sample corpus and over ASReview abstracts, and SciFact from a path.

The bundled set (``evals/data/bundled.jsonl``) was written by hand from the 84
sample abstracts (so were the two-turn chats of the ``followup`` set, whose records
add ``history``, the first question, and ``pattern``): each record has a question in words other than the title's,
its kind (single, multi, out_of_scope, false_premise), the gold titles and one to
three short facts a correct answer must convey. Every hand-written set has two
parts: a development part (``*-dev`` or the original ``bundled.jsonl``) that
papercite is tuned on, and a frozen test part (``*-test.jsonl``) that is only
reported. The ASReview collection (:func:`load_asreview`) and SciFact are third-party
and stay outside the repository: the harness is given their paths.
"""

from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ingest.papers import Paper, normalize_title, paper_id
from rag.errors import BadInput

__all__ = [
    "ASREVIEW_PER_SOURCE",
    "BUNDLED",
    "GOLD_SETS",
    "GoldQuestion",
    "load_asreview",
    "load_gold",
    "load_scifact",
    "title_key",
]

DATA = Path(__file__).parent / "data"
BUNDLED = DATA / "bundled.jsonl"
#: Each hand-written gold set, by collection: (development part, frozen test part).
GOLD_SETS: dict[str, tuple[Path, Path]] = {
    "bundled": (BUNDLED, DATA / "bundled-test.jsonl"),
    "asreview": (DATA / "asreview-dev.jsonl", DATA / "asreview-test.jsonl"),
    # Two-turn chats over the bundled collection: a first question, then a follow-up.
    "followup": (DATA / "followup-dev.jsonl", DATA / "followup-test.jsonl"),
}
#: Abstracts :func:`load_asreview` takes from each ASReview review (4 reviews: 2,000 in all).
ASREVIEW_PER_SOURCE = 500
KINDS = ("single", "multi", "out_of_scope", "false_premise")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)


@dataclass(frozen=True)
class GoldQuestion:
    """One question with what a correct answer cites and says.

    Attributes:
        id: stable id, e.g. ``b07``.
        question: the question as a user would ask it.
        kind: single, multi, out_of_scope or false_premise.
        gold: keys of the papers a correct answer cites (see :func:`title_key`),
            empty when the right answer abstains.
        gold_titles: the same papers' titles, for reports.
        facts: short strings a correct answer conveys.
        near_miss: for an out-of-scope question, True when it shares many words with a
            stored abstract that does not answer it.
        history: the questions asked before this one in the same chat, oldest first;
            empty for a question asked on its own. Gold and facts are this question's.
        pattern: for a follow-up, how it depends on the first turn: detail (more about
            the same paper), narrow (some of the papers), switch (a new topic),
            uncovered (something their abstracts do not state).
    """

    id: str
    question: str
    kind: str
    gold: frozenset[str]
    gold_titles: tuple[str, ...]
    facts: tuple[str, ...]
    near_miss: bool = False
    history: tuple[str, ...] = ()
    pattern: str = ""

    @property
    def answerable(self) -> bool:
        """False when the right answer is to abstain."""
        return self.kind != "out_of_scope"


def title_key(title: str) -> str:
    """How gold titles and retrieved titles are matched: the normalised title."""
    return normalize_title(title)


def load_gold(path: str | Path = BUNDLED) -> list[GoldQuestion]:
    """Read a gold set in the bundled JSONL format.

    Raises:
        BadInput: the file is missing or a record lacks a field.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"No gold set at {path}: give --set bundled, scifact, or a JSONL file of questions.")
    questions = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kind = record["kind"]
            if kind not in KINDS:
                raise ValueError(f"kind must be one of {', '.join(KINDS)}")
            titles = tuple(record.get("gold_titles", []))
            questions.append(
                GoldQuestion(
                    str(record["id"]),
                    record["question"],
                    kind,
                    frozenset(title_key(t) for t in titles),
                    titles,
                    tuple(record.get("facts", [])),
                    bool(record.get("near_miss", False)),
                    tuple(record.get("history", [])),
                    str(record.get("pattern", "")),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInput(
                f"{path.name}:{line_no}: not a gold question ({exc}); each line needs id, question, "
                "kind, gold_titles and facts."
            ) from exc
    return questions


def load_scifact(directory: str | Path) -> tuple[list[Paper], list[GoldQuestion]]:
    """SciFact's corpus as papers (id ``scifact:<doc_id>``) and its training claims as questions.

    Raises:
        BadInput: the directory lacks corpus.csv or claims_train.csv.
    """
    directory = Path(directory)
    corpus, claims = directory / "corpus.csv", directory / "claims_train.csv"
    for needed in (corpus, claims):
        if not needed.is_file():
            raise BadInput(f"No {needed.name} in {directory}: give the SciFact directory with --scifact PATH.")
    csv.field_size_limit(1 << 24)
    papers = []
    with corpus.open(newline="", encoding="utf-8") as f:
        for row_no, row in enumerate(csv.DictReader(f), start=2):
            # The abstract is a printed list of quoted sentences, some adjacent without a comma.
            sentences = [ast.literal_eval(s) for s in _QUOTED.findall(row["abstract"])]
            papers.append(
                Paper(
                    f"scifact:{row['doc_id']}",
                    " ".join(row["title"].split()),
                    " ".join(" ".join(sentences).split()),
                    origin=f"{corpus.name}:{row_no}",
                )
            )
    by_id: dict[str, GoldQuestion] = {}  # a claim has one row per evidence document
    with claims.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            ids = frozenset(f"scifact:{d}" for d in re.findall(r"\d+", row["cited_doc_ids"]))
            if ids and row["id"] not in by_id:
                by_id[row["id"]] = GoldQuestion(f"scifact-{row['id']}", row["claim"], "single", ids, (), ())
    return papers, list(by_id.values())


def load_asreview(path: str | Path, per_source: int = ASREVIEW_PER_SOURCE) -> list[Paper]:
    """The second eval collection: ASReview abstracts from four fields, picked by a fixed rule.

    ``path`` is a JSONL(.gz) of ``title``, ``abstract`` and ``source`` records (the team's
    ``benchmarks/scale/abstracts.jsonl.gz``). Of the records whose source starts with
    ``asreview/`` (drug-class reviews, depression models in animals, software-engineering
    defect prediction, public administration), each source gives the ``per_source``
    records with the smallest SHA-256 of their normalised title: a sample that is the
    same on every machine, balanced over the four fields, and blind to content.

    Raises:
        BadInput: the file is missing or holds no ASReview records.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"No abstracts file at {path}: give --asreview PATH to abstracts.jsonl.gz.")
    opener = gzip.open if path.suffix == ".gz" else open
    by_source: dict[str, dict[str, dict[str, str]]] = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            source = str(record.get("source", ""))
            if source.startswith("asreview/") and record.get("title") and record.get("abstract"):
                key = normalize_title(record["title"])
                by_source.setdefault(source, {}).setdefault(key, record)
    if not by_source:
        raise BadInput(f"{path} holds no records whose source starts with asreview/.")
    papers = []
    for source in sorted(by_source):
        records = by_source[source]
        picked = sorted(records, key=lambda k: hashlib.sha256(k.encode()).hexdigest())[:per_source]
        for key in picked:
            record = records[key]
            title = " ".join(record["title"].split())
            papers.append(Paper(paper_id(title), title, " ".join(record["abstract"].split()), origin=source))
    return papers
