"""LLM backends: build the configured llama-index ``LLM`` and run it with clear errors.

One ``match`` picks the backend, each case importing only what it needs. The
third-party clients (ollama, openai, httpx) are imported here and nowhere else in
``rag``, and their exceptions become ``LLMUnavailable`` here, with the host and the fix.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
from llama_index.core.base.llms.types import ChatMessage, ChatResponse
from llama_index.core.llms import LLM
from llama_index.llms.openai_like import OpenAILike

from rag.errors import BadInput, LLMUnavailable, PaperciteError
from rag.llm.embedded import EMBEDDED_MODELS, EmbeddedLLM, default_threads, ensure_gguf
from rag.llm.ollama import LogprobOllama
from rag.llm.runtime import Choice, choose_runtime, cpu_flags, wheel_version
from rag.settings import LLMSettings, Settings

__all__ = [
    "BackendLLM",
    "ReadingLLMs",
    "build_llm",
    "chat_once",
    "embedded_runtime",
    "llm_choices",
    "models_dir",
    "ollama_has_model",
    "prefixes_dir",
    "reading_llms",
    "stream_chat",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendLLM:
    """A ready llama-index LLM and the label answers record, e.g. ``ollama:qwen2.5:3b``."""

    llm: LLM
    label: str
    backend: str
    fix: str  # what to tell the user when this backend fails mid-answer

    @classmethod
    def given(cls, llm: LLM) -> BackendLLM:
        """An LLM passed in by a caller (``ask(llm=...)``, ``Services(llm=...)``) instead of the configured one."""
        return cls(llm, f"custom:{llm.metadata.model_name}", "the given LLM", "check the LLM passed to ask()")


def ollama_has_model(host: str, model: str, timeout: float = 2.0) -> bool:
    """True when an Ollama server answers at ``host`` and serves ``model``."""
    try:
        listed = ollama.Client(host=host, timeout=timeout).list()
    except Exception:  # noqa: BLE001 - any failure means "not usable", which is all auto mode asks
        return False
    names = {m.model for m in listed.models}
    return model in names or f"{model}:latest" in names


def llm_choices(settings: Settings) -> dict[str, LLMSettings]:
    """The backends and models that can answer now, by label (as answers record them).

    The first entry is what ``settings`` itself resolves to (``auto`` included); the
    rest are alternatives a page may offer: every embedded model whose packages are
    installed, every model the Ollama server lists, and the OpenAI-compatible server
    when one is configured. Nothing is loaded; Ollama is asked with a short timeout.
    """
    conf = settings.llm
    choices: dict[str, LLMSettings] = {}
    host = conf.resolved_ollama_host()
    ollama_models = _ollama_models(host) if conf.backend in ("auto", "ollama") or conf.ollama_host else []
    match conf.backend:
        case "auto" if conf.ollama_model in ollama_models or f"{conf.ollama_model}:latest" in ollama_models:
            choices[f"ollama:{conf.ollama_model}"] = conf.model_copy(update={"backend": "ollama"})
        case "auto":
            choices[f"embedded:{_embedded_name(conf.embedded_model)}"] = conf.model_copy(update={"backend": "embedded"})
        case "ollama":
            choices[f"ollama:{conf.ollama_model}"] = conf
        case "embedded":
            choices[f"embedded:{_embedded_name(conf.embedded_model)}"] = conf
        case "openai":
            choices[f"openai:{conf.openai_model}"] = conf
    if importlib.util.find_spec("xllamacpp") is not None:
        for name, spec in EMBEDDED_MODELS.items():
            if importlib.util.find_spec(spec.module_pattern.format(i=1)) is not None:
                choices.setdefault(
                    f"embedded:{name}", conf.model_copy(update={"backend": "embedded", "embedded_model": name})
                )
    for model in ollama_models:
        choices.setdefault(f"ollama:{model}", conf.model_copy(update={"backend": "ollama", "ollama_model": model}))
    if conf.openai_base_url:
        choices.setdefault(f"openai:{conf.openai_model}", conf.model_copy(update={"backend": "openai"}))
    return choices


def _embedded_name(name: str) -> str:
    return name if "/" not in name and not name.endswith(".gguf") else Path(name).stem


def _ollama_models(host: str, timeout: float = 2.0) -> list[str]:
    try:
        return sorted(m.model for m in ollama.Client(host=host, timeout=timeout).list().models if m.model)
    except Exception:  # noqa: BLE001 - not running or not reachable: no Ollama choices
        return []


def build_llm(settings: Settings) -> BackendLLM:
    """Build the LLM that ``settings.llm.backend`` names.

    Raises:
        LLMUnavailable: the backend cannot be used; the message says why and the fix.
        BadInput: the backend's settings are incomplete.
    """
    conf = settings.llm
    match conf.backend:
        case "ollama":
            return _ollama(settings)
        case "embedded":
            return _embedded(settings)
        case "openai":
            return _openai(settings)
        case "auto":
            host = conf.resolved_ollama_host()
            if ollama_has_model(host, conf.ollama_model):
                return _ollama(settings)
            log.info("No Ollama serving %s at %s; using the embedded model", conf.ollama_model, host)
            return _embedded(settings)
        case other:  # settings validation makes this unreachable, but say so plainly
            raise BadInput(f"Unknown LLM backend {other!r}: use auto, ollama, embedded or openai.")


def _ollama(settings: Settings) -> BackendLLM:
    conf = settings.llm
    host = conf.resolved_ollama_host()
    llm = LogprobOllama(
        model=conf.ollama_model,
        base_url=host,
        request_timeout=conf.request_timeout,
        context_window=conf.context_window,  # sent as num_ctx on every request
        temperature=conf.temperature,
        additional_kwargs={"num_predict": conf.max_tokens},
    )
    fix = f"start it with `ollama serve` and `ollama pull {conf.ollama_model}`, or set PAPERCITE_LLM__BACKEND=embedded"
    return BackendLLM(llm, f"ollama:{conf.ollama_model}", f"Ollama at {host}", fix)


def _embedded(settings: Settings) -> BackendLLM:
    conf = settings.llm
    name = conf.embedded_model
    if name in EMBEDDED_MODELS:
        path = ensure_gguf(EMBEDDED_MODELS[name], models_dir(settings))
    elif Path(name).is_file():
        path = Path(name)
    else:
        raise BadInput(
            f"PAPERCITE_LLM__EMBEDDED_MODEL={name!r} is neither a known model "
            f"({', '.join(EMBEDDED_MODELS)}) nor a GGUF file: pick one of those or give a path."
        )
    runtime = embedded_runtime(settings)
    llm = EmbeddedLLM(
        runtime=str(runtime.path) if runtime.path else None,
        model_path=str(path),
        model_name=name if name in EMBEDDED_MODELS else path.stem,
        context_window=conf.context_window,
        max_tokens=conf.max_tokens,
        temperature=conf.temperature,
        threads=conf.threads or default_threads(),
        prompt_cache_mib=conf.prompt_cache_mib,
        prefix_dir=str(prefixes_dir(settings, path)) if conf.prefix_disk_mib else None,
        prefix_budget_mib=conf.prefix_disk_mib,
    )
    where = "embedded llama.cpp" + (" built for this CPU" if runtime.path else "")
    return BackendLLM(llm, f"embedded:{llm.model_name}", where, "reinstall with pip install 'papercite[embedded]'")


def embedded_runtime(settings: Settings) -> Choice:
    """The xllamacpp the embedded backend loads: a build for this CPU when usable, else the wheel."""
    if not settings.llm.native_runtime:
        return Choice(None, "PAPERCITE_LLM__NATIVE_RUNTIME is off")
    return choose_runtime(models_dir(settings), wheel_version(), cpu_flags())


def prefixes_dir(settings: Settings, model: Path) -> Path:
    """Where the embedded ``model`` keeps the saved states of papers it has read (:mod:`rag.llm.prefixes`)."""
    return settings.data_dir / "prefixes" / model.stem


def models_dir(settings: Settings) -> Path:
    """Where the embedded model's files live: the joined GGUF and any runtime built for this CPU."""
    return settings.llm.models_dir or settings.data_dir / "models"


