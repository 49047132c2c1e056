"""``papercite bench encoders``: other encoder backends for MiniLM, their speed and their retrieval quality.

Each backend runs the same packaged all-MiniLM-L6-v2, exported from its local path (no
hub), behind the same steps sentence-transformers takes: texts sorted by length, the
model's own tokenizer (padding to the longest in the batch, truncation at 256 word
pieces), mean pooling over the attention mask, unit length. Cases:

- ``torch-fp32``, ``torch-bf16``: ``SentenceTransformer.encode``, as papercite loads it
  (``embedding.precision`` float32 or bfloat16; bfloat16 is emulated, and slow, on CPUs
  without AVX-512 BF16 or AMX);
- ``onnx-fp32``: the graph exported by ``torch.onnx.export`` (dynamo), run by ONNX Runtime;
- ``onnx-int8``: that graph quantized by ONNX Runtime's dynamic quantization, int8 weights
  per channel (what optimum's ``export_dynamic_quantized_onnx_model`` calls);
- ``openvino-fp32``, ``openvino-bf16``: the ONNX graph compiled by OpenVINO with the
  inference precision hint f32 or bf16;
- ``openvino-int8``: NNCF's weight-only int8 compression (asymmetric, per channel) of the
  same graph; activations stay in floating point, so no calibration data is needed.

sentence-transformers' own ``backend="onnx"``/``"openvino"`` need optimum, whose releases
that install here pin transformers below 4.58 (papercite runs 5.x), so the export is done
with torch, ONNX Runtime, OpenVINO and NNCF directly (the ``encoders`` extra).

Speed is chunks per second over papercite's chunks of the first abstracts of a corpus,
the median of ``repeats`` runs, interleaved across cases so that other load on the
machine falls on every case alike. Quality is SciFact's dense nDCG@10 with exact cosine
search (papers ranked by their best chunk), and each case's mean cosine to torch fp32's
vectors over the speed chunks.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.schema import MetadataMode

from evals.bench import subset
from evals.gold import load_scifact
from evals.metrics import ndcg_at_k
from ingest.pipeline import chunk_papers
from ingest.readers import read_papers
from rag.embedding import load_embed_model
from rag.errors import BadInput
from rag.services import Services
from rag.settings import Settings

__all__ = ["ENCODER_CASES", "EncoderRow", "bench_encoders", "encoder_table", "load_encoder"]

ENCODER_CASES = (
    "torch-fp32",
    "torch-bf16",
    "onnx-fp32",
    "onnx-int8",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8",
)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

Encode = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class EncoderRow:
    """One backend: its median speed, how close its vectors are to torch fp32's, its SciFact nDCG@10."""

    case: str
    chunks: int
    seconds: float
    runs: int
    cosine_to_fp32: float | None
    ndcg: float | None

    @property
    def per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


