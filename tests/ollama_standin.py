"""A small, protocol-faithful stand-in for the Ollama HTTP server, for tests.

Why: CI machines (and this dev box) have no Ollama binary and cannot install
one, yet the project talks to Ollama through the official ``ollama`` client and
llama-index's ``Ollama`` LLM.  This module serves the subset of the Ollama REST
API those clients use (``/``, ``/api/version``, ``/api/tags``, ``/api/show``,
``/api/ps``, ``/api/chat``, ``/api/generate``) over real HTTP on 127.0.0.1,
with real chunked NDJSON streaming, so the client code paths are exercised
exactly as against the real server.  The "model" is any Python callable
``generate(messages, options, format) -> Iterator[str]`` (e.g. the project's
embedded llama.cpp model, or a deterministic fake).

Log-probabilities: a request with ``logprobs`` (and ``top_logprobs``) reaches the model
function as ``options["top_logprobs"]`` (at least 1); it may then yield dicts
``{"content": piece, "logprobs": [{"token", "logprob", "top_logprobs": [...]}, ...]}``,
which the response carries as Ollama does (each chunk's ``logprobs``). A model function
that ignores the option answers as an Ollama too old to know the fields.

When ``OLLAMA_HOST`` points to a real Ollama, the project's tests use that
server instead of this stand-in.

Fault injection: set ``standin.fault`` at any time to one of
``"down"`` (connection closed without any response), ``"slow"`` (sleep
``slow_seconds`` before answering), ``"garbage"`` (200 with non-JSON body),
``"truncated"`` (a couple of stream chunks, then the connection is dropped
without the final ``done`` chunk) or ``"error"`` (HTTP 500 ``{"error": ...}``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

GenerateFn = Callable[[list[dict], dict, object], Iterator[str | dict]]

OLLAMA_VERSION = "0.12.0"
FAULTS = (None, "down", "slow", "garbage", "truncated", "error")


def _now() -> str:
    """RFC 3339 UTC timestamp, as Ollama writes ``created_at``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _details(name: str) -> dict[str, Any]:
    """Plausible ``details`` block derived from a model name like ``qwen2.5:3b``."""
    family = "qwen2" if name.startswith("qwen") else "llama"
    size = re.search(r":(\d+(?:\.\d+)?)b\b", name.lower())
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": f"{size.group(1)}B" if size else "unknown",
        "quantization_level": "Q4_K_M",
    }


