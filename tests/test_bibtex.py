"""The BibTeX reader (ingest/bibtex.py): Zotero exports, LaTeX decoding, broken entries."""

from __future__ import annotations

from pathlib import Path

from ingest.readers import read_papers
from tests.test_readers import problem_lines, write

ZOTERO_BIB = r"""
@article{smith_deep_2020,
	title = {{{Deep} Learning} for {G}{\"o}del Machines},
	volume = {12},
	url = {https://example.org/deep},
	doi = {10.1234/ABC.5678},
	abstract = {We show that {deep} learning
	works \& scales to 50\% more data.},
	journal = {Journal of Things},
	author = {Smith, John and van der Berg, Ann and {OpenAI Team}},
	year = {2020},
}

@misc{lee_no_2021,
	title = {A Paper Without an Abstract},
	author = {Lee, Kim},
	year = {2021},
}

@misc{doe_attention_2023,
	title = {Attention {Is} Not All},
	url = {http://arxiv.org/abs/2301.01234},
	abstract = {An arXiv preprint about attention.},
	publisher = {arXiv},
	author = {Doe, Jane},
	month = jan,
	year = {2023},
	eprint = {2301.01234v3},
	archivePrefix = {arXiv},
}
"""


def test_bibtex_zotero_export(tmp_path: Path) -> None:
    result = read_papers(write(tmp_path, "library.bib", ZOTERO_BIB))

    deep, attention = result.papers
    assert deep.id == "doi:10.1234/abc.5678"
    assert deep.title == "Deep Learning for Gödel Machines"
    assert deep.abstract == "We show that deep learning works & scales to 50% more data."
    assert deep.authors == ("John Smith", "Ann van der Berg", "OpenAI Team")
    assert (deep.year, deep.url, deep.origin) == (2020, "https://example.org/deep", "library.bib:2")
    assert attention.id == "arxiv:2301.01234"
    assert attention.title == "Attention Is Not All"
    assert attention.origin == "library.bib:20"
    assert problem_lines(result) == ["library.bib:14: no abstract field"]


def test_bibtex_decodes_latex_in_prose_and_names_but_not_identifiers(tmp_path: Path) -> None:
    text = r"""@article{k,
  title = {Na{\"i}ve B\'{e}zier: \emph{{\L}{\'o}d{\'z}} Stra\ss e, \c{c}a \v{C}apek Erd\H{o}s},
  abstract = {Gar\c con \& na\"ive, 10\% of \textit{them}.},
  author = {G{\"o}del, Kurt and {Barnes and Noble} and M\"{u}ller, J.},
  doi = {10.1000/A\_B},
  url = {https://example.org/a_b%20c},
}"""
    (paper,) = read_papers(write(tmp_path, "accents.bib", text)).papers

    assert paper.title == "Naïve Bézier: Łódź Straße, ça Čapek Erdős"
    assert paper.abstract == "Garçon & naïve, 10% of them."
    assert paper.authors == ("Kurt Gödel", "Barnes and Noble", "J. Müller")
    assert (paper.id, paper.url) == ("doi:10.1000/a_b", "https://example.org/a_b%20c")


def test_bibtex_keeps_a_bare_percent_and_ampersand_as_text(tmp_path: Path) -> None:
    # Invalid LaTeX, common in hand-written files: % must not swallow the rest of the line.
    text = "@article{k,\n  title = {R&D at 5% Cost},\n  abstract = {Recall rose 5% over R&D baselines and held.},\n}"
    (paper,) = read_papers(write(tmp_path, "bare.bib", text)).papers
    assert (paper.title, paper.abstract) == ("R&D at 5% Cost", "Recall rose 5% over R&D baselines and held.")


def test_bibtex_unparseable_block_and_duplicate_key(tmp_path: Path) -> None:
    text = (
        "@article{a,\n  title = {One},\n  abstract = {First.}\n}\n"
        "@article{broken\n  title = {Two},\n}\n"
        "@article{a,\n  title = {Three},\n  abstract = {Third.}\n}\n"
        "@article{b,\n  title = {Four},\n  abstract = {Fourth.},\n  year = {MMXX}\n}\n"
    )
    result = read_papers(write(tmp_path, "x.bibtex", text))

    assert [p.title for p in result.papers] == ["One"]
    assert problem_lines(result) == [
        "x.bibtex:5: unparseable BibTeX: Expected comma after entry key, but found =",
        "x.bibtex:8: duplicate BibTeX key 'a' (first used on line 1)",
        "x.bibtex:12: year must be an integer, got 'MMXX'",
    ]


# --- files that cannot be read at all ---------------------------------------------------


def test_bibtex_without_entries_is_reported(tmp_path: Path) -> None:
    result = read_papers(write(tmp_path, "notes.bib", "just some notes, no entries\n"))
    assert result.papers == []
    assert problem_lines(result) == ["notes.bib:1: no BibTeX entries found (expected @article{...} or similar)"]
