#!/usr/bin/env bash
# pegan's prepared GPU check (issue 17; scripts/device_check.py says what it measures).
#
#   scripts/device_check.sh --prepare     # where the fixtures and PyPI are: copy ../shared/fixtures (or
#                                         # $PEGAN_FIXTURES) to ./shared/fixtures and fetch the wheels the
#                                         # GPU machines lack into ./.whl (both git-ignored; both travel
#                                         # with the working tree)
#   scripts/device_check.sh               # on one H100 / H200: ~4.5 min, one table, $OUT/device_check.{md,json}
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

# the wheels, where a module is missing here (the GPU machine): installed into a scratch folder
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('ml_collections') and u.find_spec('tensorflow_datasets') else 1)" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    site="$(mktemp -d)/site"
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    echo "[device_check] installed $(ls .whl | tr '\n' ' ')into $site" >&2
  else
    echo "[device_check] ml_collections or tensorflow_datasets missing and no wheels in .whl (run --prepare first)" >&2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" scripts/device_check.py "$@"
