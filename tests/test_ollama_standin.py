"""Checks the Ollama stand-in with the real ``ollama`` and llama-index clients."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import ollama
import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.llms.ollama import Ollama

try:  # works both as `python -m pytest` (rootdir on sys.path) and plain `pytest`
    from tests.ollama_standin import OllamaStandIn
except ImportError:
    from ollama_standin import OllamaStandIn

MODEL = "qwen2.5:3b"
SENTENCE = "the quick brown fox jumps over the lazy dog"
WORDS = SENTENCE.split()


class FakeModel:
    """Deterministic generator: yields the words of SENTENCE with a tiny sleep.

    If ``gate`` is set to an Event, the generator pauses after its first word until
    the gate opens, so a test can prove the client received a chunk while the
    generator was still running (real streaming). ``finished`` marks the end.
    """

    def __init__(self) -> None:
        self.finished = threading.Event()
        self.gate: threading.Event | None = None
        self.calls: list[tuple[list[dict], dict, object]] = []

    def __call__(self, messages: list[dict], options: dict, fmt: object) -> Iterator[str]:
        self.calls.append((messages, options, fmt))
        self.finished.clear()
        for i, word in enumerate(WORDS):
            time.sleep(0.005)
            yield word if i == 0 else " " + word
            if i == 0 and self.gate is not None:
                self.gate.wait(timeout=20)  # bounded so a non-streaming server fails, not hangs
        self.finished.set()


@pytest.fixture
def fake() -> FakeModel:
    return FakeModel()


@pytest.fixture
def srv(fake: FakeModel) -> Iterator[OllamaStandIn]:
    with OllamaStandIn({MODEL: fake}) as s:
        yield s


@pytest.fixture
def client(srv: OllamaStandIn) -> Iterator[ollama.Client]:
    with ollama.Client(host=srv.url, timeout=10) as c:
        yield c


MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say the sentence"}]


def test_root_version_and_head(srv: OllamaStandIn) -> None:
    assert srv.url.startswith("http://127.0.0.1:")
    r = httpx.get(srv.url + "/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert httpx.head(srv.url + "/").status_code == 200
    assert httpx.get(srv.url + "/api/version").json()["version"]
    assert httpx.get(srv.url + "/api/nope").status_code == 404


def test_list_show_ps(client: ollama.Client) -> None:
    models = client.list().models
    assert [m.model for m in models] == [MODEL]
    assert models[0].details.format == "gguf" and models[0].details.parameter_size == "3B"
    assert models[0].size and models[0].digest and models[0].modified_at

    info = client.show(MODEL)
    assert info.modelinfo["general.architecture"] == "qwen2"
    assert info.modelinfo["qwen2.context_length"] == 32768
    assert info.capabilities == ["completion"]
    assert info.details.family == "qwen2" and info.template and info.parameters

    assert [m.model for m in client.ps().models] == [MODEL]


def test_show_legacy_name_and_unknown(srv: OllamaStandIn, client: ollama.Client) -> None:
    r = httpx.post(srv.url + "/api/show", json={"name": MODEL})
    assert r.status_code == 200 and "model_info" in r.json()
    with pytest.raises(ollama.ResponseError) as ei:
        client.show("nope:1b")
    assert ei.value.status_code == 404 and "not found" in ei.value.error


def test_chat_non_stream(srv: OllamaStandIn, client: ollama.Client, fake: FakeModel) -> None:
    r = client.chat(MODEL, MSGS, stream=False, options={"num_ctx": 2048, "temperature": 0}, format="json")
    assert r.done and r.done_reason == "stop"
    assert r.message.role == "assistant" and r.message.content == SENTENCE
    assert r.eval_count == len(WORDS) and r.prompt_eval_count == 5
    assert r.total_duration and r.eval_duration is not None
    messages, options, fmt = fake.calls[-1]
    assert messages == MSGS and options["num_ctx"] == 2048 and fmt == "json"
    req = srv.requests[-1]
    assert req["path"] == "/api/chat" and req["method"] == "POST"
    assert req["body"]["stream"] is False and req["body"]["options"]["num_ctx"] == 2048


def test_chat_stream_is_really_streamed(client: ollama.Client, fake: FakeModel) -> None:
    fake.gate = threading.Event()  # generator blocks after word 1 until we open the gate
    stream = client.chat(MODEL, MSGS, stream=True)
    try:
        first = next(stream)  # would time out (client timeout=10 s) if the server buffered
        assert not fake.finished.is_set(), "first chunk arrived only after the generator finished"
        assert first.message.content == WORDS[0] and not first.done
    finally:
        fake.gate.set()
    rest = list(stream)
    assert fake.finished.is_set()
    chunks = [first, *rest]
    assert len(chunks) == len(WORDS) + 1
    assert all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert chunks[-1].done_reason == "stop" and chunks[-1].eval_count == len(WORDS)
    assert chunks[-1].message.content == ""
    assert "".join(c.message.content or "" for c in chunks) == SENTENCE


def test_stream_defaults_to_true_and_is_ndjson(srv: OllamaStandIn) -> None:
    body = {"model": MODEL, "messages": MSGS}
    with httpx.stream("POST", srv.url + "/api/chat", json=body) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines()]
    assert len(lines) == len(WORDS) + 1 and lines[-1]["done"] is True


def test_num_predict_limits_output(client: ollama.Client) -> None:
    r = client.chat(MODEL, MSGS, stream=False, options={"num_predict": 3})
    assert r.eval_count == 3 and r.done_reason == "length"


def test_generate(client: ollama.Client, fake: FakeModel) -> None:
    r = client.generate(MODEL, "say it", system="be brief", stream=False)
    assert r.done and r.response == SENTENCE and r.eval_count == len(WORDS)
    assert fake.calls[-1][0] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say it"}]
    chunks = list(client.generate(MODEL, "say it", stream=True))
    assert len(chunks) == len(WORDS) + 1 and chunks[-1].done
    assert "".join(c.response or "" for c in chunks) == SENTENCE


def test_generate_empty_prompt_loads_model(client: ollama.Client, fake: FakeModel) -> None:
    r = client.generate(MODEL, stream=False, keep_alive="5m")
    assert r.done and r.done_reason == "load" and r.response == ""
    assert fake.calls == []


def test_unknown_model_404(client: ollama.Client) -> None:
    for call in (
        lambda: client.chat("nope:1b", MSGS, stream=False),
        lambda: list(client.chat("nope:1b", MSGS, stream=True)),
        lambda: client.generate("nope:1b", "hi", stream=False),
    ):
        with pytest.raises(ollama.ResponseError) as ei:
            call()
        assert ei.value.status_code == 404
        assert 'model "nope:1b" not found, try pulling it first' in ei.value.error


def test_bad_json_400(srv: OllamaStandIn) -> None:
    r = httpx.post(srv.url + "/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()


def test_llama_index_chat_and_stream(srv: OllamaStandIn) -> None:
    llm = Ollama(model=MODEL, base_url=srv.url, request_timeout=60, context_window=4096)
    msgs = [ChatMessage(role="user", content="say the sentence")]
    resp = llm.chat(msgs)
    assert resp.message.content == SENTENCE
    assert resp.raw["usage"]["completion_tokens"] == len(WORDS)
    deltas = [r.delta for r in llm.stream_chat(msgs)]
    assert len(deltas) > 2 and "".join(d or "" for d in deltas) == SENTENCE
    chats = [r for r in srv.requests if r["path"] == "/api/chat"]
    assert len(chats) == 2
    assert all(r["body"]["options"]["num_ctx"] == 4096 for r in chats)


def test_llama_index_reads_context_window_from_show(srv: OllamaStandIn) -> None:
    llm = Ollama(model=MODEL, base_url=srv.url, request_timeout=60)
    assert llm.metadata.context_window == 32768


# -- fault injection ----------------------------------------------------------

STREAM_ERRORS = (httpx.HTTPError, ollama.ResponseError, ConnectionError, ValueError)


@pytest.mark.parametrize("stream", [False, True])
def test_fault_down(srv: OllamaStandIn, client: ollama.Client, stream: bool) -> None:
    srv.fault = "down"
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, ConnectionError)):
        r = client.chat(MODEL, MSGS, stream=stream)
        if stream:
            list(r)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, ConnectionError)):
        client.list()
    srv.fault = None
    assert client.chat(MODEL, MSGS, stream=False).message.content == SENTENCE


def test_fault_slow_times_out(srv: OllamaStandIn) -> None:
    srv.fault, srv.slow_seconds = "slow", 3
    with ollama.Client(host=srv.url, timeout=1) as c, pytest.raises(httpx.TimeoutException):
        c.chat(MODEL, MSGS, stream=False)


def test_fault_slow_still_answers(srv: OllamaStandIn, client: ollama.Client) -> None:
    srv.fault, srv.slow_seconds = "slow", 0.05
    assert client.chat(MODEL, MSGS, stream=False).message.content == SENTENCE


@pytest.mark.parametrize("stream", [False, True])
def test_fault_garbage(srv: OllamaStandIn, client: ollama.Client, stream: bool) -> None:
    srv.fault = "garbage"
    with pytest.raises(ValueError):  # json.JSONDecodeError
        r = client.chat(MODEL, MSGS, stream=stream)
        if stream:
            list(r)


def test_fault_truncated_stream(srv: OllamaStandIn, client: ollama.Client) -> None:
    srv.fault = "truncated"
    got = []
    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in client.chat(MODEL, MSGS, stream=True):
            got.append(chunk)  # noqa: PERF402 - list() would lose the chunks that came before the error
    assert len(got) == 2 and not any(c.done for c in got)


def test_fault_truncated_non_stream(srv: OllamaStandIn, client: ollama.Client) -> None:
    srv.fault = "truncated"
    with pytest.raises(httpx.RemoteProtocolError):
        client.chat(MODEL, MSGS, stream=False)


@pytest.mark.parametrize("stream", [False, True])
def test_fault_error_500(srv: OllamaStandIn, client: ollama.Client, stream: bool) -> None:
    srv.fault = "error"
    with pytest.raises(ollama.ResponseError) as ei:
        r = client.chat(MODEL, MSGS, stream=stream)
        if stream:
            list(r)
    assert ei.value.status_code == 500 and ei.value.error


def test_llama_index_sees_faults(srv: OllamaStandIn) -> None:
    llm = Ollama(model=MODEL, base_url=srv.url, request_timeout=1, context_window=4096)
    msgs = [ChatMessage(role="user", content="hi")]
    for fault in ("down", "garbage", "truncated", "error"):
        srv.fault = fault
        with pytest.raises(STREAM_ERRORS):
            list(llm.stream_chat(msgs))


def test_model_exception_mid_stream(srv: OllamaStandIn, client: ollama.Client) -> None:
    def broken(messages: list[dict], options: dict, fmt: object) -> Iterator[str]:
        yield "partial"
        raise RuntimeError("CUDA out of memory")

    srv.models["broken:1b"] = broken
    with pytest.raises(ollama.ResponseError, match="CUDA out of memory"):
        list(client.chat("broken:1b", MSGS, stream=True))
    with pytest.raises(ollama.ResponseError) as ei:
        client.chat("broken:1b", MSGS, stream=False)
    assert ei.value.status_code == 500


def test_unknown_fault_rejected(srv: OllamaStandIn) -> None:
    with pytest.raises(ValueError):
        srv.fault = "exploded"


def test_stop_is_prompt_even_with_slow_handler(fake: FakeModel) -> None:
    s = OllamaStandIn({MODEL: fake}, fault="slow")
    s.slow_seconds = 30
    url = s.start()
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(httpx.get(url + "/api/tags", timeout=20))
        except httpx.HTTPError as e:
            outcome.append(e)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    s.stop()
    t.join()
    assert time.monotonic() - t0 < 10  # generous: just "did not wait the 30 s"
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError)  # dropped, not answered
