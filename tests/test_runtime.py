"""Choosing between the xllamacpp wheel and a runtime built for this CPU, without building anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag.llm.runtime import (
    RuntimeManifest,
    best_variant,
    build_plan,
    build_runtime,
    choose_runtime,
    cpu_flags,
    isa_flags,
    load_xllamacpp,
    probe,
    runtime_dir,
    worth_building,
)

# /proc/cpuinfo flags of real CPUs, trimmed to what matters here plus some that must be ignored.
ZEN3 = frozenset(
    "fpu sse sse2 pni ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor "
    "bmi1 avx2 bmi2 adx sha_ni vaes vpclmulqdq clwb".split()
)
ZEN4 = ZEN3 | frozenset(
    "avx512f avx512dq avx512cd avx512bw avx512vl avx512ifma avx512vbmi avx512_vbmi2 gfni avx512_vnni "
    "avx512_bitalg avx512_vpopcntdq avx512_bf16".split()
)
SAPPHIRE_RAPIDS = ZEN4 | frozenset("amx_tile amx_int8 amx_bf16 avx512_fp16 avx_vnni".split())
ALDER_LAKE = ZEN3 | frozenset({"avx_vnni"})
OLD_ATOM = frozenset("fpu sse sse2 pni ssse3 sse4_1 sse4_2 popcnt".split())


def test_flags_come_from_the_first_flags_line() -> None:
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert cpu_flags(cpuinfo) == {"fpu", "sse", "avx2"}
    assert cpu_flags("no flags here") == frozenset()


def test_the_variant_is_ggmls_choice() -> None:
    assert best_variant(ZEN3) == "haswell"
    assert best_variant(ZEN4) == "zen4"
    assert best_variant(SAPPHIRE_RAPIDS) == "sapphirerapids"
    assert best_variant(ALDER_LAKE) == "alderlake"
    assert best_variant(OLD_ATOM) == "sse42"
    assert best_variant(frozenset()) == "x64"


def test_a_build_is_worth_it_only_beyond_the_wheels_avx2() -> None:
    assert not worth_building(ZEN3)
    assert not worth_building(OLD_ATOM)
    assert worth_building(ZEN4)
    assert worth_building(ALDER_LAKE)


def test_only_instruction_set_flags_are_required() -> None:
    required = isa_flags(ZEN4)
    assert {"avx512f", "avx512_bf16", "avx2", "vaes", "sha_ni"} <= required
    assert not {"fpu", "hypervisor"} & required


def _install(data_dir: Path, version: str, flags: frozenset[str]) -> Path:
    directory = runtime_dir(data_dir, version)
    (directory / "xllamacpp").mkdir(parents=True)
    (directory / "xllamacpp" / "__init__.py").write_text("def get_system_info():\n    return 'AVX512 = 1'\n")
    RuntimeManifest(version, tuple(sorted(isa_flags(flags))), best_variant(flags), "2026-12-01T00:00:00", 1.0).write(
        directory
    )
    return directory


def test_the_built_runtime_is_chosen_on_the_cpu_it_was_built_for(tmp_path: Path) -> None:
    directory = _install(tmp_path, "2026.10.11549", ZEN4)
    choice = choose_runtime(tmp_path, "2026.10.11549", ZEN4)
    assert choice.path == directory and "zen4" in choice.reason
    assert choose_runtime(tmp_path, "2026.10.11549", SAPPHIRE_RAPIDS).path == directory


def test_a_cpu_without_the_builds_flags_falls_back_to_the_wheel(tmp_path: Path) -> None:
    _install(tmp_path, "2026.10.11549", ZEN4)
    choice = choose_runtime(tmp_path, "2026.10.11549", ZEN3)
    assert choice.path is None and "avx512f" in choice.reason


def test_another_wheel_version_or_no_runtime_falls_back_to_the_wheel(tmp_path: Path) -> None:
    assert choose_runtime(tmp_path, "2026.10.11549", ZEN4).path is None
    assert choose_runtime(tmp_path, None, ZEN4).reason == "xllamacpp is not installed"
    directory = _install(tmp_path, "2026.9.11063", ZEN4)
    (directory.parent / "xllamacpp-2026.10.11549").mkdir()
    directory.rename(directory.parent / "xllamacpp-2026.10.11549")  # a manifest that names another version
    choice = choose_runtime(tmp_path, "2026.10.11549", ZEN4)
    assert choice.path is None and "2026.9.11063" in choice.reason


def test_a_broken_manifest_falls_back_to_the_wheel(tmp_path: Path) -> None:
    directory = _install(tmp_path, "2026.10.11549", ZEN4)
    (directory / "papercite-runtime.json").write_text("{not json")
    assert choose_runtime(tmp_path, "2026.10.11549", ZEN4).path is None


def test_the_build_is_native_offline_and_niced(tmp_path: Path) -> None:
    argv, env = build_plan(tmp_path / "t", "2026.10.11549")
    assert argv[argv.index("--no-binary") + 1] == "xllamacpp" and "xllamacpp==2026.10.11549" in argv
    assert argv[argv.index("--target") + 1] == str(tmp_path / "t")
    assert "-DGGML_NATIVE=ON" in env["CMAKE_ARGS"] and "-DLLAMA_LLGUIDANCE=OFF" in env["CMAKE_ARGS"]
    assert env["NPROC"] == "2"


def test_a_successful_build_replaces_the_runtime_with_its_manifest(tmp_path: Path) -> None:
    def fake_pip(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        target = Path(argv[argv.index("--target") + 1])
        (target / "xllamacpp").mkdir(parents=True)
        (target / "xllamacpp" / "__init__.py").write_text("def get_system_info():\n    return 'AVX512 = 1'\n")
        return subprocess.CompletedProcess(argv, 0, "built", "")

    manifest = build_runtime(tmp_path, "2026.10.11549", ZEN4, run=fake_pip)
    assert manifest.variant == "zen4" and "avx512_bf16" in manifest.flags
    assert choose_runtime(tmp_path, "2026.10.11549", ZEN4).path == runtime_dir(tmp_path, "2026.10.11549")
    assert [p.name for p in (tmp_path / "runtime").iterdir()] == ["xllamacpp-2026.10.11549"]


def test_a_failed_build_keeps_the_old_runtime_and_says_why(tmp_path: Path) -> None:
    directory = _install(tmp_path, "2026.10.11549", ZEN4)

    def failing_pip(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "CMake Error: no compiler")

    with pytest.raises(RuntimeError, match="no compiler"):
        build_runtime(tmp_path, "2026.10.11549", ZEN4, run=failing_pip)
    assert choose_runtime(tmp_path, "2026.10.11549", ZEN4).path == directory
    assert [p.name for p in (tmp_path / "runtime").iterdir()] == [directory.name]


def test_the_runtime_is_imported_from_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = _install(tmp_path, "2026.10.11549", ZEN4)
    monkeypatch.delitem(sys.modules, "xllamacpp", raising=False)
    module = load_xllamacpp(directory)
    assert module.__file__ == str(directory / "xllamacpp" / "__init__.py")
    assert load_xllamacpp(None) is module  # the first import decides
    monkeypatch.delitem(sys.modules, "xllamacpp")


def test_the_probe_reads_the_runtimes_features_in_a_child(tmp_path: Path) -> None:
    directory = _install(tmp_path, "2026.10.11549", ZEN4)
    assert probe(directory) == "AVX512 = 1"
    (directory / "xllamacpp" / "__init__.py").write_text("import os\nos.kill(os.getpid(), 4)\n")  # SIGILL
    with pytest.raises(RuntimeError, match="does not load"):
        probe(directory)


def _on_cpu(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str], version: str | None) -> None:
    for module in ("rag.llm.backends", "rag.llm.runtime", "ui.cli"):  # each module that calls them
        monkeypatch.setattr(f"{module}.cpu_flags", lambda: flags)
        monkeypatch.setattr(f"{module}.wheel_version", lambda: version)


def test_the_embedded_backend_loads_a_usable_build_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.llm.backends import embedded_runtime
    from rag.settings import Settings

    directory = _install(tmp_path / "models", "2026.10.11549", ZEN4)
    settings = Settings(data_dir=tmp_path)
    _on_cpu(monkeypatch, ZEN4, "2026.10.11549")
    assert embedded_runtime(settings).path == directory
    assert embedded_runtime(settings.updated(llm={"native_runtime": False})).path is None
    _on_cpu(monkeypatch, ZEN3, "2026.10.11549")  # the data directory moved to an older CPU
    assert embedded_runtime(settings).path is None


def test_the_runtime_command_says_what_loads_and_refuses_a_build_that_cannot_gain(
    isolated_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from ui.cli import cli

    _on_cpu(monkeypatch, ZEN4, "2026.10.11549")
    result = CliRunner().invoke(cli, ["runtime"])
    assert result.exit_code == 0, result.output
    assert "the xllamacpp wheel" in result.stdout and "papercite runtime --build" in result.stdout
    _install(isolated_data_dir / "models", "2026.10.11549", ZEN4)
    assert "built for this CPU" in CliRunner().invoke(cli, ["runtime"]).stdout
    monkeypatch.setenv("PAPERCITE_LLM__NATIVE_RUNTIME", "false")
    off = CliRunner().invoke(cli, ["runtime"]).stdout
    assert "NATIVE_RUNTIME is off" in off and "--build" not in off  # a build exists; the setting is why
    monkeypatch.delenv("PAPERCITE_LLM__NATIVE_RUNTIME")

    _on_cpu(monkeypatch, ZEN3, "2026.10.11549")
    result = CliRunner().invoke(cli, ["runtime", "--build"])
    assert result.exit_code == 3 and "haswell" in result.stderr and "would not be faster" in result.stderr
    assert "avx512f" in CliRunner().invoke(cli, ["runtime"]).stdout  # why the build is not loaded here


def test_a_build_that_does_not_load_replaces_nothing(tmp_path: Path) -> None:
    directory = _install(tmp_path, "2026.10.11549", ZEN4)

    def broken_pip(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        target = Path(argv[argv.index("--target") + 1])
        (target / "xllamacpp").mkdir(parents=True)
        (target / "xllamacpp" / "__init__.py").write_text("raise ImportError('undefined symbol: ggml_init')\n")
        return subprocess.CompletedProcess(argv, 0, "built", "")

    with pytest.raises(RuntimeError, match="does not load"):
        build_runtime(tmp_path, "2026.10.11549", ZEN4, run=broken_pip)
    assert choose_runtime(tmp_path, "2026.10.11549", ZEN4).path == directory
    assert (directory / "xllamacpp" / "__init__.py").read_text().startswith("def get_system_info")


def test_a_build_that_stopped_loading_names_itself_and_the_way_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.errors import LLMUnavailable
    from rag.llm.embedded import _load

    directory = _install(tmp_path, "2026.10.11549", ZEN4)
    (directory / "xllamacpp" / "__init__.py").write_text("raise ImportError('undefined symbol: ggml_init')\n")
    monkeypatch.delitem(sys.modules, "xllamacpp", raising=False)
    with pytest.raises(LLMUnavailable, match=r"built for this CPU .* PAPERCITE_LLM__NATIVE_RUNTIME=false"):
        _load(tmp_path / "model.gguf", 512, 1, directory, 0, None)
    assert "xllamacpp" not in sys.modules
