"""A real core-only install: a fresh virtual environment (no system site-packages) gets only the
packages the layers need, from wheels, then pegan's own wheel without dependencies; there the
layer modules (and the torch-free .pth reader) import, a tiny StyleGAN2 and a tiny PE-SinGAN generator run, and the rest of pegan
says in one line which extra it needs.

The core set is jax and flax with what they require (read from the installed packages' metadata,
at the versions installed here) less what they declare but the layers never import: optax,
orbax-checkpoint, tensorstore and scipy (leaving them out is what shows that); absl-py is added
(flax.linen imports absl.logging without declaring it). The wheels are kept in
$PEGAN_WHEELHOUSE (default ~/.cache/pegan/core-wheels) and installed with --no-index; only the
missing ones are fetched, once, with `pip download` through pip's configured index (15 wheels,
about 105 MB; 5 s here). Measured on the 2-core CPU, busy: 33 s in all (pegan's wheel 6 s, the
install 6 s, the imports and the two forwards 20 s).
"""

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time
from importlib import metadata

import pytest

packaging = pytest.importorskip("packaging")
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name, parse_wheel_filename  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
ROOTS = ("jax", "flax")
LEFT_OUT = {"optax", "orbax-checkpoint", "tensorstore", "scipy"}
ADDED = ("absl-py",)


def core_distributions():
    """{canonical name: installed version} of the core set (see the module docstring)."""
    found, todo = {}, list(ROOTS + ADDED)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found or name in LEFT_OUT:
            continue
        dist = metadata.distribution(name)
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def wheelhouse() -> pathlib.Path:
    env = os.environ.get("PEGAN_WHEELHOUSE")
    if env:
        return pathlib.Path(env)
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return cache / "pegan" / "core-wheels"


