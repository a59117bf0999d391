import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def fixtures_dir() -> pathlib.Path:
    """The reference fixtures: $PEGAN_FIXTURES, else ../shared/fixtures beside the repo."""
    env = os.environ.get("PEGAN_FIXTURES")
    path = pathlib.Path(env) if env else REPO.parent / "shared" / "fixtures"
    if not (path / "manifest.json").exists():
        raise RuntimeError(
            f"reference fixtures not found at {path}: set PEGAN_FIXTURES to the folder that "
            "holds manifest.json (CI has it at ../shared/fixtures)")
    return path


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    return fixtures_dir()
