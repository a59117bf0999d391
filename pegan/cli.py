"""Command line: ``pegan demo | convert | sample | train | prepare | evaluate | experiments``.

Errors caused by the input (missing or damaged files, unknown experiments, checkpoints that do
not fit, out-of-range arguments, a full disk) are ``pegan.errors.PeganError``: they print one
line and exit with status 2 (PEGAN_DEBUG=1 shows the traceback), and so do argument errors
(argparse's, without the usage text). Arguments are checked before anything is read or
compiled. Any other exception is a bug and keeps its traceback.

Each subcommand imports what it needs when it runs, so ``pegan --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import List, Optional


from pegan import checks
from pegan.errors import InputError, PeganError, PeganWarning


class UserError(PeganError):
    """A command-line mistake: printed without a traceback, exit status 2."""


class _ArgumentError(UserError):
    """An argparse error of parser ``prog``."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, raising its errors (``main`` prints them as one line) instead of printing the
    usage text and exiting."""

    def error(self, message):
        raise _ArgumentError(self.prog, message)


def _count(minimum: int):
    """An argparse type: a whole number of at least ``minimum`` (``checks.at_least``)."""
    def count(text: str) -> int:
        try:
            return checks.at_least(int(text), minimum, "the value")
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    return count


def _demo(args) -> int:
    from pegan.demo import run_demo

    return run_demo(args)

def _pair(text: str, what: str):
    try:
        parts = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise UserError(f"{what} must be N or H,W (integers), got {text!r}")
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise UserError(f"{what} must be N or H,W, got {text!r}")
    return parts[0], parts[1]


def _convert(args) -> int:
    from pegan import api

    t0 = time.time()
    out = api.convert(args.file, args.out_dir, experiment=args.experiment, variant=args.variant,
                      keep_bgr=args.keep_bgr, overwrite=args.overwrite, pkl=args.pkl)
    from pegan import checkpoint as ckpt
    info = ckpt.read_info(out)
    print(f"wrote {out}: experiment {info['experiment']} ({info['variant']}, chosen by "
          f"{info['source']['experiment_chosen_by']}), {info['color_order']} output, step "
          f"{ckpt.latest_step(out)}, in {time.time() - t0:.1f} s")
    return 0


def _check_outputs(args) -> None:
    """--out (an image file) and --npy of ``sample``, before anything is loaded."""
    from pegan.imageio import IMAGE_EXTS

    checks.output_file(args.out, "--out", IMAGE_EXTS)
    if args.npy:
        checks.output_file(args.npy, "--npy", (".npy",))


def _sample(args) -> int:
    from pegan import api

    _check_outputs(args)
    t0 = time.time()
    if args.step is not None and not os.path.isdir(args.checkpoint):
        raise UserError("--step applies to a pegan checkpoint directory, not a .pth")
    loaded = api.load(args.checkpoint, which=args.which, experiment=args.experiment,
                      variant=args.variant, pkl=args.pkl, step=args.step)
    if loaded.info.get("family") == "singan":
        return _sample_singan(args, loaded, t0)
    if args.recon or args.input or args.width_factor != 1.0:
        raise UserError("--recon, --input and --width-factor apply to SinGAN checkpoints")
    if args.size and args.chosen_scale is not None:
        raise UserError("give --chosen-scale or --size, not both")
    scale = api.resolve_scale(loaded.model, None if args.chosen_scale is None else
                              _pair(args.chosen_scale, "--chosen-scale"),
                              _pair(args.size, "--size") if args.size else None, args.max_side)
    imgs = api.sample(loaded, args.num, scale, truncation=args.truncation, seed=args.seed,
                      batch=args.batch, noise=args.noise, max_side=args.max_side)
    return _save_samples(args, imgs, loaded, f"chosen scale {scale}, truncation {args.truncation}, "
                         f"seed {args.seed}", t0)


def _save_samples(args, imgs, loaded, what, t0):
    import numpy as np

    from pegan.imageio import image_grid, save_png, to_uint8

    if loaded.info.get("color_order") == "BGR":
        imgs = imgs[..., ::-1]
    path = save_png(args.out, image_grid(to_uint8(imgs), ncol=args.ncol))
    msg = f"wrote {path}"
    if args.npy:
        with checks.storage_errors(args.npy):
            os.makedirs(os.path.dirname(os.path.abspath(args.npy)), exist_ok=True)
            np.save(args.npy, imgs)
        msg += f" and {args.npy} (float32 [N, H, W, 3] RGB in [-1, 1])"
    print(f"{msg}: {len(imgs)} images of {imgs.shape[1]}x{imgs.shape[2]} ({what}) in {time.time() - t0:.1f} s")
    return 0


def _sample_singan(args, loaded, t0) -> int:
    from pegan import api
    from pegan.imageio import read_image

    if args.chosen_scale is not None or args.truncation != 1.0:
        raise UserError("--chosen-scale and --truncation apply to StyleGAN2 checkpoints; a SinGAN takes "
                        "--size H,W or --width-factor F")
    start = read_image(args.input) if args.input else None
    if args.start_stage and start is None:
        raise UserError("--start-stage needs --input IMAGE")
    size = _pair(args.size, "--size") if args.size else None
    imgs = api.singan_sample(loaded, args.num, seed=args.seed, mode="recon" if args.recon else "rand",
                             size=size, width_factor=args.width_factor, start_image=start,
                             start_stage=args.start_stage, batch=args.batch, max_side=args.max_side)
    what = "reconstruction" if args.recon else f"random, seed {args.seed}"
    if start is not None:
        what += f", from {args.input} at stage {args.start_stage}"
    return _save_samples(args, imgs, loaded, what, t0)


def _train(args) -> int:
    from pegan import checkpoint as ckpt
    from pegan.configs import apply_overrides, load_experiment

    name = args.experiment_file or args.experiment
    if not name:
        raise UserError("name the experiment: pegan train experiments/<name>.py --workdir DIR ...")
    workdir = args.workdir or args.out
    if not workdir:
        raise UserError("pass --workdir DIR (the run's checkpoint directory)")
    ckpt.check_run_dir(workdir, "--workdir")
    cfg = apply_overrides(load_experiment(name, args.variant), args.set)
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        _init_distributed(args)
    from pegan import compute

    compute.apply_process_settings(compute.resolve(cfg))    # matmul precision, compile cache: before tracing
    if cfg.family == "singan":
        return _train_singan(args, cfg, workdir)
    return _train_stylegan2(args, cfg, workdir)


def _init_distributed(args) -> None:
    """jax.distributed.initialize() before anything touches a device (on CPU: gloo collectives)."""
    import jax

    kw = {k: v for k, v in (("coordinator_address", args.coordinator), ("num_processes", args.num_processes),
                            ("process_id", args.process_id)) if v is not None}
    if jax.config.jax_platforms in ("cpu",) or os.environ.get("JAX_PLATFORMS") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kw)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"jax.distributed.initialize failed ({e}); on a TPU pod or under SLURM run the same command "
                        "on every host; elsewhere pass --coordinator HOST:PORT --num-processes N --process-id I") from e
    print(f"process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} local devices, "
          f"{jax.device_count()} in all")


def _train_singan(args, cfg, workdir) -> int:
    from pegan.demo import _progress_factory
    from pegan.imageio import read_image
    from pegan.train import singan as ts

    if args.image is None:
        raise UserError(f"a SinGAN trains on one image: pass --image (the reference used {cfg.data.image}, "
                        f"{cfg.data.url})")
    image = read_image(args.image)
    if args.max_size:
        cfg.data.max_size = args.max_size
    t0 = time.time()
    ts.run(cfg, image, workdir, seed=args.seed, iters=args.iters,
           progress_factory=_progress_factory(cfg.name), image_name=os.path.basename(args.image), step=args.step)
    print(f"trained {cfg.name} into {workdir} in {time.time() - t0:.0f} s; sample with "
          f"`pegan sample {workdir} --num 8 --width-factor 2`")
    return 0


def _train_stylegan2(args, cfg, workdir) -> int:
    import jax
    from tqdm import tqdm

    from pegan.data import PreparedImages, open_data
    from pegan.train.stylegan2_loop import Trainer, check_config

    if not args.data:
        raise UserError("pass --data PATH (a `pegan prepare` dataset, or a folder of training images)")
    if not args.steps:
        raise UserError("pass --steps N (the reference trains 1,100,002 iterations)")
    check_config(cfg, jax.device_count())
    stored = max(cfg.generator.out_size // 4 * (4 + s) for s in cfg.scales)
    data = open_data(args.data, stored, on_error="skip" if args.skip_bad_images else "raise")
    if isinstance(data, PreparedImages):
        print(f"data: {len(data)} images of {data.size} px prepared in {data.path}"
              + (f" (host {data.process_index} of {data.process_count})" if data.process_count > 1 else ""))
    elif data.skipped:
        print(f"skipped {len(data.skipped)} unreadable images (first: {data.skipped[0]})")
    evaluator = None
    if args.eval:
        from pegan.eval.evaluate import Protocol, make_evaluator

        real = args.eval_real or args.data
        evaluator = make_evaluator(args.eval, real=None if real.endswith((".npz", ".pkl")) else real,
                                   real_stats=real if real.endswith((".npz", ".pkl")) else None,
                                   inception=args.inception, vgg16=args.vgg16, batch=args.eval_batch,
                                   protocol=Protocol(fid_method="eigh"), log=lambda m: tqdm.write(m))
    from pegan.train.writers import create_writers

    lead = jax.process_index() == 0
    writer = create_writers(workdir, tensorboard=not args.no_tensorboard, log=tqdm.write)
    trainer = Trainer(cfg, data, workdir, seed=args.seed, writer=writer, log=tqdm.write, step=args.step)
    n = trainer.mesh.devices.size
    if lead:
        print(f"{cfg.name}: {n} device(s) ({jax.devices()[0].platform}), statistics {trainer.statistics}, "
              f"batch per scale {[(s, trainer.schedule_batch(s)) for s in cfg.scales]}")
        from pegan import compute

        print(compute.describe(compute.compute_section(cfg), trainer.compute))
    bar = tqdm(total=args.steps, initial=int(trainer.state.step), unit="step", dynamic_ncols=True,
               disable=not lead)
    t0 = time.time()
    kimg = [0.0]

    def progress(m):
        kimg[0] += m["batch"] / 1000
        bar.update(1)
        bar.set_postfix(scale=m["scale"], D=f"{m['d_loss']:.3f}", G=f"{m['g_loss']:.3f}",
                        R1=f"{m['r1_penalty']:.2e}", PL=f"{m['pl_penalty']:.2e}")

    try:
        trainer.run(args.steps, checkpoint_every=args.checkpoint_every, sample_every=args.sample_every,
                    progress=progress, evaluator=evaluator, eval_every=args.eval_every, log_every=args.log_every)
    finally:
        bar.close()             # before an error line, so that the error is the last line
    path = trainer.write_samples()
    writer.close()
    if not lead:
        return 0
    secs = time.time() - t0
    from pegan.train.stylegan2_loop import _shape_name

    comp = ", ".join(f"{_shape_name(*k)}: {c:.0f} s" for k, c in trainer.compile_seconds.items())
    print(f"step {int(trainer.state.step)} in {workdir} ({secs:.0f} s, {secs / max(kimg[0], 1e-9):.0f} s/kimg; "
          f"compile {comp}); samples at every scale: {path}")
    return 0

def _prepare(args) -> int:
    from pegan.data import prepare

    t0 = time.time()
    info = prepare(args.folder, args.out, args.size, on_error="skip" if args.skip_bad else "raise",
                   encoding=args.format, workers=args.workers, overwrite=args.overwrite, progress=True)
    n = info["num_images"]
    print(f"wrote {args.out}: {n} images of {info['size']}x{info['size']} ({info['encoding']}, tfds array_record) "
          f"from {info['num_files']} files in {time.time() - t0:.1f} s; train with "
          f"`pegan train EXPERIMENT --data {args.out} ...`")
    if info["num_skipped"]:
        first = info["skipped"][0]
        print(f"skipped {info['num_skipped']} unreadable images (listed in "
              f"{os.path.join(args.out, 'pegan_prepare.json')}; first: {first['file']}: {first['reason']})")
    if info["num_upscaled"]:
        print(f"note: {info['num_upscaled']} images were smaller than {info['size']} px and were upscaled")
    return 0


def _evaluate(args) -> int:
    import json

    from pegan.eval.evaluate import Protocol, evaluate_checkpoint

    if args.size and args.chosen_scale is not None:
        raise UserError("give --chosen-scale or --size, not both")
    if not args.real and not args.real_stats:
        raise UserError("pass --real DATASET (a `pegan prepare` dataset or an image folder) and/or "
                        "--real-stats FILE (FID statistics: pegan .npz or mmgen .pkl)")
    out = args.out or os.path.join(args.checkpoint if os.path.isdir(args.checkpoint) else ".",
                                   f"metrics_{'_'.join(m.strip() for m in args.metrics.split(','))}.json")
    checks.output_file(out, "--out")
    real, stats = args.real, args.real_stats
    if real and os.path.isfile(real) and real.endswith((".npz", ".pkl")):
        real, stats = None, real
    protocol = Protocol(quantize_fakes=not args.no_quantize, pr_real_order=args.pr_real_order, seed=args.seed,
                        fid_method=args.fid_method)
    t0 = time.time()
    report = evaluate_checkpoint(
        args.checkpoint, args.metrics,
        chosen_scale=None if args.chosen_scale is None else _pair(args.chosen_scale, "--chosen-scale"),
        size=_pair(args.size, "--size") if args.size else None, real=real, real_stats=stats,
        inception=args.inception, vgg16=args.vgg16, batch=args.batch, protocol=protocol,
        cache_dir=args.cache_dir, experiment=args.experiment, step=args.step, max_side=args.max_side)
    report["seconds"] = round(time.time() - t0, 1)
    h, w = report["image_size"]
    print(f"{report['checkpoint']} ({report['experiment']}), chosen scale {tuple(report['chosen_scale'])} "
          f"= {h}x{w} px, {report['devices']}, batch {report['batch']}")
    print("protocol:")
    for k, v in report["protocol"].items():
        print(f"  {k:12s} {v}")
    for name, r in report["metrics"].items():
        if name.startswith("_"):
            continue
        if "fid" in r:
            print(f"{name}: FID {r['fid']:.4f} (mean term {r['fid_mean']:.4f}, covariance term {r['fid_cov']:.4f}); "
                  f"{r['num_fakes']} fakes vs {r['real']} ({r['real_count']} reals)")
        else:
            print(f"{name}: precision {r['precision']:.4f}, recall {r['recall']:.4f}; "
                  f"{r['num_fakes']} fakes, {r['num_reals']} reals of {r['real']}")
    with checks.storage_errors(out):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
    print(f"wrote {out} in {report['seconds']:.0f} s")
    return 0


def _experiments(args) -> int:
    from pegan.configs import RELEASED, SINGAN_RELEASED, singan_config, stylegan2_config

    for name in RELEASED:
        c = stylegan2_config(name)
        f = c.generator.out_size // 4
        print(f"{name:60s} {c.paper:16s} px {','.join(str((4 + s) * f) for s in c.scales):14s} "
              f"FID50k {c.release.fid50k:.2f}")
    for name in SINGAN_RELEASED:
        c = singan_config(name)
        pe = c.generator.positional_encoding
        kind = "no PE, interp-pad" if pe is None else f"{pe.type}" + (f" dim {pe.embedding_dim}" if pe.type == "SPE" else "")
        print(f"{name:60s} {'PE-SinGAN':16s} {c.data.image} ({c.generator.num_scales + 1} stages), {kind}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pegan", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train a PE-SinGAN on a photo (~10 min on 2 CPU cores) -> PNG sheet")
    d.add_argument("--image", default="skimage:rocket",
                   help="a path, or skimage:<name> for an image bundled with scikit-image (default skimage:rocket)")
    d.add_argument("--max-size", type=_count(1), default=64, help="long side of the training image (px)")
    d.add_argument("--min-size", type=_count(1), default=16, help="short side of the coarsest stage (px)")
    d.add_argument("--iters", type=_count(1), default=120, help="iterations per stage (the reference: 2000)")
    d.add_argument("--num", type=_count(1), default=4, help="random samples per row")
    d.add_argument("--zoom", type=_count(1), default=3, help="pixel zoom of the sheet")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--compare", action="store_true", help="also train without positional encoding (twice the time)")
    d.add_argument("--out", default="out/demo.png", help="PNG to write (default out/demo.png)")
    d.add_argument("--run-dir", default=None, help="checkpoint directory of the run (default: next to --out)")
    d.set_defaults(func=_demo)

    c = sub.add_parser("convert", help="reference .pth (mmgeneration / mmagic) -> pegan checkpoint directory")
    c.add_argument("file", help="the released .pth")
    c.add_argument("out_dir", help="new directory for the pegan checkpoint")
    c.add_argument("--experiment", help="experiment name (needed when the file name and the shapes "
                   "do not identify it; see `pegan experiments`)")
    c.add_argument("--variant", choices=["full", "tiny"], default=None)
    c.add_argument("--keep-bgr", action="store_true", help="keep the reference's BGR output order")
    c.add_argument("--overwrite", action="store_true", help="replace the pegan checkpoint directory in out_dir "
                   "(once the new one is complete); any other non-empty out_dir is refused")
    c.add_argument("--pkl", help="SinGAN: the .pkl of fixed noises (default: next to the .pth)")
    c.set_defaults(func=_convert)

    s = sub.add_parser("sample", help="sample a grid of images from a checkpoint directory or a .pth")
    s.add_argument("checkpoint", help="pegan checkpoint directory (or a reference .pth)")
    s.add_argument("--chosen-scale", help="scale offset S or SH,SW (out_size 256: 0 -> 256 px, 2 -> 384, "
                   "4 -> 512, 12 -> 1024); default 0")
    s.add_argument("--size", help="image size H,W in pixels instead (must map to whole offsets)")
    s.add_argument("--max-side", type=_count(1), default=checks.MAX_SIDE,
                   help=f"refuse images with a side over this many px (default {checks.MAX_SIDE})")
    s.add_argument("--num", type=_count(1), default=16)
    s.add_argument("--truncation", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch", type=_count(1), default=4, help="images per forward pass")
    s.add_argument("--which", default="ema", choices=["ema", "orig"], help="EMA or raw generator")
    s.add_argument("--noise", default="random", choices=["random", "const"],
                   help="per-layer noise drawn from the seed, or the stored noise (scale 0 only)")
    s.add_argument("--step", type=int, default=None, help="checkpoint step to read (default: the latest)")
    s.add_argument("--ncol", type=_count(1), default=None, help="grid columns")
    s.add_argument("--out", default="out/samples.png", help="the image file to write (.png, .jpg, .jpeg, "
                   ".bmp or .webp; default out/samples.png)")
    s.add_argument("--npy", help="also save the raw float32 images here (.npy)")
    s.add_argument("--experiment", help="for a .pth: the experiment, if not recognised")
    s.add_argument("--variant", choices=["full", "tiny"], default=None)
    s.add_argument("--pkl", help="SinGAN .pth: its .pkl (default: next to the .pth)")
    s.add_argument("--width-factor", type=float, default=1.0, help="SinGAN: output width x F")
    s.add_argument("--recon", action="store_true", help="SinGAN: reconstruct the training image")
    s.add_argument("--input", help="SinGAN: start from this image (editing / harmonisation)")
    s.add_argument("--start-stage", type=_count(0), default=0, help="SinGAN: the stage --input enters at")
    s.set_defaults(func=_sample)

    t = sub.add_parser("train", help="train an experiment: StyleGAN2 / MS-PIE on an image folder, "
                       "or a PE-SinGAN on one image")
    t.add_argument("experiment_file", nargs="?", help="experiments/<name>.py (or an experiment name)")
    t.add_argument("--experiment", help="the same, as an option")
    t.add_argument("--variant", choices=["full", "tiny"], default=None)
    t.add_argument("--workdir", help="run directory: new, empty, or a pegan run (resumed if it holds this "
                   "run); a folder holding anything else is refused")
    t.add_argument("--step", type=int, default=None, help="resume from this step of WORKDIR instead of the latest; "
                   "the later steps are moved aside into WORKDIR/superseded/<step> (kept, not deleted)")
    t.add_argument("--out", help=argparse.SUPPRESS)
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. train.batch=8")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data", help="StyleGAN2: a `pegan prepare` dataset, or a folder of training images")
    t.add_argument("--steps", type=_count(1), help="StyleGAN2: train until this step")
    t.add_argument("--checkpoint-every", type=_count(0), default=1000,
                   help="StyleGAN2: steps between checkpoints (0: only at the end)")
    t.add_argument("--sample-every", type=_count(0), default=1000,
                   help="StyleGAN2: steps between sample grids (0: only at the end)")
    t.add_argument("--skip-bad-images", action="store_true", help="StyleGAN2: skip (and count) unreadable images")
    t.add_argument("--eval", metavar="METRICS", help="StyleGAN2: metrics to run every --eval-every steps on the "
                   "EMA generator at the largest scale, e.g. fid10k or fid10k,pr1k (see `pegan evaluate`); "
                   "appended to WORKDIR/metrics.jsonl (FID's root trace from eigenvalues, see --fid-method of evaluate)")
    t.add_argument("--eval-every", type=_count(0), default=10000,
                   help="StyleGAN2: steps between evaluations (0: none)")
    t.add_argument("--eval-real", help="StyleGAN2: real data for --eval (default: --data), or a FID statistics file")
    t.add_argument("--eval-batch", type=_count(1), default=16, help="StyleGAN2: images per evaluation step")
    t.add_argument("--inception", help="FID weights pt_inception-2015-12-05-6726825d.pth (or $PEGAN_INCEPTION_WEIGHTS)")
    t.add_argument("--vgg16", help="P&R weights vgg16-397923af.pth (or $PEGAN_VGG16_WEIGHTS)")
    t.add_argument("--log-every", type=_count(1), default=None, help="StyleGAN2: steps between metric writes "
                   "(TensorBoard under WORKDIR/tensorboard and the console; default: the config's train.log_every)")
    t.add_argument("--no-tensorboard", action="store_true", help="StyleGAN2: do not write TensorBoard event files")
    t.add_argument("--distributed", action="store_true", help="multi-host: call jax.distributed.initialize() "
                   "first (TPU pods and SLURM are detected; elsewhere give --coordinator, --num-processes and "
                   "--process-id, or JAX's JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID)")
    t.add_argument("--coordinator", help="multi-host: HOST:PORT of process 0")
    t.add_argument("--num-processes", type=_count(1), help="multi-host: number of processes")
    t.add_argument("--process-id", type=_count(0), help="multi-host: this process's index")
    t.add_argument("--image", help="SinGAN: the training image")
    t.add_argument("--max-size", type=_count(1), default=None, help="SinGAN: override the image's long side")
    t.add_argument("--iters", type=_count(1), default=None, help="SinGAN: iterations per stage (default: the config's)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="FID / precision-recall of a checkpoint at any scale (writes JSON)")
    e.add_argument("checkpoint", help="pegan checkpoint directory (or a reference .pth)")
    e.add_argument("--metrics", default="fid50k,pr10k", help="comma list of fid<N> / pr<N> (default fid50k,pr10k)")
    e.add_argument("--chosen-scale", help="scale offset S or SH,SW (4 -> 512 px for out_size 256); default 0")
    e.add_argument("--size", help="image size H,W in pixels instead")
    e.add_argument("--max-side", type=_count(1), default=checks.MAX_SIDE,
                   help=f"refuse images with a side over this many px (default {checks.MAX_SIDE})")
    e.add_argument("--real", help="real images: a `pegan prepare` dataset or an image folder (the first N, in "
                   "order); a .npz/.pkl here is taken as --real-stats")
    e.add_argument("--real-stats", help="FID statistics of the reals: a pegan .npz or mmgen's inception .pkl")
    e.add_argument("--inception", help="pt_inception-2015-12-05-6726825d.pth (or $PEGAN_INCEPTION_WEIGHTS)")
    e.add_argument("--vgg16", help="torchvision vgg16-397923af.pth (or $PEGAN_VGG16_WEIGHTS)")
    e.add_argument("--batch", type=_count(1), default=16, help="images per step over all local devices (default 16)")
    e.add_argument("--seed", type=int, default=0, help="seed of the fakes")
    e.add_argument("--no-quantize", action="store_true", help="feed float fakes (mmgen rounds them to 8 bits)")
    e.add_argument("--pr-real-order", choices=["bgr", "rgb"], default="bgr",
                   help="channel order of the reals for VGG: bgr as mmgen 0.x (default), or rgb")
    e.add_argument("--fid-method", choices=["sqrtm", "eigh"], default="sqrtm",
                   help="tr(sqrtm(S_f S_r)) by scipy sqrtm as the reference (default; about a minute for "
                   "2048-d on a small CPU) or from symmetric eigenvalues (seconds; agrees to ~1e-9)")
    e.add_argument("--cache-dir", help="where real features are cached (default $PEGAN_CACHE_DIR or ~/.cache/pegan)")
    e.add_argument("--experiment", help="for a .pth: the experiment, if not recognised")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    e.add_argument("--out", help="JSON report (default: metrics_<metrics>.json in the checkpoint directory)")
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("prepare", help="image folder -> tfds dataset (array_record) at one resolution, "
                       "for `pegan train --data`")
    r.add_argument("folder", help="folder of images (searched recursively; png, jpg, jpeg, bmp, webp)")
    r.add_argument("--out", required=True, help="new folder for the dataset")
    r.add_argument("--size", type=int, default=256, help="side of the stored square images in px, 1 to "
                   f"{checks.MAX_STORED_SIDE} (default 256); at least the largest trained scale (MS-PIE 256-512: 512)")
    r.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted and listed in "
                   "pegan_prepare.json) instead of stopping at the first")
    r.add_argument("--format", choices=["raw", "png"], default="raw",
                   help="raw uint8 (default, fastest to read) or PNG (smaller on photos, decoded on read)")
    r.add_argument("--workers", type=_count(1), default=None,
                   help="image-reading threads (default: CPU cores, at most 8)")
    r.add_argument("--overwrite", action="store_true", help="replace an earlier `pegan prepare` output in --out "
                   "(once the new one is complete); any other non-empty --out is refused")
    r.set_defaults(func=_prepare)

    e = sub.add_parser("experiments", help="list the released experiments")
    e.set_defaults(func=_experiments)
    return p


def _warning_line(show):
    """showwarning that prints pegan's own warnings as one line and leaves the others to ``show``."""
    def one_line(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PeganWarning):
            print(f"pegan: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return one_line


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _ArgumentError as e:
        print(f"{e.prog}: error: {e} (see {e.prog} --help)", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line(warnings.showwarning)
            return args.func(args)
    except PeganError as e:
        if os.environ.get("PEGAN_DEBUG"):
            raise
        print(f"pegan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pegan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
