"""Which llama.cpp runtime the embedded LLM loads: the portable xllamacpp wheel, or one built for this CPU.

The xllamacpp wheel on PyPI is compiled for AVX2 at most, as one static library, and no package
on PyPI ships llama.cpp with run-time CPU dispatch. On a CPU with AVX-512 a build for that CPU
reads prompts about 1.4x faster (docs/benchmarks.md), so ``papercite runtime --build`` builds
xllamacpp from its sdist once into ``<models_dir>/runtime/xllamacpp-<version>`` (beside the
model files) while papercite goes on with the wheel, and :func:`rag.llm.backends.embedded_runtime`
loads that build on later starts.

The built runtime is used only when its manifest says it is the same xllamacpp version as the
installed wheel (the same API) and the CPU papercite runs on has every instruction-set flag the
build machine had (``-march=native`` may use any of them: a data directory copied to an older
CPU, or a VM moved to another host, must not die of SIGILL). Anything else falls back to the wheel.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

__all__ = [
    "GGML_X86_VARIANTS",
    "Choice",
    "RuntimeManifest",
    "best_variant",
    "build_plan",
    "build_runtime",
    "choose_runtime",
    "cpu_flags",
    "isa_flags",
    "load_xllamacpp",
    "probe",
    "runtime_dir",
    "wheel_version",
    "worth_building",
]

MANIFEST = "papercite-runtime.json"

# ggml's "AVX512" feature is these five together (ggml/src/ggml-cpu/CMakeLists.txt).
_AVX512 = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
_BASE = ("sse4_2", "avx", "f16c", "fma", "avx2", "bmi2")

# ggml's x86 CPU variants (GGML_CPU_ALL_VARIANTS) with the /proc/cpuinfo flags each needs, as
# in ggml/src/CMakeLists.txt. ggml's own loader picks the supported variant with the most features.
GGML_X86_VARIANTS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (name, frozenset(flags))
    for name, flags in (
        ("x64", ()),
        ("sse42", ("sse4_2",)),
        ("sandybridge", ("sse4_2", "avx")),
        ("ivybridge", ("sse4_2", "avx", "f16c")),
        ("piledriver", ("sse4_2", "avx", "f16c", "fma")),
        ("haswell", _BASE),
        ("alderlake", (*_BASE, "avx_vnni")),
        ("skylakex", (*_BASE, *_AVX512)),
        ("cannonlake", (*_BASE, *_AVX512, "avx512vbmi")),
        ("cascadelake", (*_BASE, *_AVX512, "avx512_vnni")),
        ("icelake", (*_BASE, *_AVX512, "avx512vbmi", "avx512_vnni")),
        ("cooperlake", (*_BASE, *_AVX512, "avx512_vnni", "avx512_bf16")),
        ("zen4", (*_BASE, *_AVX512, "avx512vbmi", "avx512_vnni", "avx512_bf16")),
        ("sapphirerapids", (*_BASE, *_AVX512, "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")),
    )
)
# What the wheel already uses: a CPU whose best variant is one of these gains nothing from a build.
_WHEEL_LEVEL = {"x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell"}

# /proc/cpuinfo flags that name instructions a compiler may emit (not bugs, power or VM features).
_ISA = re.compile(
    r"^(sse\w*|ssse3|pni|avx\w*|fma\w*|f16c|bmi\d|abm|lzcnt|popcnt|movbe|adx|aes|vaes|pclmulqdq|vpclmulqdq"
    r"|gfni|sha_ni|amx\w*|xsave\w*|rdrnd|rdrand|rdseed|clflushopt|clwb|movdir\w*|serialize|cx16|lahf_lm)$"
)


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """This CPU's flags as Linux lists them (``/proc/cpuinfo``); empty where that file is missing."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def isa_flags(flags: frozenset[str]) -> frozenset[str]:
    """The flags among ``flags`` that a ``-march=native`` build may rely on."""
    return frozenset(f for f in flags if _ISA.match(f))


def best_variant(flags: frozenset[str]) -> str:
    """The ggml CPU variant this CPU would run: the supported one with the most features."""
    supported = [(len(needs), i, name) for i, (name, needs) in enumerate(GGML_X86_VARIANTS) if needs <= flags]
    return max(supported)[2]


def worth_building(flags: frozenset[str]) -> bool:
    """Whether a build for this CPU can beat the AVX2 wheel (it has AVX-512 or AVX-VNNI)."""
    return best_variant(flags) not in _WHEEL_LEVEL


@dataclass(frozen=True)
class RuntimeManifest:
    """What a built runtime is: written next to it once the build has succeeded."""

    xllamacpp: str  # the version built, which must equal the installed wheel's
    flags: tuple[str, ...]  # the build machine's instruction-set flags: all must be present to load it
    variant: str  # the ggml variant of the build machine, for messages
    built: str  # ISO time
    seconds: float  # how long the build took

    def write(self, directory: Path) -> None:
        (directory / MANIFEST).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, directory: Path) -> RuntimeManifest | None:
        try:
            data = json.loads((directory / MANIFEST).read_text())
            return cls(**{**data, "flags": tuple(data["flags"])})
        except (OSError, ValueError, TypeError, KeyError):
            return None


