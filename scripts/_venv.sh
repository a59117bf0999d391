# Sourced by the entry scripts: make or reuse ./.venv and install pegan (editable) into it.
# PEGAN_PYTHON picks the interpreter (default python3, >= 3.10).
set -euo pipefail
if [ ! -x .venv/bin/python ]; then
  "${PEGAN_PYTHON:-python3}" -m venv .venv
fi
# reinstall only when the package metadata changed since the last install
stamp=.venv/.pegan-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
  # the test extra is every extra plus pytest: check that each extra's modules are there
  .venv/bin/python -c "import pegan, jax, flax, optax, orbax.checkpoint, pytest
from pegan._extras import EXTRAS, require
for extra in EXTRAS: require(extra=extra, by='the set-up')" \
    || { echo "pegan set-up failed: see the pip output above" >&2; exit 1; }
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
