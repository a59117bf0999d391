"""The config: one experiment file holds every run-time choice, the base configs hold every field
the code reads and no other, and the command line sets fields in the config_flags style."""

import ast
import contextlib
import inspect
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest

from pegan import cli
from pegan.configs import base, load_experiment, release
from pegan.configs import experiments_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXP_F = ROOT / "experiments" / "mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512.py"
EXP_CSG = ROOT / "experiments" / "singan-csg_fish.py"


# -- the base configs ---------------------------------------------------------------------------

def _sections(cfg, path=()):
    """{path: frozenset(keys)} of every section (ConfigDict) of a base config."""
    out = {path: frozenset(cfg.keys())}
    for k in cfg.keys():
        if isinstance(cfg[k], ml_collections.ConfigDict):
            out.update(_sections(cfg[k], path + (k,)))
    return out


def _fields(cfg, path=()):
    out = []
    for k in cfg.keys():
        if isinstance(cfg[k], ml_collections.ConfigDict):
            out += _fields(cfg[k], path + (k,))
        else:
            out.append(path + (k,))
    return out


@pytest.mark.parametrize("family", ["stylegan2", "singan"])
def test_every_base_field_has_its_comment(family):
    """Each assignment of a field in base.py carries its one-line comment."""
    src = inspect.getsource(getattr(base, family))
    lines = src.splitlines()
    assigned = 0
    for i, line in enumerate(lines):
        s = line.strip()
        if not s or s.startswith(("#", "def ", '"""', "return", "c = ")) or " = " not in s:
            continue
        target = s.split(" = ")[0]
        if not target.count(".") or "(" in target:
            continue
        assigned += 1
        assert "#" in line, f"{family}: {s} has no comment"
    assert assigned >= 30 if family == "stylegan2" else assigned >= 25
    described = inspect.getsource(base._compute)
    for field in getattr(base, family)().compute:
        assert f"#   {field} " in described, f"compute.{field} is not described in base._compute"


def test_release_facts_live_in_the_release_table_only():
    for name in release.names():
        cfg = load_experiment(name)
        flat = json.dumps(cfg.to_dict())
        e = release.entry(name)
        assert "release" not in cfg and e["file"] not in flat and e["url"] not in flat
        if e["family"] == "stylegan2":
            assert str(e["fid50k"]) not in flat
        assert cfg.name == name and cfg.family == e["family"]


def test_experiment_files_are_deltas_with_their_command_in_the_docstring():
    d = experiments_dir()
    for p in sorted(d.glob("*.py")):
        tree = ast.parse(p.read_text())
        doc = ast.get_docstring(tree)
        assert f"pegan train --config experiments/{p.stem}.py" in doc, p.name
        assert "Cost:" in doc and ("Result" in doc), p.name
        fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_config")
        first, last = fn.body[0], fn.body[-1]
        assert ast.unparse(first.value).startswith("base."), p.name         # the family's base ...
        assert ast.unparse(last.value).startswith("base.finish("), p.name   # ... plus its own values
        assert len(fn.body) <= 12, f"{p.name}: an experiment holds deltas from the base, not a whole config"


# -- every field read, nothing else -------------------------------------------------------------

class Reads:
    """Records every read of a ConfigDict field during a run, by the section it was read from.

    A section is recognised by its key set (a copied config, or one read back from config.json,
    has the same keys), so the record survives copies. ``to_dict``, copies, comparison and
    printing are not reads (they copy or show the whole config)."""

    def __init__(self, cfg):
        self.sections = _sections(cfg)
        self.fields = set(_fields(cfg))
        self.read = set()
        self.unknown = []           # (keys of the section, key) reads of a field no base section has
        self.quiet = 0

    def _where(self, keys):
        keys = frozenset(keys)
        return [p for p, ks in self.sections.items() if ks <= keys <= ks | set(base.RECORDS)]

    @contextlib.contextmanager
    def recording(self, monkeypatch):
        CD = ml_collections.ConfigDict
        getitem = CD.__getitem__
        reads = self

        def tracked_getitem(self, key):
            if reads.quiet or not isinstance(key, str) or "." in key:
                return getitem(self, key)
            keys = list(self._fields)
            where = reads._where(keys)
            if key in keys:
                for p in where:
                    reads.read.add(p + (key,))
            if not where or (key not in keys and key not in base.RECORDS):
                if "type" not in keys:              # inside an encoding spec (a field's value)
                    reads.unknown.append((sorted(keys), key))
            return getitem(self, key)

        def quiet(fn):
            def wrapped(*a, **k):
                reads.quiet += 1
                try:
                    return fn(*a, **k)
                finally:
                    reads.quiet -= 1
            return wrapped

        monkeypatch.setattr(CD, "__getitem__", tracked_getitem)
        for name in ("to_dict", "copy_and_resolve_references", "__eq__", "__repr__", "__str__", "to_json"):
            monkeypatch.setattr(CD, name, quiet(getattr(CD, name)))
        yield self


