"""The light install's bookkeeping, in this (full) environment: the layer modules load none of the
heavy dependencies, pegan._extras agrees with setup.cfg, and a missing extra is one line that
names it, from an import and from the command line (modules hidden with sys.modules[name] =
None in a subprocess). tests/test_light_install.py checks a real core-only environment."""

import configparser
import pathlib
import re
import subprocess
import sys

import pytest

from pegan import _extras
from pegan.errors import PeganError

REPO = pathlib.Path(__file__).resolve().parents[1]

LAYERS = ("pegan.encodings", "pegan.ops", "pegan.nn", "pegan.models", "pegan.nn.layers",
          "pegan.models.stylegan2", "pegan.models.singan", "pegan.convert.torchpickle")
HEAVY = ("ml_collections", "optax", "orbax", "tensorflow_datasets", "tensorflow", "clu", "scipy",
         "skimage", "PIL", "tqdm", "tensorboard", "absl", "tensorstore", "pyarrow")

# distribution (setup.cfg) -> the module pegan imports
IMPORT_NAME = {"orbax-checkpoint": "orbax.checkpoint", "absl-py": "absl", "ml-collections": "ml_collections",
               "pillow": "PIL", "tensorflow-datasets": "tensorflow_datasets", "scipy": "scipy",
               "optax": "optax", "tqdm": "tqdm", "tensorboard": "tensorboard", "scikit-image": "skimage",
               "imageio": "imageio", "imageio-ffmpeg": "imageio_ffmpeg"}


def _run(code, *args):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_layer_modules_load_no_heavy_dependency():
    """In a fresh interpreter with everything installed, importing the layers loads none of the
    training / data / checkpoint / logging libraries (jax, flax and numpy only)."""
    code = (f"import sys\nimport {', '.join(LAYERS)}\n"
            f"print(' '.join(m for m in {HEAVY!r} if any(n == m or n.startswith(m + '.') for n in sys.modules)))")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    # flax.linen imports absl.logging itself (flax/linen/recurrent.py); nothing else may appear
    assert r.stdout.split() in ([], ["absl"]), r.stdout


def _setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    names = lambda text: [re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower()
                          for line in text.splitlines() if line.strip()]
    extras = {k: names(v) for k, v in cfg["options.extras_require"].items()}
    return names(cfg["options"]["install_requires"]), extras


def test_extras_match_setup_cfg():
    core, extras = _setup_cfg()
    assert core == ["jax", "jaxlib", "flax", "numpy"]
    for extra, modules in _extras.EXTRAS.items():
        assert sorted(IMPORT_NAME[d] for d in extras[extra]) == sorted(modules), extra
    everything = set().union(*(extras[e] for e in _extras.EXTRAS))
    assert set(extras["all"]) == everything
    assert set(extras["test"]) == everything | {"pytest", "pytest-xdist", "selenium"}   # selenium: the browser test
    assert set(_extras.COMMAND_EXTRAS.values()) <= set(_extras.EXTRAS)


def test_require_message_and_types(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    assert _extras.missing("tensorflow_datasets", "numpy", "no_such_pkg.sub") == ("tensorflow_datasets", "no_such_pkg.sub")
    with pytest.raises(_extras.MissingExtraError) as e:
        _extras.require("numpy", "tensorflow_datasets", extra="train", by="pegan.data")
    assert str(e.value) == ("pegan.data needs the 'train' extra: pip install 'pegan[train]' "
                            "(missing: tensorflow_datasets)")
    assert isinstance(e.value, PeganError) and isinstance(e.value, ModuleNotFoundError)
    assert e.value.name == "tensorflow_datasets"
    _extras.require("numpy", extra="train", by="x")   # present: nothing happens
    with pytest.raises(KeyError):
        _extras.require(extra="no-such-extra", by="x")


@pytest.mark.parametrize("module, hidden, extra", [
    ("pegan.data", "tensorflow_datasets", "train"),
    ("pegan.checkpoint", "orbax", "convert"),
    ("pegan.configs", "ml_collections", "convert"),
    ("pegan.train.stylegan2", "optax", "train"),
    ("pegan.train.writers", "tensorboard", "train"),
    ("pegan.eval.evaluate", "scipy", "eval"),
    ("pegan.api", "ml_collections", "convert"),
])
def test_import_without_its_extra_is_one_line(module, hidden, extra):
    code = (f"import sys; sys.modules[{hidden!r}] = None\n"
            "from pegan._extras import MissingExtraError\n"
            f"try:\n    import {module}\nexcept MissingExtraError as e:\n    print(e)\nelse:\n    print('imported')")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert "\n" not in line and re.fullmatch(
        rf"pegan\.[a-z_.]+ needs the '{extra}' extra: pip install 'pegan\[{extra}\]' \(missing: .*\)", line), line
    assert hidden in line


def test_command_without_its_extra_is_one_line_exit_2():
    code = ("import sys; sys.modules['ml_collections'] = None\n"
            "from pegan.cli import main\nsys.exit(main(sys.argv[1:]))")
    r = _run(code, "experiments")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == ("pegan experiments: error: this command needs the 'convert' extra: "
                        "pip install 'pegan[convert]' (missing: ml_collections)\n")
    r = _run(code.replace("'ml_collections'", "'skimage'"), "demo", "--iters", "1")
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "pegan demo: error: this command needs the 'demo' extra: pip install 'pegan[demo]' (missing: skimage)"]
