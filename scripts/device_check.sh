#!/usr/bin/env bash
# pegan's prepared GPU check (issue 17; scripts/device_check.py says what it measures).
#
#   scripts/device_check.sh --prepare     # where the fixtures and PyPI are: copy ../shared/fixtures (or
#                                         # $PEGAN_FIXTURES) to ./shared/fixtures and fetch the wheels the
#                                         # GPU machines lack into ./.whl (both git-ignored; shared/ travels
#                                         # with the working tree, .whl only when the call's carry names it)
#   scripts/device_check.sh               # on one H100 / H200: under 5 min, one table, $OUT/device_check.{md,json}
#   scripts/device_check.sh --dry-run     # the same parts on CPU at the tiny sizes (also --smoke, PEGAN_DEVICE_CHECK_DRY=1)
#
# Other arguments go to scripts/device_check.py (--budget, --sections, --parts, --out, --batch, --list).
# The interpreter: $PEGAN_PYTHON, else ./.venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."

# versions of the pure-Python wheels carried to the GPU machine (its image has jax, flax, optax,
# orbax-checkpoint, absl-py, pillow, pytest; not these)
WHEELS="ml-collections==1.1.0 tensorflow-datasets==4.9.10"

if [ -n "${PEGAN_PYTHON:-}" ]; then PY="$PEGAN_PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi

if [ "${1:-}" = "--prepare" ]; then
  src="${PEGAN_FIXTURES:-../shared/fixtures}"
  if [ -f "$src/manifest.json" ] && [ "$(cd "$src" && pwd -P)" != "$(mkdir -p shared && cd shared && pwd -P)/fixtures" ]; then
    rm -rf shared/fixtures && mkdir -p shared && cp -r "$src" shared/fixtures
    echo "copied $src to shared/fixtures ($(du -sh shared/fixtures | cut -f1))"
  elif [ -f shared/fixtures/manifest.json ]; then
    echo "shared/fixtures is there"
  else
    echo "no fixtures at $src: section 1's tests will be skipped" >&2
  fi
  mkdir -p .whl
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform any -d .whl $WHEELS
  echo "wheels in .whl: $(ls .whl | tr '\n' ' ')"
  exit 0
fi

# the wheels, where a module is missing here (the GPU machine): unpacked into a scratch folder
# (both are pure-Python wheels: a wheel is a zip of the installed files; no pip needed)
WHL="${PEGAN_WHEELS:-.whl}"
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('ml_collections') and u.find_spec('tensorflow_datasets') else 1)" 2>/dev/null; then
  if ls "$WHL"/*.whl >/dev/null 2>&1; then
    site="$(mktemp -d)/site"
    "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' "$site" "$WHL"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    echo "[device_check] unpacked $(ls "$WHL" | tr '\n' ' ')into $site" >&2
  elif ! "$PY" -c "import ml_collections" 2>/dev/null; then
    echo "[device_check] error: ml_collections is missing and $WHL holds no wheels: run scripts/device_check.sh --prepare" \
         "here first, and name .whl in the device call's carry" >&2
    exit 2
  else
    echo "[device_check] tensorflow_datasets is missing and .whl holds no wheels (the synthetic data never imports it)" >&2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" scripts/device_check.py "$@"