def test_reads_records_by_section_through_copies_and_flags_unknown_fields(monkeypatch):
    cfg = base.stylegan2()
    reads = Reads(cfg)
    with reads.recording(monkeypatch):
        cfg.train.batch
        copy = ml_collections.ConfigDict(json.loads(json.dumps(cfg.to_dict())))   # as read back from config.json
        copy.generator.get("out_size")
        copy.train.get("not_a_field", 3)
        dict(copy.discriminator.items())
    assert reads.read == {("train",), ("generator",), ("discriminator",), ("train", "batch"),
                          ("generator", "out_size")} | {("discriminator", k) for k in cfg.discriminator}
    assert reads.unknown == [(sorted(cfg.train.keys()), "not_a_field")]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from helpers import noise_images

    return noise_images(tmp_path_factory.mktemp("imgs"), 6, (40, 48), seed=0)


class FakeEvaluator:
    """Stands in for the Inception / VGG evaluator (tested in test_eval_cli): this test is about
    which config fields the commands read on the way to it."""

    def __init__(self, metrics, **kw):
        self.metrics, self.kw, self.batch = metrics, kw, kw.get("batch")

    def __call__(self, G, v, scale):
        return {"fid8": {"fid": 1.0, "fid_mean": 0.5, "fid_cov": 0.5, "num_fakes": 8, "real": "x",
                         "real_count": 8}}


def test_stylegan2_train_sample_evaluate_read_every_base_field_and_no_other(images, tmp_path, monkeypatch):
    from pegan.eval import evaluate as ev

    made = []
    monkeypatch.setattr(ev, "make_evaluator", lambda metrics, **kw: made.append(kw) or FakeEvaluator(metrics, **kw))
    reads = Reads(base.stylegan2())
    w = tmp_path / "w"
    with reads.recording(monkeypatch):
        rc = cli.main(["train", "--config", f"{EXP_F}:tiny", "--workdir", str(w),
                       f"--config.data.path={images}", "--config.train.total_iters=2",
                       "--config.scales=[0]", "--config.train.scale_sampling=configured",
                       "--config.train.scale_probs=[1.0]", "--config.train.checkpoint_every=1",
                       "--config.train.sample_every=1", "--config.train.log_every=1",
                       "--config.eval.metrics=fid8", "--config.eval.every=2", "--config.train.tensorboard=false"])
        assert rc == 0
        assert cli.main(["sample", str(w), "--num", "2", "--out", str(tmp_path / "s.png")]) == 0
        assert cli.main(["evaluate", str(w), "--metrics", "fid8", "--real", str(images),
                         "--out", str(tmp_path / "m.json")]) == 0
    assert made and made[0]["batch"] == 16
    unread = sorted(".".join(f) for f in reads.fields - reads.read)
    assert not unread, f"base fields no code read: {unread}"
    assert not reads.unknown, f"reads of fields the base config does not have: {reads.unknown}"
    stored = json.loads((w / "config.json").read_text())
    assert stored["compute"]["conv_impl"] == "auto" and stored["compute_resolved"]["conv_impl"] in ("taps", "xla")
    assert stored["train"]["seed"] == 0 and stored["train"]["total_iters"] == 2


def test_singan_train_sample_read_every_base_field_and_no_other(images, tmp_path, monkeypatch):
    reads = Reads(base.singan())
    w = tmp_path / "w"
    with reads.recording(monkeypatch):
        rc = cli.main(["train", "--config", f"{EXP_CSG}:tiny", "--workdir", str(w),
                       f"--config.data.image={images / '0.png'}", "--config.data.max_size=24",
                       "--config.data.min_size=12", "--config.train.iters_per_scale=2",
                       "--config.train.lr_milestones=[1]"])
        assert rc == 0
        assert cli.main(["sample", str(w), "--num", "2", "--out", str(tmp_path / "s.png")]) == 0
    unread = sorted(".".join(f) for f in reads.fields - reads.read)
    assert not unread, f"base fields no code read: {unread}"
    assert not reads.unknown, f"reads of fields the base config does not have: {reads.unknown}"
    stored = json.loads((w / "config.json").read_text())
    assert stored["compute_resolved"]["conv_impl"] in ("taps", "xla") and stored["pyramid"]