def bench_encoders(
    settings: Settings,
    corpus: Path,
    *,
    abstracts: int = 300,
    repeats: int = 3,
    cases: Sequence[str] = ENCODER_CASES,
    scifact_dir: Path | None = None,
    scifact_claims: int | None = None,
    echo: Callable[[str], None] = print,
) -> list[EncoderRow]:
    """Time every case over the same chunks; score each on SciFact when ``scifact_dir`` is given.

    ``scifact_claims`` keeps the first N claims and, as the corpus, their cited papers and
    the papers that follow them in corpus order up to ten times N (all of SciFact when None).

    Raises:
        BadInput: the corpus is missing, a case is unknown, or a backend's package is not installed.
    """

    unknown = set(cases) - set(ENCODER_CASES)
    if unknown:
        raise BadInput(f"Unknown encoder case(s) {sorted(unknown)}: choose from {', '.join(ENCODER_CASES)}.")
    if not corpus.is_file():
        raise BadInput(f"No corpus at {corpus}: pass the path of abstracts.jsonl.gz (JSONL with title and abstract).")
    services = Services(settings)
    papers_file = settings.data_dir / "bench" / "encoders" / f"papers-{abstracts}.jsonl"
    papers_file.parent.mkdir(parents=True, exist_ok=True)
    subset(corpus, abstracts, papers_file)
    texts = _texts(chunk_papers(read_papers(papers_file).papers, services)[0])
    encoders = {case: load_encoder(case, settings) for case in cases}
    for encode in encoders.values():
        encode(texts[:8])  # first calls set up kernels and allocate
    seconds: dict[str, list[float]] = {case: [] for case in cases}
    vectors: dict[str, np.ndarray] = {}
    for i in range(repeats):
        for case, encode in encoders.items():
            started = time.perf_counter()
            vectors[case] = encode(texts)
            seconds[case].append(time.perf_counter() - started)
            echo(f"  {case:<14} run {i + 1}/{repeats}: {len(texts)} chunks in {seconds[case][-1]:.1f} s")
    reference = vectors.get("torch-fp32")
    scores = _scifact(encoders, services, scifact_dir, scifact_claims, echo) if scifact_dir else {}
    return [
        EncoderRow(
            case,
            len(texts),
            statistics.median(seconds[case]),
            repeats,
            float(np.mean(np.sum(vectors[case] * reference, axis=1))) if reference is not None else None,
            scores.get(case),
        )
        for case in cases
    ]


