"""Finding a stored paper by what a user remembers of its title: all of it, part of it, or a few of its words.

``find_paper(store, "gpipe efficient training")`` is the paper titled "GPipe: Efficient
Training of Giant Neural Networks using Pipeline Parallelism". The rule, in order:

1. The whole title (case, accents of form and punctuation aside) or the paper's id: that paper.
2. Otherwise every word the user gave (common words such as "of" aside) must begin a word of
   the title: "gpipe" matches "GPipe:", "effic" matches "Efficient". Among the titles that hold
   every word, one whose words come in the user's order, side by side (the user quoted part of
   the title), beats one that only holds them scattered, and a title whose name before the colon
   is exactly what was given ("GPipe") beats both.
3. One title left: that paper. Several: :class:`BadInput` listing them, so the user adds a word.
   None: :class:`BadInput` naming the closest titles.

Titles are read once per lookup, by id a page at a time (:meth:`rag.store.chroma.Store.pages`
paged by offset re-read every earlier row; at 250,000 papers that cost minutes).
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

from rag.answer.citations import short_name
from rag.answer.policy import STOPWORDS
from rag.errors import BadInput, IndexEmpty
from rag.store.chunks import normalize_title

if TYPE_CHECKING:
    from rag.store.chroma import Store

__all__ = ["find_paper", "match_titles"]

#: How many candidates an ambiguous lookup lists.
LISTED = 5
_PAGE = 1000


def find_paper(store: Store, title: str) -> str:
    """The id of the one stored paper ``title`` names: its whole title, its id, or words from its title.

    Raises:
        BadInput: ``title`` is empty, names no stored paper (the closest titles are named), or
            fits several (they are listed).
        IndexEmpty: the collection holds no papers.
    """
    wanted = " ".join(title.split())
    if not wanted:
        raise BadInput('The title is empty: give a stored paper\'s title or words from it, e.g. "WaveMix".')
    for where in ({"title": wanted}, {"paper_id": wanted}):
        rows = store.collection.get(where=where, include=["metadatas"], limit=1)  # type: ignore[arg-type]
        if rows["ids"]:
            return str((rows["metadatas"] or [{}])[0]["paper_id"])
    titles = stored_titles(store)
    if not titles:
        raise IndexEmpty(
            f"The collection at {store.location} is empty: run `papercite ingest --sample` for the bundled "
            "papers, or `papercite ingest FILE`."
        )
    found = match_titles(wanted, titles)
    if len(found) == 1:
        return titles[found[0]]
    if found:
        listed = "; ".join(repr(t) for t in found[:LISTED])
        more = f" and {len(found) - LISTED} more" if len(found) > LISTED else ""
        raise BadInput(f"{wanted!r} fits {len(found)} papers: {listed}{more}. Give more words of the one you mean.")
    close = difflib.get_close_matches(normalize_title(wanted), {normalize_title(t): t for t in titles}, n=3, cutoff=0.5)
    by_key = {normalize_title(t): t for t in titles}
    hint = f" Closest: {'; '.join(repr(by_key[c]) for c in close)}." if close else ""
    raise BadInput(
        f"No paper titled {wanted!r} in the collection, and no title holds all of its words.{hint} "
        "Give a title as the sources list shows it, or fewer words from it."
    )


def stored_titles(store: Store) -> dict[str, str]:
    """Every stored paper's title and its id (read from each paper's first chunk)."""
    ids = store.collection.get(where={"chunk_index": 0}, include=[])["ids"]
    titles = {}
    for start in range(0, len(ids), _PAGE):
        rows = store.collection.get(ids=ids[start : start + _PAGE], include=["metadatas"])
        for meta in rows["metadatas"] or []:
            titles[str(meta["title"])] = str(meta["paper_id"])
    return titles


def match_titles(wanted: str, titles: dict[str, str] | list[str]) -> list[str]:
    """The titles ``wanted`` names, best kind of match first (see the module's rule); [] when none holds every word.

    Only the best kind is returned: the exact title, else the titles whose name is ``wanted``,
    else those holding its words in order, else those holding them anywhere.
    """
    key = normalize_title(wanted)
    exact = [t for t in titles if normalize_title(t) == key]
    if exact:
        return exact
    words = [w for w in key.split() if w not in STOPWORDS] or key.split()
    if not words:
        return []
    named, in_order, anywhere = [], [], []
    phrase = re.compile(r"(?<!\w)" + r"\w*\s+(?:\w+\s+){0,2}".join(re.escape(w) for w in key.split()))
    for title in titles:
        folded = normalize_title(title)
        starts = folded.split()
        if not all(any(s.startswith(w) for s in starts) for w in words):
            continue
        name = short_name(title)
        if name is not None and normalize_title(name) == key:
            named.append(title)
        elif phrase.search(folded):
            in_order.append(title)
        else:
            anywhere.append(title)
    return named or in_order or anywhere
