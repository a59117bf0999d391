#!/usr/bin/env bash
# Set up (or reuse) ./.venv with pegan, then run the built-in demo (writes a PNG sheet).
# Extra arguments go to `pegan demo`, e.g. scripts/demo.sh --out sheet.png
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec pegan demo "$@"