def encoder_table(rows: Sequence[EncoderRow]) -> str:
    """A Markdown table: chunks/s, speed against torch fp32, mean cosine to its vectors, SciFact nDCG@10."""
    base = next((r for r in rows if r.case == "torch-fp32"), None)
    lines = [
        "| encoder | chunks | seconds | chunks/s | vs torch fp32 | mean cosine to fp32 | SciFact nDCG@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        speedup = f"{r.per_second / base.per_second:.2f}x" if base and base.per_second else ""
        cosine = f"{r.cosine_to_fp32:.4f}" if r.cosine_to_fp32 is not None else ""
        ndcg = f"{r.ndcg:.3f}" if r.ndcg is not None else ""
        lines.append(
            f"| {r.case} | {r.chunks:,} | {r.seconds:.1f} | {r.per_second:.1f} | {speedup} | {cosine} | {ndcg} |"
        )
    return "\n".join(lines)


def load_encoder(case: str, settings: Settings) -> Encode:
    """The encode function of one case: texts in, unit vectors (one row per text) out.

    Exports are cached under ``<data dir>/bench/encoders`` (exporting takes minutes).

    Raises:
        BadInput: the backend's package is not installed (the message names the extra).
    """

    conf = settings.embedding
    if case.startswith("torch-"):
        precision = "float32" if case == "torch-fp32" else "bfloat16"
        model = load_embed_model(conf.model_copy(update={"precision": precision}))._model  # type: ignore[attr-defined]
        return lambda texts: model.encode(list(texts), batch_size=conf.batch_size, normalize_embeddings=True)
    torch_model = load_embed_model(conf.model_copy(update={"precision": "float32"}))._model  # type: ignore[attr-defined]
    cache = settings.data_dir / "bench" / "encoders"
    try:
        onnx_path = _export_onnx(torch_model, cache / "minilm-fp32.onnx")
        if case == "onnx-fp32":
            return _encoder(_onnx_runner(onnx_path), torch_model, conf.batch_size)
        if case == "onnx-int8":
            return _encoder(
                _onnx_runner(_quantize_onnx(onnx_path, cache / "minilm-int8.onnx")), torch_model, conf.batch_size
            )
        return _encoder(_openvino_runner(onnx_path, case.removeprefix("openvino-")), torch_model, conf.batch_size)
    except ImportError as exc:
        raise BadInput(f"Encoder case {case} needs {exc.name}: run `pip install -e '.[encoders]'`.") from exc


# -- backends -------------------------------------------------------------------------


def _encoder(run: Callable[[dict[str, np.ndarray]], np.ndarray], st_model: Any, batch_size: int) -> Encode:
    """sentence-transformers' steps around a graph: sort by length, tokenize, run, mean-pool, normalize."""
    tokenizer, max_length = st_model.tokenizer, st_model.max_seq_length

    def encode(texts: Sequence[str]) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), st_model.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="np"
            )
            inputs = {k: batch[k].astype(np.int64) for k in _INPUTS}
            hidden = run(inputs).astype(np.float32)
            mask = inputs["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    return encode


def _export_onnx(st_model: Any, path: Path) -> Path:
    """MiniLM's transformer as ONNX (fp32, dynamic batch and length), exported once from the local model."""
    if path.exists():
        return path
    import torch  # heavy: only the encoder benchmark

    class Transformer(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    example = st_model.tokenizer(["an example", "a longer example text"], padding=True, return_tensors="pt")
    axes = {0: "batch", 1: "length"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    # The TorchScript exporter (dynamo=False) gives wrong hidden states for this BERT under
    # transformers 5 (max error about 1.3 against torch); the dynamo exporter matches to 1e-5.
    torch.onnx.export(
        Transformer(st_model[0].auto_model).eval(),
        tuple(example[k] for k in _INPUTS),
        str(tmp),
        input_names=list(_INPUTS),
        output_names=["last_hidden_state"],
        dynamic_axes={**{k: axes for k in _INPUTS}, "last_hidden_state": axes},
        opset_version=18,
        dynamo=True,
        external_data=False,
    )
    tmp.rename(path)
    return path


def _quantize_onnx(source: Path, path: Path) -> Path:
    """Dynamic int8 quantization of the ONNX graph: int8 weights per output channel."""
    if not path.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic  # optional: not a dependency

        tmp = path.with_suffix(".tmp.onnx")
        quantize_dynamic(str(source), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
        tmp.rename(path)
    return path


def _onnx_runner(path: Path) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import onnxruntime as ort  # optional: not a dependency

    options = ort.SessionOptions()
    # Its threads otherwise spin for a while after each run, taking CPU from the case timed next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda inputs: session.run(None, inputs)[0]


def _openvino_runner(onnx_path: Path, precision: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import openvino as ov  # optional: not a dependency

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    hint = "f32"
    if precision == "int8":
        import nncf  # optional: not a dependency

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    elif precision == "bf16":
        hint = "bf16"
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    return lambda inputs: request.infer(inputs)[compiled.output(0)]


# -- SciFact ----------------------------------------------------------------------------


def _texts(nodes: Sequence[Any]) -> list[str]:

    return [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]


def _scifact(
    encoders: dict[str, Encode],
    services: Any,
    directory: Path,
    claims: int | None,
    echo: Callable[[str], None],
) -> dict[str, float]:
    """Dense nDCG@10 of each encoder on SciFact's training claims (exact cosine, papers by best chunk)."""

    papers, questions = load_scifact(directory)
    if claims is not None:
        questions = questions[:claims]
        gold = set().union(*(q.gold for q in questions))
        keep = {p.id for p in papers if p.id in gold}
        for p in papers:
            if len(keep) >= 10 * claims:
                break
            keep.add(p.id)
        papers = [p for p in papers if p.id in keep]
    nodes, _ = chunk_papers(papers, services)
    owners = np.array([n.metadata["paper_id"] for n in nodes])
    texts = _texts(nodes)
    scores = {}
    for case, encode in encoders.items():
        started = time.perf_counter()
        chunks, asked = encode(texts), encode([q.question for q in questions])
        similarity = asked @ chunks.T
        total = 0.0
        for q, row in zip(questions, similarity):
            ranked = owners[np.argsort(-row, kind="stable")]
            total += ndcg_at_k(list(dict.fromkeys(ranked.tolist()))[:10], q.gold, 10)
        scores[case] = total / len(questions)
        echo(
            f"  {case:<14} SciFact nDCG@10 {scores[case]:.3f}: {len(questions)} claims, "
            f"{len(papers)} papers, {len(texts)} chunks ({time.perf_counter() - started:.0f} s)"
        )
    return scores