def runtime_dir(models_dir: Path, version: str) -> Path:
    """Where the runtime built for ``version`` lives."""
    return models_dir / "runtime" / f"xllamacpp-{version}"


def wheel_version() -> str | None:
    """The installed xllamacpp's version, or None when it is not installed."""
    try:
        return importlib.metadata.version("xllamacpp")
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Choice:
    """The runtime to load (None: the wheel) and why, for ``papercite runtime`` and logs."""

    path: Path | None
    reason: str


def choose_runtime(models_dir: Path, version: str | None, flags: frozenset[str]) -> Choice:
    """The built runtime if it is usable on this CPU with this wheel, else the wheel."""
    if version is None:
        return Choice(None, "xllamacpp is not installed")
    directory = runtime_dir(models_dir, version)
    manifest = RuntimeManifest.read(directory)
    if manifest is None or not (directory / "xllamacpp" / "__init__.py").is_file():
        return Choice(None, f"no runtime built for xllamacpp {version} in {directory}")
    if manifest.xllamacpp != version:
        return Choice(None, f"the runtime in {directory} is xllamacpp {manifest.xllamacpp}, the wheel {version}")
    missing = sorted(set(manifest.flags) - flags)
    if missing:
        return Choice(None, f"this CPU lacks {', '.join(missing)}, which the runtime in {directory} was built for")
    return Choice(directory, f"xllamacpp {version} built for {manifest.variant} ({directory})")


def build_plan(target: Path, version: str, jobs: int = 2) -> tuple[list[str], dict[str, str]]:
    """The command (and its environment) that builds xllamacpp ``version`` for this CPU into ``target``.

    llguidance and BoringSSL are off: both are fetched from the network at build time, and papercite
    uses neither (grammars and JSON schemas go through llama.cpp's own GBNF; the server is loopback).
    """
    argv = [
        *(["nice", "-n", "15"] if shutil.which("nice") else []),
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-binary",
        "xllamacpp",
        "--target",
        str(target),
        f"xllamacpp=={version}",
    ]
    env = {
        **os.environ,
        "CMAKE_ARGS": "-DGGML_NATIVE=ON -DLLAMA_LLGUIDANCE=OFF -DLLAMA_BUILD_BORINGSSL=OFF",
        "NPROC": str(jobs),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return argv, env


Runner = Callable[..., subprocess.CompletedProcess[str]]


def build_runtime(
    models_dir: Path, version: str, flags: frozenset[str], *, run: Runner = subprocess.run, jobs: int = 2
) -> RuntimeManifest:
    """Build xllamacpp ``version`` for this CPU into its runtime directory (minutes; meant for the background).

    The build goes to a temporary sibling directory that replaces the old one only once it has
    succeeded and loads in a child process, so a start during the build (or after a failed one)
    still finds the old runtime or none.

    Raises:
        RuntimeError: the build failed (the message ends with the last lines of its output) or
            does not load.
    """
    final = runtime_dir(models_dir, version)
    staging = final.with_name(f"{final.name}.{os.getpid()}.building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    argv, env = build_plan(staging, version, jobs)
    started = datetime.now(UTC)
    try:
        done = run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not (staging / "xllamacpp" / "__init__.py").is_file():
            tail = "\n".join(((done.stdout or "") + (done.stderr or "")).splitlines()[-15:])
            raise RuntimeError(f"building xllamacpp {version} failed (exit {done.returncode}):\n{tail}")
        probe(staging)  # it loads, in a child, before it replaces anything
        manifest = RuntimeManifest(
            xllamacpp=version,
            flags=tuple(sorted(isa_flags(flags))),
            variant=best_variant(flags),
            built=started.isoformat(timespec="seconds"),
            seconds=round((datetime.now(UTC) - started).total_seconds(), 1),
        )
        manifest.write(staging)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_xllamacpp(path: Path | None) -> ModuleType:
    """Import xllamacpp from the built runtime at ``path``, or the wheel when ``path`` is None.

    Only the first import decides: a process that already imported xllamacpp keeps that one.
    """
    if "xllamacpp" in sys.modules or path is None:
        import xllamacpp  # optional: the `embedded` extra; a CPU build may be loaded in its place

        return xllamacpp
    package = path / "xllamacpp"
    spec = importlib.util.spec_from_file_location(
        "xllamacpp", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:  # pragma: no cover - only for a path without a package
        raise ImportError(f"no xllamacpp package in {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["xllamacpp"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["xllamacpp"]
        raise
    return module


def probe(path: Path, python: Sequence[str] = (sys.executable,), timeout: float = 60) -> str:
    """The built runtime's ``get_system_info()``, from a child process (a SIGILL kills the child, not papercite).

    Raises:
        RuntimeError: the child failed to import it.
    """
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import xllamacpp; "
        "assert xllamacpp.__file__.startswith(sys.argv[1]); print(xllamacpp.get_system_info())"
    )
    done = subprocess.run(
        [*python, "-c", code, str(path)], check=False, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"the runtime in {path} does not load (exit {done.returncode}): {done.stderr[-500:]}")
    return done.stdout.strip()
