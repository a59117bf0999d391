#!/usr/bin/env bash
# Set up (or reuse) ./.venv with pegan and its test extra, then run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k encodings
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec python -m pytest -n 2 -q "$@"
