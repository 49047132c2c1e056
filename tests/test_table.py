"""Tables of papers (``rag.table``, ``papercite table``) over the real sample store, with a scripted model.

Each cell is two calls: the verdict (scripted with a P(YES)), then, when the model is sure
enough, the answer. The answer is checked against the paper's abstract; the outputs are
parsed back (CSV as a spreadsheet reads it, Markdown as GitHub's table syntax).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner

from rag import BadInput, Cell, Column, IndexEmpty, Row, Table, TablePlan, table, table_stream
from rag.answer.cells import CELL_PROMPT, check_value, parse_value, resting_sentence, unheld
from rag.retrieve import papers_by_id
from rag.services import Services
from rag.settings import Settings
from rag.store.chroma import Store
from rag.titles import find_paper, match_titles
from tests.conftest import ScriptedLLM

GPIPE = "GPipe: Efficient Training of Giant Neural Networks using Pipeline Parallelism"
WAVEMIX = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
COLUMNS = ["Parameters: How many parameters does the model have?", "Hardware: Which hardware is used?"]


def _gpipe(sample_settings: Any) -> Any:
    store = Store(sample_settings)
    return papers_by_id(store, [find_paper(store, GPIPE)])[0]


# -- columns -----------------------------------------------------------------------------


def test_a_column_is_named_before_its_colon_or_by_its_question() -> None:
    assert Column.parse("Dataset: Which dataset is evaluated on?") == Column(
        "Dataset", "Which dataset is evaluated on?"
    )
    assert Column.parse("  which   dataset?  ") == Column("which dataset?", "which dataset?")
    # a colon inside a question is not a name
    assert Column.parse("What does it compare: speed or memory?").name == "What does it compare: speed or memory?"


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([""], "A column is empty"),
        (["   "], "A column is empty"),
        (["x" * 301], "keep a column under 300"),
        ([], "A table needs a column"),
        (["Size: How big?", "size: how large?"], "Two columns are named 'Size'"),
        ([f"C{i}: q{i}?" for i in range(13)], "more than 12"),
    ],
)
def test_a_bad_column_is_one_clear_message_before_anything_is_read(
    columns: list[str], message: str, sample_settings: Any, scripted: ScriptedLLM
) -> None:
    with pytest.raises(BadInput, match=message):
        table(columns, settings=sample_settings, services=Services(sample_settings, llm=scripted))
    assert scripted.history == []


def test_an_unknown_or_ambiguous_paper_is_one_message_naming_what_to_do(
    sample_settings: Any, scripted: ScriptedLLM
) -> None:
    services = Services(sample_settings, llm=scripted)
    with pytest.raises(BadInput, match="No paper titled 'quantum banana bread'"):
        table(COLUMNS, papers=["quantum banana bread"], services=services)
    with pytest.raises(BadInput, match=r"'transformer' fits \d+ papers: .*Give more words"):
        table(COLUMNS, papers=["transformer"], services=services)
    assert scripted.history == []


def test_a_collection_with_no_papers_is_one_message(isolated_data_dir: Any, scripted: ScriptedLLM) -> None:
    settings = Settings(data_dir=isolated_data_dir)
    Services(settings).writable_store()  # the collection exists, empty
    with pytest.raises(IndexEmpty, match="holds no papers: add some with `papercite ingest"):
        table(COLUMNS, settings=settings, services=Services(settings, llm=scripted))


# -- titles ------------------------------------------------------------------------------


def test_a_paper_is_found_by_part_of_its_title_or_a_few_of_its_words(sample_settings: Any) -> None:
    store = Store(sample_settings)
    gpipe = find_paper(store, GPIPE)
    assert find_paper(store, "GPipe") == gpipe
    assert find_paper(store, "gpipe efficient training") == gpipe
    assert find_paper(store, "giant neural networks pipeline") == gpipe
    assert find_paper(store, "WaveMix") == find_paper(store, WAVEMIX)


def test_matching_prefers_the_papers_name_then_words_in_order_then_words_anywhere() -> None:
    titles = [
        "Pipe: a tool",
        "GPipe: Efficient Training of Giant Neural Networks",
        "Training giant efficient networks",
        "Efficient Training of Small Networks",
    ]
    assert match_titles("gpipe", titles) == [titles[1]]
    assert match_titles("efficient training", titles) == [titles[1], titles[3]]  # in order beats scattered
    assert match_titles("training efficient giant", titles) == [titles[1], titles[2]]
    assert match_titles("pipe", titles) == [titles[0]]  # the name, not a word starting with it
    assert match_titles("banana", titles) == []


# -- one cell ---------------------------------------------------------------------------


def test_a_value_is_shown_only_when_its_abstract_holds_it(sample_settings: Any) -> None:
    gpipe = _gpipe(sample_settings)
    assert check_value("557 million parameters", gpipe, 0.5) == (True, "")
    held, why = check_value("1.8 billion parameters", gpipe, 0.5)
    assert not held and "'1.8'" in why
    held, why = check_value("quantum chromodynamics lattice", gpipe, 0.5)
    assert not held and "words are in the abstract" in why
    assert "557" in resting_sentence("557 million", "How many parameters?", gpipe)


def test_the_answer_is_read_without_lead_ins_and_none_is_not_an_answer() -> None:
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole

    def reply(text: str) -> ChatResponse:
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    assert parse_value(reply("YES\nAnswer: ImageNet and COCO.")) == "ImageNet and COCO"
    assert (
        parse_value(reply("The abstract reports that 557 million parameters. More text.")) == "557 million parameters"
    )
    assert parse_value(reply("Not stated in the abstract.")) == ""
    assert parse_value(reply("NO")) == ""


# -- a whole table ----------------------------------------------------------------------


def _filled(scripted: ScriptedLLM) -> ScriptedLLM:
    # GPipe: parameters answered (557 million is in its abstract), hardware answered with a number
    # its abstract lacks (not shown); WaveMix: parameters below the threshold, hardware answered "not stated".
    return scripted.enqueue(
        ("YES", 0.9),
        "YES\n557 million parameters.",
        ("YES", 0.9),
        "YES\n64 TPUv9 chips.",
        ("NO", 0.1),
        ("YES", 0.9),
        "YES\nNot stated.",
    )


def test_a_table_streams_its_plan_each_cell_then_the_table(sample_settings: Any, scripted: ScriptedLLM) -> None:
    services = Services(sample_settings, llm=_filled(scripted))
    items = list(table_stream(COLUMNS, papers=["gpipe", "wavemix"], services=services))
    plan, cells, done = items[0], items[1:-1], items[-1]
    assert isinstance(plan, TablePlan) and plan.cells == 4 and [p.title for p in plan.papers] == [GPIPE, WAVEMIX]
    assert all(isinstance(c, Cell) for c in cells) and isinstance(done, Table)
    assert [c.shown for c in cells] == ["557 million parameters", "not stated", "not stated", "not stated"]
    assert [c.status for c in cells] == ["stated", "unsupported", "not stated", "not stated"]
    assert "557" in cells[0].evidence and cells[0].confidence == 0.9
    assert "TPUv9" in cells[1].reason or "64" in cells[1].reason
    assert "0.10 sure" in cells[2].reason
    assert [r.title for r in done.rows] == [GPIPE, WAVEMIX] and done.model == "custom:scripted"
    # every column of a paper is asked before the next paper, and every request starts with that paper's abstract
    asked = [m[1].content for m in scripted.history]
    assert all(GPIPE in a for a in asked[:4]) and all(WAVEMIX in a for a in asked[4:])
    # under a cell's own instructions (answer or NOT STATED), not a reading's (YES or NO first)
    assert {m[0].content for m in scripted.history} == {CELL_PROMPT} and "NOT STATED" in CELL_PROMPT


def test_csv_and_markdown_parse_back_to_the_same_table(sample_settings: Any, scripted: ScriptedLLM) -> None:
    done = table(COLUMNS, papers=["gpipe", "wavemix"], services=Services(sample_settings, llm=_filled(scripted)))
    rows = list(csv.reader(io.StringIO(done.to_csv())))
    assert rows[0] == ["Paper", "Year", "Parameters", "Hardware"]
    assert rows[1][0] == GPIPE and rows[1][2:] == ["557 million parameters", "not stated"]
    assert len(rows) == 3 and all(len(r) == 4 for r in rows)

    lines = done.to_markdown().splitlines()
    assert lines[1] == "| --- | --- | --- |"
    parsed = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]
    assert parsed[0] == ["Paper", "Parameters", "Hardware"]
    assert parsed[2] == [GPIPE, "557 million parameters", "not stated"]
    assert parsed[3] == [WAVEMIX, "not stated", "not stated"]

    whole = json.loads(done.to_json())
    assert whole["rows"][0]["cells"][0]["evidence"] and whole["rows"][0]["cells"][1]["status"] == "unsupported"


def test_markdown_and_csv_keep_pipes_commas_and_formulas_harmless() -> None:
    cell = Cell(1, "id", "=cmd|' /C calc'!A0", "A", "a | b, c\nd", "stated")
    done = Table((Column("A", "a?"),), (Row(1, cell.paper_id, cell.title, None, None, (cell,)),))
    assert list(csv.reader(io.StringIO(done.to_csv())))[1] == ["'=cmd|' /C calc'!A0", "", "a | b, c\nd"]
    line = done.to_markdown().splitlines()[2]
    assert line == "| =cmd\\|' /C calc'!A0 | a \\| b, c d |"


def test_papercite_table_prints_rows_or_one_line_of_error(
    sample_settings: Any, scripted: ScriptedLLM, monkeypatch: Any
) -> None:
    from ui import cli as cli_module

    monkeypatch.setenv("PAPERCITE_DATA_DIR", str(sample_settings.data_dir))
    real = cli_module.table_stream
    monkeypatch.setattr(
        cli_module,
        "table_stream",
        lambda *a, **k: real(*a, **{**k, "services": Services(k["settings"], llm=_filled(scripted))}),
    )
    args = ["table", "--paper", "gpipe", "--paper", "wavemix"] + [a for c in COLUMNS for a in ("--column", c)]
    result = CliRunner().invoke(cli_module.cli, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[1][2] == "557 million parameters"

    text = CliRunner().invoke(cli_module.cli, args, env={"COLUMNS": "160"})
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("Paper") and "| Parameters" in lines[0] and "| Hardware" in lines[0]
    assert any("[1] GPipe" in line and "557 million parameters" in line for line in lines)

    bad = CliRunner().invoke(cli_module.cli, ["table", "--column", "x" * 400])
    assert bad.exit_code == 3 and bad.stderr.count("\n") == 1 and "under 300" in bad.stderr


def test_p_stated_is_the_first_tokens_mass_that_is_not_a_refusal() -> None:
    import math

    from llama_index.core.base.llms.types import LogProb

    from rag.answer.cells import stated_probability

    tokens = [("NOT", 0.4), ("Image", 0.3), ("No", 0.1), ("5", 0.1), ("Normal", 0.1)]
    first = [LogProb(token=t, logprob=math.log(p)) for t, p in tokens]
    assert stated_probability([[LogProb(token=" ", logprob=0.0)], first]) == pytest.approx(0.5)
    assert stated_probability(None) is None


def test_a_number_counts_only_with_what_it_counts() -> None:
    from rag.types import Source

    paper = Source(1, "p", "A paper", ("",), 0.0, abstract="Accuracy rises by 1.3% with 7B parameters, 2.5x faster.")
    assert check_value("7 billion parameters", paper, 0.5)[0]  # 7B is 7 billion
    assert check_value("2.5 times faster", paper, 0.5)[0]
    held, why = check_value("1.3 billion parameters", paper, 0.5)
    assert not held and why == "the abstract does not state 1.3 as billions"


def test_a_number_the_abstract_spells_out_is_held() -> None:
    from rag.types import Source

    paper = Source(1, "p", "A trial", ("",), 0.0, abstract="Twenty-four pediatricians and forty nurses took part.")
    assert check_value("24", paper, 0.5) == (True, "") and check_value("40 nurses", paper, 0.5)[0]
    assert unheld("25 pediatricians", paper) == ["25"]
    held, why = check_value("42", paper, 0.5)
    assert not held and why == "the abstract does not state '42'"


def test_a_gold_value_matches_however_its_hyphen_or_times_is_written() -> None:
    from evals.table import cell_right

    assert cell_right("2 weeks", ["2-weeks"]) and cell_right("26-week trial", ["26 week"])
    assert cell_right("1.69 times faster", ["1.69times"]) and cell_right("1.69times", ["1.69 times"])
    assert not cell_right("12 weeks", ["2 weeks"]) and not cell_right("1.2", ["12"])


def test_the_rows_are_named_papers_a_questions_papers_or_the_collections(
    sample_settings: Any, scripted: ScriptedLLM
) -> None:
    from rag import Filters

    services = Services(sample_settings, llm=scripted)
    about = next(table_stream(COLUMNS, about="pipeline parallelism for giant networks", services=services))
    assert isinstance(about, TablePlan) and len(about.papers) == 10 and about.papers[0].title == GPIPE
    assert all(p.abstract for p in about.papers)
    some = next(table_stream(COLUMNS, limit=3, services=services))
    assert isinstance(some, TablePlan) and len(some.papers) == 3
    assert "first 3 of 84 papers" in some.notice
    every = next(table_stream(COLUMNS, limit=0, services=services))
    assert isinstance(every, TablePlan) and len(every.papers) == 84 and not every.notice
    with pytest.raises(BadInput, match="leave out the filters"):
        next(table_stream(COLUMNS, papers=["gpipe"], filters=Filters(since=2020), services=services))
    assert scripted.history == []