# -- an experiment of one's own -----------------------------------------------------------------

USER_EXPERIMENT = '''
"""My experiment: a CSG head, my own channel table, trained at 16 and 24 px."""
from pegan.configs import base


def get_config(variant=None):
    c = base.stylegan2()
    c.scales = [0, 2]
    c.generator.update(out_size=16, style_channels=8, num_mlps=2, channels=[[4, 12], [8, 12], [16, 8]],
                       head_pos_encoding=base.CSG, deconv2conv=True, up_after_conv=True)
    c.discriminator.update(in_size=16, channels=[[4, 12], [8, 12], [16, 8]], with_adaptive_pool=True)
    c.train.update(batch=2, total_iters=2)
    return base.finish(c, variant)
'''


def _to_reference_layout(variables):
    """A pegan generator's variables as an mmgeneration state dict of a BGR-trained model (the
    inverse of the converter's rules, written out here independently): what a .pth of this
    architecture holds."""
    sd = {}

    def dotted(m):
        return m.replace("convs_", "convs.").replace("to_rgbs_", "to_rgbs.")

    def put(path, a):
        a = np.asarray(a)
        kind, mod, rest = path[0], path[1], path[2:]
        if kind == "buffers":
            if mod.startswith("injected_noise_"):
                sd[mod] = a.transpose(0, 3, 1, 2)
            return
        rgb = mod.startswith("to_rgb")
        if mod.startswith("style_mapping_"):
            j = int(mod.split("_")[-1]) + 1
            sd[f"style_mapping.{j}.linear.weight_orig" if rest == ("kernel",) else f"style_mapping.{j}.bias"] = (
                a.T if rest == ("kernel",) else a)
        elif mod == "constant_input":
            sd["constant_input.input"] = a.transpose(0, 3, 1, 2)
        elif rest == ("conv", "weight"):
            sd[f"{dotted(mod)}.conv.weight_orig"] = (a[..., ::-1] if rgb else a).transpose(3, 2, 0, 1)[None]
        elif rest == ("conv", "style_modulation", "kernel"):
            sd[f"{dotted(mod)}.conv.style_modulation.linear.weight_orig"] = a.T
        elif rest == ("conv", "style_modulation", "bias"):
            sd[f"{dotted(mod)}.conv.style_modulation.bias"] = a
        elif rest == ("noise_injector", "weight"):
            sd[f"{dotted(mod)}.noise_injector.weight"] = a
        elif rest == ("bias",):
            sd[f"{dotted(mod)}.bias" if rgb else f"{dotted(mod)}.activate.bias"] = (
                a[::-1].reshape(1, 3, 1, 1) if rgb else a)
        else:
            raise AssertionError(f"no reference key for {path}")

    def walk(tree, path=()):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, path + (k,))
            else:
                put(path + (k,), v)
    walk(variables)
    return {k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}


def test_a_user_experiment_trains_converts_and_samples(images, tmp_path):
    from pegan import checkpoint as ckpt
    from torch_writer import save_pth

    exp = tmp_path / "my_exp.py"
    exp.write_text(USER_EXPERIMENT)
    w = tmp_path / "w"
    assert cli.main(["train", "--config", str(exp), "--workdir", str(w), f"--config.data.path={images}"]) == 0
    stored = json.loads((w / "config.json").read_text())
    assert stored["name"] == "my_exp" and "release" not in stored and stored["scales"] == [0, 2]
    assert ckpt.latest_step(w) == 2
    # its generator, written as a reference .pth, converts back (no release entry needed)
    item = ckpt.restore(w, ["generator_ema"])["generator_ema"]
    pth = tmp_path / "my_exp.pth"
    save_pth(pth, {"meta": {"iter": 2}, "state_dict": {f"generator_ema.{k}": v for k, v in
                                                         _to_reference_layout(item).items()}})
    conv = tmp_path / "conv"
    assert cli.main(["convert", str(pth), str(conv), "--experiment", str(exp)]) == 0
    assert ckpt.read_info(conv)["experiment"] == "my_exp"
    for d in (w, conv):
        assert cli.main(["sample", str(d), "--chosen-scale", "2", "--num", "3", "--out", str(d / "s.png"),
                         "--npy", str(d / "s.npy")]) == 0
    a, b = np.load(w / "s.npy"), np.load(conv / "s.npy")
    assert a.shape == (3, 24, 24, 3)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)


