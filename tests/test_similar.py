"""More like this: ``rag.similar`` and ``papercite similar`` over the real sample store, no LLM."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from rag import BadInput, similar

WAVEMIX = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
CODENET = "CoDeNet: Efficient Deployment of Input-Adaptive Object Detection on Embedded FPGAs"
DEFORMABLE = "Algorithm-hardware Co-design for Deformable Convolution"


def test_the_nearest_papers_come_best_first_without_the_paper_itself(sample_settings: Any) -> None:
    papers = similar(WAVEMIX, 5, settings=sample_settings)
    assert len(papers) == 5 and WAVEMIX not in [p.title for p in papers]
    assert [p.number for p in papers] == [1, 2, 3, 4, 5]
    similarities = [p.similarity for p in papers]
    assert all(s is not None for s in similarities) and similarities == sorted(similarities, reverse=True)
    assert all(p.passages and p.abstract for p in papers)
    # The two abstracts on deformable convolution for embedded FPGAs are each other's nearest.
    assert similar(CODENET, 1, settings=sample_settings)[0].title == DEFORMABLE


def test_a_title_is_found_whatever_its_case_and_punctuation(sample_settings: Any) -> None:
    loose = "wavemix -- a resource efficient neural network for image analysis"
    assert similar(loose, 3, settings=sample_settings) == similar(WAVEMIX, 3, settings=sample_settings)


def test_an_unknown_title_names_the_closest_ones(sample_settings: Any) -> None:
    with pytest.raises(BadInput, match="No paper titled") as raised:
        similar("WaveMix: a resource-efficient network for images", settings=sample_settings)
    assert WAVEMIX in str(raised.value)


def test_papercite_similar_prints_the_papers_or_one_line_of_error(sample_settings: Any, monkeypatch: Any) -> None:
    from ui.cli import cli

    monkeypatch.setenv("PAPERCITE_DATA_DIR", str(sample_settings.data_dir))
    result = CliRunner().invoke(cli, ["similar", CODENET, "--top-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"[1] {DEFORMABLE}") and "similarity" in lines[0]

    missing = CliRunner().invoke(cli, ["similar", "A Paper Nobody Wrote"])
    assert missing.exit_code == 3 and missing.stderr.count("\n") == 1 and not missing.stdout
    assert missing.stderr.startswith("Error: No paper titled 'A Paper Nobody Wrote'")
