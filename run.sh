#!/usr/bin/env bash
# papercite's two entry points on a fresh machine:
#   ./run.sh        set up .venv, ingest the bundled sample if the store is empty, open the page on http://127.0.0.1:7860
#   ./run.sh test   set up .venv and run the whole test suite (what .ci/run calls)
#   ./run.sh lint   set up .venv and run ruff: lint rules and formatting, on the whole tree
#   ./run.sh eval   set up .venv and run `papercite eval` with the given arguments
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned: a CPU build. Left to resolve on its own, pip takes a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || pip install --quiet "torch==2.13.0"
pip install --quiet -e ".[embedded,test]"

case "${1:-start}" in
    test)
        shift || true
        exec python -m pytest "$@"
        ;;
    lint)
        ruff check .
        exec ruff format --check .
        ;;
    start)
        exec papercite start
        ;;
    eval)
        shift
        exec papercite eval "$@"
        ;;
    *)
        echo "usage: ./run.sh [test [pytest args...] | lint | eval [papercite eval args...]]" >&2
        exit 2
        ;;
esac