# -- the command line ---------------------------------------------------------------------------

def test_config_flags_override_typed_fields_and_aliases_never_shadow(images, tmp_path, capsys):
    from pegan.cli import build_parser, split_config_overrides, train_config

    def cfg_of(*argv):
        rest, pairs = split_config_overrides([str(a) for a in argv])
        args = build_parser().parse_args(rest)
        args.config_overrides = pairs
        return train_config(args)

    c = cfg_of("train", "--config", f"{EXP_F}:tiny", "--workdir", tmp_path / "w", "--config.train.batch=8",
               "--config.compute.conv_impl", "xla", "--config.scales=[0,2]")
    assert c.variant == "tiny" and c.train.batch == 8 and c.compute.conv_impl == "xla" and list(c.scales) == [0, 2]
    assert c.train.checkpoint_every == 10_000 and c.train.total_iters == 1_100_002 and c.train.seed == 0
    c = cfg_of("train", EXP_F, "--variant", "tiny", "--steps", 7, "--checkpoint-every", 3, "--seed", 5,
               "--data", images, "--no-tensorboard", "--set", "train.log_every=2")
    assert (c.train.total_iters, c.train.checkpoint_every, c.train.seed, c.data.path) == (7, 3, 5, str(images))
    assert c.train.tensorboard is False and c.train.log_every == 2
    # each mistake: one line, exit 2, nothing written
    w = tmp_path / "w2"
    for argv, says in [
        (["--config", EXP_F, "--steps", 3, "--config.train.total_iters=4"], "train.total_iters is given twice"),
        (["--config", EXP_F, "--config.train.batch=many"], "train.batch takes a whole number"),
        (["--config", EXP_F, "--config.train.nope=1"], "the config has no 'train.nope'"),
        (["--config", EXP_F, "--image", "x.png"], "--image applies to singan experiments"),
        (["--config", EXP_F, "--config.compute.conv_impl=fast"], "compute.conv_impl must be 'auto' or one of"),
        (["--config", f"{EXP_F}:tiny", "--config.train.total_iters=0", f"--config.data.path={images}"],
         "train.total_iters must be at least 1"),
        (["--config", f"{EXP_F}:tiny", "--config.train.statistics=host"], "train.statistics must be one of"),
        (["--config", f"{EXP_F}:tiny"], "--config.data.path=PATH"),
        (["--config", EXP_CSG], "--config.data.image=FILE"),
        (["--config", tmp_path / "none.py"], "experiment file"),
    ]:
        rc = cli.main(["train", "--workdir", str(w)] + [str(a) for a in argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and says in err[0], (argv, err)
    assert not w.exists()
    assert cli.main(["prepare", str(images), "--out", str(tmp_path / "p"), "--config.train.batch=2"]) == 2
    assert "applies to train, sample and evaluate" in capsys.readouterr().err


def test_experiments_are_found_by_name_in_an_installed_pegan(tmp_path):
    """A wheel carries experiments/ to <prefix>/share/pegan/experiments, where lookup by name finds
    it. The wheel is unpacked by hand into a prefix of its own (as an installer lays it out), so
    this environment's pegan is left alone."""
    import zipfile

    whl = tmp_path / "whl"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(whl), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    prefix = tmp_path / "prefix"
    site = prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    with zipfile.ZipFile(next(whl.glob("*.whl"))) as z:
        for name in z.namelist():
            head, _, rest = name.partition(".data/data/")
            target = prefix / rest if rest else site / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
    assert (prefix / "share/pegan/experiments").is_dir() and (site / "pegan/models/__init__.py").is_file()
    code = textwrap.dedent("""
        import pegan.configs as c
        cfg = c.load_experiment("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512", "tiny")
        print(c.experiments_dir(), cfg.name, cfg.variant, c.__file__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PEGAN_EXPERIMENTS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**env, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    where, name, variant, module = out.stdout.split()
    assert pathlib.Path(module).is_relative_to(site)
    assert (name, variant) == ("mspie-stylegan2-config-f_c2_8xb3-1100kiters_ffhq-256-512", "tiny")
    assert pathlib.Path(where) == prefix / "share/pegan/experiments"
