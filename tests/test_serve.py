"""Serving the page: local by default, basic auth when set, and what the command refuses."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from rag.settings import Settings
from ui.cli import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serving(settings: Settings) -> Iterator[str]:
    """The page for ``settings`` on a free port: its URL while the block runs."""
    from ui.app import build_app, launch

    app = build_app(settings)
    try:
        yield launch(app, settings, port=_free_port(), block=False)
    finally:
        app.close()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path / "data", serve={"auth": "alice:correct-horse"}, llm={"backend": "embedded"})
    with _serving(settings) as url:
        yield url


def test_defaults_bind_to_this_machine_only() -> None:
    conf = Settings().serve
    assert conf.host == "127.0.0.1" and conf.auth is None and conf.concurrency == 1


def test_basic_auth_refuses_a_wrong_password(guarded: str) -> None:
    with httpx.Client(base_url=guarded, timeout=30) as client:
        assert client.get("/config").status_code == 401  # nothing of the app without a login
        wrong = client.post("/login", data={"username": "alice", "password": "wrong"})
        assert wrong.status_code == 400
        assert client.get("/config").status_code == 401
        right = client.post("/login", data={"username": "alice", "password": "correct-horse"})
        assert right.status_code == 200
        assert client.get("/config").status_code == 200


def test_serve_refuses_a_malformed_auth_setting() -> None:
    result = CliRunner().invoke(cli, ["serve"], env={"PAPERCITE_SERVE__AUTH": "alice"})
    assert result.exit_code == 3
    assert result.stderr.strip() == "Error: PAPERCITE_SERVE__AUTH must look like user:password (both non-empty)."


def test_programs_ask_through_the_api_and_get_the_same_messages(tmp_path: Path) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    settings = Settings(data_dir=tmp_path / "data", llm={"backend": "embedded"})
    with _serving(settings) as url:
        client = Client(url, verbose=False)
        assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/ask", "/upload"}
        with pytest.raises(AppError, match="The question is empty"):
            client.predict("  ", 5, api_name="/ask")
        with pytest.raises(AppError, match="The collection is empty: upload papers") as err:
            client.predict("Which papers study drones?", 5, api_name="/ask")
        assert str(tmp_path) not in str(err.value)


def test_uploads_stay_in_gradios_temp_dir_and_are_capped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", serve={"max_upload_mb": 1}, llm={"backend": "embedded"})
    with _serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        sneaky = client.post(
            "/gradio_api/upload",
            files={"files": ("../../../../tmp/escape.jsonl", b'{"title": "A", "abstract": "B"}\n')},
        )
        assert sneaky.status_code == 200
        (stored,) = sneaky.json()
        assert ".." not in Path(stored).parts and Path(stored).name == "escape.jsonl"
        assert not Path("/tmp/escape.jsonl").exists() or Path(stored) != Path("/tmp/escape.jsonl")
        big = client.post("/gradio_api/upload", files={"files": ("big.jsonl", b"x" * 1_500_000)})
        assert big.status_code == 413, big.text  # over PAPERCITE_SERVE__MAX_UPLOAD_MB, refused before it is stored
        assert "1000000 bytes" in big.text  # and the refusal names the limit
        # A program naming a file on the server instead of uploading one is refused by Gradio.
        call = client.post(
            "/gradio_api/call/upload",
            json={"data": [[{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]]},
        )
        if call.status_code == 200:
            event = call.json()["event_id"]
            result = client.get(f"/gradio_api/call/upload/{event}").text
            assert "event: error" in result and "root:" not in result, result
        else:
            assert call.status_code in (400, 403, 422), call.text


def test_a_file_gradio_downloads_for_a_program_is_capped_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL passed to /upload is fetched by Gradio itself, past its max_file_size: the page's own check refuses it.

    Gradio's download refuses hosts on this machine, so its fetch is replaced by one that returns a big file.
    """
    import gradio.processing_utils
    from gradio_client import Client, handle_file

    fetched: list[str] = []

    async def fetch(url: str) -> httpx.Response:
        fetched.append(url)
        return httpx.Response(200, content=b'{"title": "Big", "abstract": "' + b"x" * 1_500_000 + b'"}\n')

    monkeypatch.setattr(gradio.processing_utils, "async_ssrf_protected_get", fetch)
    settings = Settings(data_dir=tmp_path / "data", serve={"max_upload_mb": 1}, llm={"backend": "embedded"})
    with _serving(settings) as url:
        remote = f"https://example.org/{uuid.uuid4().hex}/big.jsonl"  # Gradio keeps what it fetched by URL
        report, collection, *_ = Client(url, verbose=False).predict([handle_file(remote)], api_name="/upload")
        assert fetched == [remote]
        assert "big.jsonl** refused: 1.5 MB is over the 1 MB limit" in report
        assert "empty" in collection
