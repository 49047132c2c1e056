"""The eval harness: metrics, gold sets, the gate (and that it can fail), the command."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from evals.gold import BUNDLED, GOLD_SETS, GoldQuestion, load_gold, load_scifact, title_key
from evals.harness import check_gate, run_answers
from evals.metrics import (
    echoes_scaffolding,
    fact_coverage,
    mrr,
    ndcg_at_k,
    normalize,
    numbers_in,
    percentile,
    recall_at_k,
    unsupported_number_sentences,
)
from ingest import read_papers, sample_corpus
from rag.errors import BadInput


def test_ranking_metrics() -> None:
    ranking = ["a", "b", "c", "d"]
    assert recall_at_k(ranking, {"b", "z"}, 1) == 0 and recall_at_k(ranking, {"b", "z"}, 2) == 0.5
    assert mrr(ranking, {"c"}) == pytest.approx(1 / 3) and mrr(ranking, {"z"}) == 0
    assert ndcg_at_k(ranking, {"a"}) == 1.0
    assert ndcg_at_k(ranking, {"b"}) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "b"], {"a", "b"}) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    )


def test_fact_matching_is_normalised_not_fuzzy() -> None:
    assert normalize("Reaches 73.62 % top‑1 — 6.7 x faster") == "reaches 73.62% top-1 - 6.7x faster"
    assert fact_coverage("It reaches 73.62 % accuracy with Low–Rank adapters.", ["73.62%", "low-rank"]) == 1.0
    assert fact_coverage("It reaches 73.6% accuracy.", ["73.62%"]) == 0.0
    assert fact_coverage("an exploration of 13.7x speed-ups", ["LoRA", "3.7"]) == 0.0
    assert fact_coverage("LoRA gives 3.7x", ["LoRA", "3.7"]) == 1.0
    assert fact_coverage("anything", []) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 50) is None


def test_unsupported_numbers_are_found_per_sentence_against_the_cited_abstracts() -> None:
    abstracts = {1: "It runs three times faster on 1,000 images.", 2: "Accuracy reaches 94% (GPT-4 baseline)."}
    text = "It is 3 times faster on 1000 images [1]. It has 95% accuracy [2]. It beats GPT-4 [2].\n1. Plain [1]."
    assert unsupported_number_sentences(text, abstracts) == ["It has 95% accuracy [2]."]
    assert unsupported_number_sentences("Accuracy is 94% [1].", abstracts) == ["Accuracy is 94% [1]."]  # wrong paper
    assert unsupported_number_sentences("Accuracy is 94%.", abstracts) == ["Accuracy is 94%."]  # cites nothing
    assert numbers_in("73.62 % [3] and 2.5x, not C1") == {"73.62", "2.5"}


def test_scaffolding_echo_is_the_prompt_layout_not_a_citation() -> None:
    assert echoes_scaffolding("[1] Abstract [2] reduces memory.")
    assert echoes_scaffolding('The paper shows, from the paper "X", that...')
    assert not echoes_scaffolding("It reduces memory by 5.6 times [2].")
    title = "N2N Learning: Network to Network Compression via Policy Gradient Reinforcement Learning"
    assert echoes_scaffolding(f"{title} reports 10x compression [1].", [title])
    assert not echoes_scaffolding("N2N Learning reports 10x compression [1].", [title])
    assert not echoes_scaffolding("Adding Gradient Noise Improves Learning reports it [1].", ["Adding Gradient Noise"])


def test_summary_counts_abstention_on_answerable_questions_as_a_miss() -> None:
    from evals.harness import summarize

    base = {
        "recall@1": 1.0,
        "recall@5": 1.0,
        "recall@10": 1.0,
        "mrr": 1.0,
        "ndcg@10": 1.0,
        "valid_citations": 1,
        "checked_citations": 1,
        "support": [],
        "seconds": 1.0,
        "first_token": 1.0,
        "prompt_tokens": 10,
        "unsupported_numbers": [],
        "near_miss": False,
        "model": "m",
    }
    records = [
        {
            **base,
            "kind": "single",
            "abstained": False,
            "citation_precision": 1.0,
            "citation_recall": 1.0,
            "answered_precision": 1.0,
            "answered_recall": 1.0,
            "facts_found": 1.0,
            "premise_corrected": None,
            "echo": False,
        },
        {
            **base,
            "kind": "single",
            "abstained": True,
            "citation_precision": 0.0,
            "citation_recall": 0.0,
            "answered_precision": None,
            "answered_recall": None,
            "facts_found": 0.0,
            "premise_corrected": None,
            "echo": None,
        },
        {
            **base,
            "kind": "out_of_scope",
            "abstained": True,
            "citation_precision": None,
            "citation_recall": None,
            "answered_precision": None,
            "answered_recall": None,
            "facts_found": None,
            "premise_corrected": None,
            "echo": None,
            "near_miss": True,
        },
    ]
    summary = summarize(records)
    assert summary["citation_precision"] == 0.5 and summary["citation_recall"] == 0.5
    assert summary["answered_precision"] == 1.0 and summary["wrong_abstention"] == 0.5
    assert summary["abstention"] == 1.0 and summary["abstention_near_miss"] == 1.0 and summary["echo"] == 0.0


def test_bundled_gold_set_is_sound() -> None:
    questions = load_gold(BUNDLED)
    kinds = [q.kind for q in questions]
    assert len(questions) >= 60
    assert kinds.count("multi") >= 10 and kinds.count("out_of_scope") >= 10 and kinds.count("false_premise") >= 3
    assert len({q.id for q in questions}) == len(questions)
    papers = {title_key(p.title): p for p in read_papers(sample_corpus()).papers}
    for q in questions:
        assert q.gold <= papers.keys(), q.id
        assert bool(q.gold) == q.answerable and (2 <= len(q.gold) <= 4 if q.kind == "multi" else True), q.id
        text = normalize(" ".join(papers[k].abstract for k in q.gold))
        assert all(normalize(f) in text for f in q.facts), q.id
        for k in q.gold:  # questions in other words than the title's
            name = papers[k].title.split(":")[0]
            assert ":" not in papers[k].title or name.lower() not in q.question.lower(), q.id


def test_bundled_test_set_is_sound_and_apart_from_dev() -> None:
    dev, test = (load_gold(p) for p in GOLD_SETS["bundled"])
    kinds = [q.kind for q in test]
    assert len(test) >= 80 and kinds.count("multi") >= 10 and kinds.count("out_of_scope") >= 10
    assert kinds.count("false_premise") >= 4 and sum(q.near_miss for q in test) * 2 >= kinds.count("out_of_scope")
    assert not {q.question for q in dev} & {q.question for q in test} and not {q.id for q in dev} & {q.id for q in test}
    papers = {title_key(p.title): p for p in read_papers(sample_corpus()).papers}
    for q in test:
        assert q.gold <= papers.keys(), q.id
        assert bool(q.gold) == q.answerable and (2 <= len(q.gold) <= 4 if q.kind == "multi" else len(q.gold) <= 1), q.id
        text = normalize(" ".join(papers[k].abstract for k in q.gold))
        assert all(normalize(f) in text for f in q.facts), q.id


def test_asreview_gold_sets_have_every_kind_and_no_shared_question() -> None:
    # The collection itself is third-party data outside the repository, so its titles and
    # facts are checked by `papercite eval --set asreview` when it loads the collection.
    dev, test = (load_gold(p) for p in GOLD_SETS["asreview"])
    assert len(test) >= 60 and len(dev) >= 20
    for part in (dev, test):
        kinds = [q.kind for q in part]
        assert {"single", "multi", "out_of_scope", "false_premise"} <= set(kinds)
        assert all(bool(q.gold) == q.answerable for q in part) and all(q.facts for q in part if q.answerable)
    assert not {q.question for q in dev} & {q.question for q in test} and not {q.id for q in dev} & {q.id for q in test}


def test_asreview_loader_picks_a_fixed_balanced_sample(tmp_path: Path) -> None:
    import gzip

    from evals.gold import load_asreview

    path = tmp_path / "abstracts.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for source in ("asreview/A", "asreview/B", "scifact"):
            for i in range(5):
                f.write(json.dumps({"title": f"{source} paper {i}", "abstract": f"Text {i}.", "source": source}) + "\n")
    papers = load_asreview(path, per_source=3)
    assert len(papers) == 6 and {p.origin for p in papers} == {"asreview/A", "asreview/B"}
    assert [p.id for p in papers] == [p.id for p in load_asreview(path, per_source=3)]  # the same every time


def test_scifact_loader_reads_adjacent_quoted_sentences(tmp_path: Path) -> None:
    import csv

    with (tmp_path / "corpus.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["doc_id", "title", "abstract", "structured"])
        writer.writerow(["7", "A title", "['First sentence.' 'It\\'s second.'\n \"Third, with 'quote'\"]", "False"])
    with (tmp_path / "claims_train.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "claim", "evidence_doc_id", "evidence_label", "evidence_sentences", "cited_doc_ids"])
        writer.writerows(
            [
                ["1", "A claim.", "7", "SUPPORT", "[0]", "[7]"],
                ["1", "A claim.", "7", "SUPPORT", "[1]", "[7]"],
                ["2", "No docs.", "", "", "[]", "[]"],
            ]
        )
    papers, claims = load_scifact(tmp_path)
    assert papers[0].id == "scifact:7" and papers[0].abstract == "First sentence. It's second. Third, with 'quote'"
    assert [(c.question, set(c.gold)) for c in claims] == [("A claim.", {"scifact:7"})]


def test_follow_up_sets_are_two_turn_chats_over_the_sample_with_every_pattern() -> None:
    dev, test = (load_gold(p) for p in GOLD_SETS["followup"])
    papers = {title_key(p.title): p for p in read_papers(sample_corpus()).papers}
    for part in (dev, test):
        assert len(part) >= 20 and all(len(q.history) == 1 for q in part)
        assert {"detail", "narrow", "switch", "uncovered"} == {q.pattern for q in part}
        for q in part:
            assert q.gold <= papers.keys() and bool(q.gold) == q.answerable, q.id
            text = normalize(" ".join(papers[k].abstract for k in q.gold))
            assert all(normalize(f) in text for f in q.facts), q.id
    assert not {q.question for q in dev} & {q.question for q in test} and not {q.id for q in dev} & {q.id for q in test}


WAVELET = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
# A single-paper question of the sample corpus, answered by its WaveMix paper.
WAVELET_QUESTION = GoldQuestion(
    "t1",
    "Which architecture mixes image tokens with a 2D wavelet transform?",
    "single",
    frozenset({title_key(WAVELET)}),
    (WAVELET,),
    ("wavelet",),
)


def test_gate_passes_sound_answers_and_fails_a_broken_citation_parser(sample_settings, scripted, monkeypatch) -> None:
    import rag.answer.steps
    from rag.types import Citation

    gate = {"citation_validity": 1.0, "citation_precision": 0.8, "citation_recall": 0.75, "recall@5": 0.9}
    reply = "WaveMix uses a multi-level two-dimensional discrete wavelet transform (2D-DWT) in its blocks [1]."

    scripted.enqueue(reply)
    sound = run_answers([WAVELET_QUESTION], sample_settings, llm=scripted, log=lambda _: None)
    assert check_gate(sound.summaries["all"], gate) == []
    assert sound.summaries["all"]["facts"] == 1.0

    def off_by_one(self):  # a parser bug: [n] mapped to the paper after n
        sources = self.sources
        return tuple(
            Citation(n, sources[n % len(sources)].title, sources[n % len(sources)].paper_id)
            for n in rag.answer.steps.marker_numbers(self.text)
        )

    monkeypatch.setattr(rag.answer.steps.Draft, "citations", off_by_one)
    scripted.enqueue(reply)
    broken = run_answers([WAVELET_QUESTION], sample_settings, llm=scripted, log=lambda _: None)
    failures = check_gate(broken.summaries["all"], gate)
    assert any(f.startswith("citation_validity") for f in failures)
    assert any(f.startswith("citation_precision") for f in failures)


def test_eval_command_retrieval_only_writes_the_report(tmp_path: Path) -> None:
    from ui.cli import cli

    result = CliRunner().invoke(cli, ["eval", "--retrieval-only", "--limit", "12", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| hybrid |" in result.output and "| dense |" in result.output and "| bm25 |" in result.output
    report = json.loads((tmp_path / "eval-report.json").read_text())
    assert set(report["retrieval"]) == {"dense", "bm25", "hybrid"}
    assert (tmp_path / "eval-report.md").read_text().startswith("# papercite eval: bundled")
    assert (tmp_path / "eval-report.png").stat().st_size > 5_000


def test_judge_agreement_counts_against_hand_labels(tmp_path: Path) -> None:
    from evals.judge import judge_agreement

    labels = tmp_path / "labels.jsonl"
    rows = [("A holds [1].", ["A holds."], True), ("B holds [1].", ["A holds."], False), ("C [2].", ["C."], True)]
    labels.write_text("\n".join(json.dumps({"sentence": s, "passages": p, "supported": y}) for s, p, y in rows))
    says_yes_when_first_letter_matches = lambda sentence, passages: sentence[0] == passages[0][0]
    result = judge_agreement(says_yes_when_first_letter_matches, labels)
    assert result["labels"] == 3 and result["agreement"] == 1.0
    result = judge_agreement(lambda s, p: True, labels)
    assert result["agreement"] == pytest.approx(2 / 3) and result["judge_yes_label_no"] == 1


def test_replay_generates_a_prompt_once_and_replays_it_from_the_file(tmp_path: Path, scripted) -> None:
    from llama_index.core.base.llms.types import ChatMessage

    from evals.replay import ReplayLLM

    scripted.enqueue("First reply [1].", "Second reply [2].")
    cache = tmp_path / "gen.jsonl"
    llm = ReplayLLM(scripted, "scripted", cache)
    ask_a, ask_b = [ChatMessage(role="user", content="a")], [ChatMessage(role="user", content="b")]
    assert "".join(r.delta or "" for r in llm.stream_chat(ask_a)) == "First reply [1]."
    assert llm.chat(ask_a).message.content == "First reply [1]."  # not asked again
    again = ReplayLLM(scripted, "scripted", cache)  # a new run reads the file
    assert again.chat(ask_a).message.content == "First reply [1]." and again.counts == (1, 0)
    assert again.chat(ask_b).message.content == "Second reply [2]." and len(scripted.history) == 2


def test_ablation_switches_each_step_off_in_turn_and_replays_generations(sample_settings, scripted, tmp_path) -> None:
    from evals.ablation import ABLATED, ablation_table, run_ablation

    scripted.enqueue(*["WaveMix uses a 2D-DWT, a discrete wavelet transform, in its blocks [1]."] * 4)
    ablate = functools.partial(
        run_ablation,
        sample_settings,
        {"test": [WAVELET_QUESTION]},
        replay=tmp_path / "gen.jsonl",
        abstracts={},
        key=lambda _pid, title: title_key(title),
        model=scripted,
        echo=lambda _: None,
    )
    rows = ablate()
    assert list(rows) == ["all steps", *(f"no {step}" for step in ABLATED)]
    assert rows["all steps"]["test"]["citation_precision"] == 1.0
    # Only switching off context selection changes the prompt: two generations in all, the rest replayed.
    assert len(scripted.history) == 2
    table = ablation_table(rows)
    assert table.splitlines()[0].startswith("| step off | precision (test) |") and "| no verify |" in table
    some = ablate(steps=("decide",))
    assert list(some) == ["all steps", "no decide"] and len(scripted.history) == 2  # all replayed
    with pytest.raises(BadInput, match="--ablate-step generate"):
        ablate(steps=("generate",))


def test_a_follow_up_is_asked_after_its_first_turn_and_alone_without_it(sample_settings, scripted) -> None:
    follow_up = GoldQuestion(
        "f1",
        "How many fewer parameters does it need than the alternatives?",
        "single",
        frozenset({title_key(WAVELET)}),
        (WAVELET,),
        ("fewer parameters",),
        history=(WAVELET_QUESTION.question,),
        pattern="detail",
    )
    first = "WaveMix uses a multi-level two-dimensional discrete wavelet transform (2D-DWT) in its blocks [1]."
    scripted.enqueue(first, "WaveMix architectures require fewer parameters than the previous state-of-the-art [1].")
    run = run_answers([follow_up], sample_settings, llm=scripted, log=lambda _: None)
    record = run.records[0]
    assert len(scripted.history) == 2 and scripted.history[1][len(scripted.history[0])].content == first
    assert record["pattern"] == "detail" and record["history"] == [WAVELET_QUESTION.question]
    assert record["citation_precision"] == 1.0 and record["facts_found"] == 1.0 and not record["alone"]

    scripted.enqueue("It needs fewer parameters [1].")
    alone = run_answers([follow_up], sample_settings, llm=scripted, log=lambda _: None, alone=True)
    assert alone.records[0]["alone"] and alone.records[0]["history_first_token"] is None
    assert len(scripted.history) <= 3 and WAVELET_QUESTION.question not in str(scripted.history[2:])


def test_replay_keeps_a_readings_log_probabilities(tmp_path: Path, scripted) -> None:
    from llama_index.core.base.llms.types import ChatMessage

    from evals.replay import ReplayLLM
    from rag.answer.readings import yes_probability

    scripted.enqueue(("YES", 0.8))
    cache = tmp_path / "gen.jsonl"
    reading = ReplayLLM(scripted, "scripted", cache).for_reading(64, 10)
    asked = [ChatMessage(role="user", content="Abstract ... Question: q?")]
    assert yes_probability(reading.verdict.chat(asked).logprobs) == pytest.approx(0.8)
    again = ReplayLLM(scripted, "scripted", cache)
    replayed = again.for_reading(64, 10).verdict.chat(asked)  # from the file: the model is not asked again
    assert yes_probability(replayed.logprobs) == pytest.approx(0.8) and again.counts == (1, 0)


def test_per_paper_eval_records_each_reading_and_the_calibrator_replays_the_decision(sample_settings, scripted) -> None:
    from evals.calibrate import Candidate, score
    from evals.gold import GoldQuestion, title_key
    from evals.harness import run_answers

    wavemix = "WaveMix: A Resource-efficient Neural Network for Image Analysis"
    question = GoldQuestion(
        "x1",
        "Which architecture mixes image tokens with a 2D wavelet transform?",
        "single",
        frozenset({title_key(wavemix)}),
        (wavemix,),
        ("wavelet",),
    )
    settings = sample_settings.updated(
        answer={"mode": "per_paper", "max_papers": 2}, tuning={"reading": {"read_margin": 1.0, "accept": 0.4}}
    )
    scripted.enqueue(("YES", 0.45), "YES\nWaveMix uses a two-dimensional discrete wavelet transform.", ("NO", 0.1))
    run = run_answers([question], settings, llm=scripted, log=lambda line: None)
    record = run.records[0]
    assert record["mode"] == "per_paper" and record["citation_precision"] == 1.0
    readings = [r for r in record["readings"] if r["verdict"] != "unread"]
    assert [r["gold"] for r in readings] == [True, False] and readings[0]["similarity"] > 0
    assert score([record], Candidate(0.4, 1.0, 0.2, 1.0, 1.0))["precision"] == 1.0
    assert score([record], Candidate(0.5, 1.0, 0.2, 1.0, 1.0))["wrong_abstention"] == 1.0  # 0.45 is under 0.5