def _openai(settings: Settings) -> BackendLLM:
    conf = settings.llm
    if not conf.openai_base_url:
        raise BadInput(
            "PAPERCITE_LLM__BACKEND=openai needs a server: set PAPERCITE_LLM__OPENAI_BASE_URL, "
            "e.g. http://127.0.0.1:8000/v1."
        )
    llm = OpenAILike(
        model=conf.openai_model,
        api_base=conf.openai_base_url,
        api_key=conf.openai_api_key.get_secret_value(),
        is_chat_model=True,
        context_window=conf.context_window,
        max_tokens=conf.max_tokens,
        temperature=conf.temperature,
        timeout=conf.request_timeout,
        max_retries=1,
    )
    fix = "check that the server is running and PAPERCITE_LLM__OPENAI_BASE_URL is right"
    return BackendLLM(llm, f"openai:{conf.openai_model}", f"OpenAI-compatible server at {conf.openai_base_url}", fix)


@dataclass(frozen=True)
class ReadingLLMs:
    """The backend's model set up for the two calls of a per-paper reading (:mod:`rag.answer.readings`).

    Attributes:
        verdict: writes one token and returns its log-probabilities when the backend can
            (a caller's own LLM is asked as it is: then its reply's first word is the verdict).
        finding: writes up to the reading's token budget.
        keeps_prefixes: ``verdict.chat(..., prefix=...)`` saves and restores the state of a paper's
            read prefix on disk (the embedded model, :mod:`rag.llm.prefixes`).
    """

    verdict: LLM
    finding: LLM
    keeps_prefixes: bool = False