@contextlib.contextmanager
def locked(directory: pathlib.Path):
    """One process at a time fills the wheelhouse (two test runs may share it)."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def core_wheels(dists) -> list:
    """The wheel files of ``dists`` in the wheelhouse, fetching the missing ones."""
    house = wheelhouse()

    def present():
        have = {}
        for p in house.glob("*.whl"):
            name, version, _, _ = parse_wheel_filename(p.name)
            if dists.get(name) == str(version):
                have[name] = p
        return have

    with locked(house):
        have = present()
        wanted = [f"{n}=={v}" for n, v in sorted(dists.items()) if n not in have]
        if wanted:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                                "-d", str(house), *wanted], capture_output=True, text=True, timeout=900)
            have = present()
            if r.returncode != 0 or len(have) != len(dists):
                pytest.skip(f"cannot fetch the core wheels ({', '.join(wanted)}) into {house}: "
                            f"{r.stderr.strip().splitlines()[-1:] or 'pip download failed'}")
    return [have[n] for n in sorted(dists)]


IN_THE_VENV = textwrap.dedent('''
    import subprocess, sys
    import jax, jax.numpy as jnp
    from pegan import encodings, models, nn, ops
    from pegan.models import singan, stylegan2
    from pegan.convert import torchpickle           # the torch-free .pth reader needs only numpy

    heavy = ("ml_collections", "optax", "orbax", "tensorflow_datasets", "tensorflow", "clu", "scipy",
             "skimage", "PIL", "tqdm", "tensorboard", "tensorstore")
    loaded = [m for m in heavy if any(n == m or n.startswith(m + ".") for n in sys.modules)]
    assert not loaded, loaded

    key = jax.random.PRNGKey(0)
    g = stylegan2.Generator(out_size=32, style_channels=16, num_mlps=2, channels={4: 16, 8: 16, 16: 12, 32: 8},
                            head_pos_encoding={"type": "CSG"}, interp_head=True)
    z = jax.random.normal(key, (2, 16))
    v = jax.jit(lambda k, z: g.init({"params": k}, z, 0, rng=k))(key, z)
    img = jax.jit(lambda v, z, k: g.apply(v, z, 1, rng=k))(v, z, key)      # chosen scale 1: 40 x 40
    assert img.shape == (2, 40, 40, 3) and bool(jnp.isfinite(img).all()), img.shape

    s = singan.SinGANGenerator(num_scales=1, base_channels=8, min_feat_channels=8, padding=1, pad_at_head=False,
                               positional_encoding={"type": "CSG"}, first_stage_in_channels=2)
    noises = [jax.random.normal(key, (1, 12, 16, 2)), jax.random.normal(key, (1, 15, 20, 1))]
    sv = jax.jit(lambda k, n: s.init(k, n, [1.0, 0.1]))(key, noises)
    out = jax.jit(lambda v, n: s.apply(v, n, [1.0, 0.1]))(sv, noises)
    assert out.shape == (1, 15, 20, 3) and bool(jnp.isfinite(out).all()), out.shape

    from pegan._extras import MissingExtraError
    for module in ("pegan.data", "pegan.checkpoint", "pegan.api", "pegan.train.writers", "pegan.eval.evaluate"):
        try:
            __import__(module)
        except MissingExtraError as e:
            print(e)
        else:
            raise AssertionError(module + " imported without its extra")
''')


def _timed(what, times, *args, **kwargs):
    t = time.time()
    r = subprocess.run(*args, capture_output=True, text=True, timeout=600, **kwargs)
    times[what] = round(time.time() - t, 1)
    assert r.returncode == 0, f"{what}: {r.stdout}\n{r.stderr}"
    return r


def test_core_only_environment(tmp_path):
    times = {}
    dists = core_distributions()
    assert not LEFT_OUT & set(dists) and {"jax", "jaxlib", "flax", "numpy"} <= set(dists)
    t = time.time()
    wheels = core_wheels(dists)
    times["wheels"] = round(time.time() - t, 1)

    src = tmp_path / "src"      # pegan's wheel, built from a copy (nothing written into the checkout)
    for name in ("pegan", "experiments"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    _timed("pegan wheel", times, [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                                  str(tmp_path / "dist"), str(src)])
    (pegan_wheel,) = (tmp_path / "dist").glob("pegan-*.whl")
    import zipfile
    assert "pegan/explore/page.html" in zipfile.ZipFile(pegan_wheel).namelist()    # pegan explore's page ships

    venv = tmp_path / "venv"
    _timed("venv", times, [sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    # pip runs itself under the venv's python: nothing of this environment may leak in (a checkout
    # on PYTHONPATH would count as an installed pegan)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    clean["PYTHONNOUSERSITE"] = "1"
    _timed("install", times, [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-compile",
                              "--no-index", "--no-deps", *map(str, wheels), str(pegan_wheel)], env=clean)

    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONNOUSERSITE": "1",
           "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "list", "--format=freeze"],
                            capture_output=True, text=True, check=True, env=clean).stdout
    names = {canonicalize_name(line.split("==")[0]) for line in listed.split()}
    assert names == set(dists) | {"pegan"}, names ^ (set(dists) | {"pegan"})

    r = _timed("run", times, [str(py), "-c", IN_THE_VENV], cwd=tmp_path, env=env)
    assert r.stdout.splitlines() == [
        "pegan.data needs the 'train' extra: pip install 'pegan[train]' (missing: tensorflow_datasets, PIL)",
        "pegan.checkpoint needs the 'convert' extra: pip install 'pegan[convert]' (missing: orbax.checkpoint, ml_collections)",
        "pegan.checkpoint needs the 'convert' extra: pip install 'pegan[convert]' (missing: orbax.checkpoint, ml_collections)",
        "pegan.train needs the 'train' extra: pip install 'pegan[train]' (missing: optax)",
        "pegan.eval needs the 'eval' extra: pip install 'pegan[eval]' (missing: orbax.checkpoint, ml_collections, "
        "PIL, tensorflow_datasets, scipy)",
    ], r.stdout

    cli = [str(venv / "bin" / "pegan")]
    assert subprocess.run(cli + ["--help"], capture_output=True, env=env, cwd=tmp_path).returncode == 0
    r = subprocess.run(cli + ["experiments"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr == (
        "pegan experiments: error: this command needs the 'convert' extra: pip install 'pegan[convert]' "
        "(missing: orbax.checkpoint, ml_collections, PIL)\n"), r.stderr
    print("core-only environment, seconds:", times)