def _shut(sock: socket.socket) -> None:
    """Hard-close both directions of a connection (the peer sees EOF / reset)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a "slow" handler
    standin: OllamaStandIn


class _Handler(BaseHTTPRequestHandler):
    """Per-connection handler; all state lives on ``self.server.standin``."""

    protocol_version = "HTTP/1.1"  # keep-alive + chunked transfer encoding
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def setup(self) -> None:
        super().setup()
        self.server.standin._conns.add(self.connection)

    def finish(self) -> None:
        self.server.standin._conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # -- low-level writers -------------------------------------------------
    def _send_head(self, status: int, ctype: str, length: int | None) -> None:
        """Status line + headers; ``length=None`` means chunked transfer encoding."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(
        self, status: int, body: bytes, ctype: str = "application/json; charset=utf-8", cut: bool = False
    ) -> None:
        """Send a whole body; with ``cut`` send only half of it, then hang up."""
        self._send_head(status, ctype, len(body))
        if self.command != "HEAD":
            self.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:
            self._drop()

    def _json(self, status: int, obj: Any, cut: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), cut=cut)

    def _chunk(self, obj: dict) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the TCP connection immediately, with no (further) response bytes."""
        self.close_connection = True
        _shut(self.connection)

    # -- dispatch ----------------------------------------------------------
    def _dispatch(self) -> None:
        st = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw) if raw else None
        with st._lock:
            st.requests.append({"path": self.path, "method": self.command, "body": body})
        fault = st.fault
        try:
            if fault == "down":
                return self._drop()
            if fault == "slow" and st._stopping.wait(st.slow_seconds):
                return self._drop()  # stop() was called while we were "slow"
            if fault == "garbage":
                return self._send(200, b"<html><body>502 Bad Gateway</body></html>\n", "text/html")
            if fault == "error":
                return self._json(500, {"error": "llama runner process has terminated: exit status 2"})
            if self.command == "POST" and not isinstance(body, dict):
                msg = "invalid JSON request body" if raw else "missing request body"
                return self._json(400, {"error": msg})
            route = {
                ("GET", "/"): self._root,
                ("HEAD", "/"): self._root,
                ("GET", "/api/version"): lambda _b: self._json(200, {"version": OLLAMA_VERSION}),
                ("GET", "/api/tags"): self._tags,
                ("GET", "/api/ps"): self._ps,
                ("POST", "/api/show"): self._show,
                ("POST", "/api/chat"): lambda b: self._generate(b, chat=True, cut=fault == "truncated"),
                ("POST", "/api/generate"): lambda b: self._generate(b, chat=False, cut=fault == "truncated"),
            }.get((self.command, self.path.split("?")[0]))
            if route is None:
                return self._send(404, b"404 page not found", "text/plain")
            route(body or {})
        except OSError:  # client went away (e.g. its timeout fired) or stop() dropped us
            self.close_connection = True

    do_GET = do_HEAD = do_POST = _dispatch

    # -- endpoints ---------------------------------------------------------
    def _root(self, _body: dict) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _tags(self, _body: dict) -> None:
        self._json(200, {"models": [self.server.standin._entry(n) for n in self.server.standin.models]})

    def _ps(self, _body: dict) -> None:
        st = self.server.standin
        expires = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        extra = {"expires_at": expires, "size_vram": 0, "context_length": st.context_length}
        self._json(200, {"models": [st._entry(n) | extra for n in st.models]})

    def _show(self, body: dict) -> None:
        st = self.server.standin
        requested = str(body.get("model") or body.get("name") or "")  # `name` is the legacy field
        name = st._resolve(requested)
        if name is None:
            return self._json(404, {"error": f"model '{requested}' not found"})
        details = _details(name)
        arch = details["family"]
        self._json(
            200,
            {
                "license": "",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {name}\n',
                "parameters": 'stop                           "<|im_end|>"',
                "template": "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
                "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n",
                "details": details,
                "model_info": {
                    "general.architecture": arch,
                    "general.parameter_count": 3_085_938_688,
                    f"{arch}.context_length": st.context_length,
                    f"{arch}.embedding_length": 2048,
                },
                "capabilities": ["completion"],
                "modified_at": _now(),
            },
        )

    def _generate(self, body: dict, *, chat: bool, cut: bool) -> None:
        """Serve /api/chat (``chat=True``) or /api/generate, streamed or not."""
        st, t0 = self.server.standin, time.perf_counter_ns()
        requested = str(body.get("model") or "")
        name = st._resolve(requested)
        if name is None:
            return self._json(404, {"error": f'model "{requested}" not found, try pulling it first'})
        stream = body.get("stream") is not False  # Ollama streams unless told otherwise
        options: dict = body.get("options") or {}
        if chat:
            messages = list(body.get("messages") or [])
        else:
            messages = [{"role": "system", "content": body["system"]}] if body.get("system") else []
            messages += [{"role": "user", "content": body["prompt"]}] if body.get("prompt") else []

        def frame(piece: str, done: bool) -> dict[str, Any]:
            key, val = ("message", {"role": "assistant", "content": piece}) if chat else ("response", piece)
            return {"model": requested, "created_at": _now(), key: val, "done": done}

        # No messages / empty prompt is Ollama's "load the model" request.
        reason = "stop" if messages else "load"
        asked = {"top_logprobs": max(1, int(body.get("top_logprobs") or 1))} if body.get("logprobs") else {}
        model = st.models[name]
        pieces = model(messages, options | asked, body.get("format") or None) if messages else iter(())
        limit, text, t1 = int(options.get("num_predict") or -1), [], time.perf_counter_ns()
        logprobs: list[dict] = []
        if stream:
            self._send_head(200, "application/x-ndjson", None)
        try:
            for item in pieces:
                if 0 < limit <= len(text):
                    reason = "length"
                    break
                piece = item["content"] if isinstance(item, dict) else item
                found = item.get("logprobs") or [] if isinstance(item, dict) else []
                logprobs += found
                text.append(piece)
                if stream:
                    self._chunk(frame(piece, False) | ({"logprobs": found} if found else {}))
                    if cut and len(text) >= 2:
                        return self._drop()
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - a model may raise anything: a 500 up front, or an error line mid-stream
            if not stream:
                return self._json(500, {"error": str(e)})
            self._chunk({"error": str(e)})
            return self._end()
        t2 = time.perf_counter_ns()
        final = frame("" if stream else "".join(text), True) | {
            "done_reason": reason,
            "total_duration": t2 - t0,
            "load_duration": t1 - t0,
            "prompt_eval_count": sum(len(str(m.get("content") or "").split()) for m in messages),
            "prompt_eval_duration": max(1, (t1 - t0) // 2),
            "eval_count": len(text),
            "eval_duration": t2 - t1,
        }
        if not stream:
            return self._json(200, final | ({"logprobs": logprobs} if logprobs else {}), cut=cut)
        if cut:
            return self._drop()
        self._chunk(final)
        self._end()

    def _end(self) -> None:
        """Terminating zero-length chunk of a chunked response."""
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class OllamaStandIn:
    """In-process fake Ollama server backed by Python generator functions.

    >>> with OllamaStandIn({"m:1b": lambda msgs, opts, fmt: iter(["hi"])}) as srv:
    ...     import ollama; ollama.Client(host=srv.url).chat("m:1b", [], stream=False).done
    True
    """

    def __init__(self, models: dict[str, GenerateFn], fault: str | None = None) -> None:
        self.models: dict[str, GenerateFn] = dict(models)
        self.fault: str | None = fault
        self.slow_seconds: float = 5.0
        self.context_length: int = 32768  # reported by /api/show and /api/ps
        self.model_size: int = 1_929_912_432
        self.requests: list[dict] = []
        self.url: str = ""
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "fault" and value not in FAULTS:
            raise ValueError(f"unknown fault {value!r}; expected one of {FAULTS}")
        super().__setattr__(key, value)

    def _resolve(self, name: str) -> str | None:
        """Map a requested model name to a configured one (``x`` means ``x:latest``)."""
        for cand in (name, f"{name}:latest"):
            if cand in self.models:
                return cand
        return None

    def _entry(self, name: str) -> dict[str, Any]:
        """One model as listed by /api/tags (and, extended, by /api/ps)."""
        digest = hashlib.sha256(name.encode()).hexdigest()
        return {
            "name": name,
            "model": name,
            "modified_at": _now(),
            "size": self.model_size,
            "digest": digest,
            "details": _details(name),
        }

    def start(self) -> str:
        """Bind 127.0.0.1 on an ephemeral port, serve in a daemon thread, return the base URL."""
        if self._server is not None:
            return self.url
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="ollama-standin", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and drop all open client connections."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for conn in list(self._conns):
            _shut(conn)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