def reading_llms(backend: BackendLLM, max_tokens: int, top_logprobs: int) -> ReadingLLMs:
    """Copies of ``backend``'s llama-index LLM set up for a reading: a one-token verdict with its
    log-probabilities, and a finding of up to ``max_tokens`` (the same loaded model, not another)."""
    llm = backend.llm
    if (set_up := getattr(llm, "for_reading", None)) is not None:  # an LLM that wraps another (the evals' replay)
        return set_up(max_tokens, top_logprobs)  # type: ignore[no-any-return]
    match llm:
        case EmbeddedLLM():
            verdict = llm.model_copy(update={"max_tokens": 1, "top_logprobs": top_logprobs})
            return ReadingLLMs(verdict, llm.model_copy(update={"max_tokens": max_tokens}), llm.keeps_prefixes)
        case LogprobOllama():
            options = llm.additional_kwargs
            verdict = llm.model_copy(
                update={"additional_kwargs": {**options, "num_predict": 1}, "top_logprobs": top_logprobs}
            )
            finding = llm.model_copy(update={"additional_kwargs": {**options, "num_predict": max_tokens}})
            return ReadingLLMs(verdict, finding)
        case OpenAILike():
            verdict = llm.model_copy(update={"max_tokens": 1, "logprobs": True, "top_logprobs": top_logprobs})
            return ReadingLLMs(verdict, llm.model_copy(update={"max_tokens": max_tokens}))
        case _:  # a caller's own LLM: asked as it is
            return ReadingLLMs(llm, llm)


def chat_once(backend: BackendLLM, llm: LLM, messages: Sequence[ChatMessage], **kwargs: object) -> ChatResponse:
    """One reply from ``llm`` (a copy of ``backend``'s), with any client failure as ``LLMUnavailable``.

    Raises:
        LLMUnavailable: the backend could not be reached, timed out, or failed.
    """
    try:
        return llm.chat(messages, **kwargs)
    except PaperciteError:
        raise
    except Exception as exc:  # ollama, httpx and openai each raise their own types
        raise LLMUnavailable(f"Cannot get an answer from {backend.backend} ({_describe(exc)}): {backend.fix}.") from exc


def stream_chat(backend: BackendLLM, messages: Sequence[ChatMessage]) -> Iterator[ChatResponse]:
    """Stream a reply, turning any client failure into ``LLMUnavailable`` naming the backend.

    Raises:
        LLMUnavailable: the backend could not be reached, timed out, or broke off.
    """
    try:
        yield from backend.llm.stream_chat(messages)
    except PaperciteError:
        raise
    except Exception as exc:  # ollama, httpx and openai each raise their own types
        raise LLMUnavailable(f"Cannot get an answer from {backend.backend} ({_describe(exc)}): {backend.fix}.") from exc


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException) or "timeout" in type(exc).__name__.lower():
        return "timed out"
    if isinstance(exc, (httpx.ConnectError, ConnectionError)) or "connect" in type(exc).__name__.lower():
        return "connection refused"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
