"""Command line: ``pegan demo | convert | sample | mix | project | video | explore | train | prepare | evaluate |
experiments``.

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
from typing import Any, Callable, List, Optional


from pegan import checks
from pegan._extras import require_for_command
from pegan.errors import InputError, PeganError, PeganWarning


MAX_IMAGES = 4096     # images one `pegan sample` makes (its grid and --npy hold them all)
MAX_BATCH = 1024      # images per forward pass


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


def _argtype(parse: Callable[[str], Any], check: Callable[[Any], Any], expected: str):
    """An argparse type: ``check(parse(text))``, its ``InputError`` (or ``parse``'s ValueError:
    'expected {expected}') as argparse's one-line error."""
    def typed(text: str):
        try:
            return check(parse(text))
        except InputError as e:                  # (a ValueError: first)
            raise argparse.ArgumentTypeError(str(e)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return typed


def _count(minimum: int, maximum: Optional[int] = None):
    """An argparse type: a whole number of at least ``minimum`` (``checks.at_least``) and, where
    given, at most ``maximum`` (what a command can hold in memory: a bigger number allocated
    it all at once and ended in an out-of-memory traceback)."""
    def check(v: int) -> int:
        v = checks.at_least(v, minimum, "the value")
        if maximum is not None and v > maximum:
            raise InputError(f"the value must be at most {maximum}, got {v}")
        return v
    return _argtype(int, check, "a whole number")


def _number(lo: float, hi: float):
    """An argparse type: a finite number in [lo, hi] (``checks.number_in``)."""
    return _argtype(float, lambda v: checks.number_in(v, "the value", lo, hi), "a number")


# an argparse type: a finite number > 0
_positive = _argtype(float, lambda v: checks.number_in(v, "the value", 0, lo_open=True), "a number")
# an argparse type: a seed, a whole number in [0, 2**63 - 1]
_seed = _argtype(int, lambda v: checks.seed(v, "the seed"), "a whole number")


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

    checks.output_file(args.out, "--out", IMAGE_EXTS, overwrite=args.overwrite)
    if args.npy:
        checks.output_file(args.npy, "--npy", (".npy",), overwrite=args.overwrite)


def _sample(args) -> int:
    from pegan import api

    _check_outputs(args)
    t0 = time.time()
    if args.step is not None and not os.path.isdir(args.checkpoint):
        raise UserError("--step applies to a pegan checkpoint directory, not a .pth")
    loaded = api.load(args.checkpoint, which=args.which, experiment=args.experiment,
                      variant=args.variant, pkl=args.pkl, step=args.step, compute=compute_overrides(args))
    from pegan.loading import announce_compute

    announce_compute(loaded)
    if loaded.info.get("family") == "singan":
        return _sample_singan(args, loaded, t0)
    if args.recon or args.input or args.width_factor != 1.0:
        raise UserError("--recon, --input and --width-factor apply to SinGAN checkpoints")
    latent_tools = args.latent or args.mix_seed is not None or args.truncation_sweep
    if latent_tools:
        return _sample_latents(args, loaded, t0)
    if args.mix_layers:
        raise UserError("--mix-layers needs --mix-seed")
    scale = _scale_of(args, loaded.model)
    imgs = api.sample(loaded, args.num, scale, truncation=args.truncation, seed=args.seed,
                      batch=args.batch, noise=args.noise, max_side=args.max_side)
    return _save_samples(args, imgs, loaded, f"chosen scale {scale}, truncation {args.truncation}, "
                         f"seed {args.seed}", t0)


def _explore(args) -> int:
    from pegan.explore import serve

    return serve(args.checkpoints, args.host, args.port, args.cache, args.max_side, args.experiment,
                 args.variant, args.pkl)


def _scale_of(args, model, default=None):
    """The (s_h, s_w) of --chosen-scale / --size (one of them), else ``default`` (else 0)."""
    from pegan import api

    if args.size and args.chosen_scale is not None:
        raise UserError("give --chosen-scale or --size, not both")
    if args.chosen_scale is None and not args.size and default is not None:
        return api.resolve_scale(model, default, None, args.max_side)
    return api.resolve_scale(model, None if args.chosen_scale is None else _pair(args.chosen_scale, "--chosen-scale"),
                             _pair(args.size, "--size") if args.size else None, args.max_side)


def _sample_latents(args, loaded, t0) -> int:
    """``pegan sample`` with --latent, --mix-seed / --mix-layers or --truncation-sweep."""
    import numpy as np

    from pegan import latent as lt

    if args.noise != "random":
        raise UserError("--noise const does not combine with --latent, --mix-seed or --truncation-sweep")
    model = loaded.model
    file_scale = None
    if args.latent:
        file_scale = lt.load_latents(args.latent, model).scale
    scale = _scale_of(args, model, file_scale)
    sweep = lt.parse_values(args.truncation_sweep, "--truncation-sweep", -2.0, 2.0) if args.truncation_sweep else None
    if (args.mix_seed is None) != (not args.mix_layers):
        raise UserError("--mix-seed and --mix-layers go together (e.g. --mix-seed 5 --mix-layers 0-3)")
    layers = lt.parse_layers(args.mix_layers, model.num_latents) if args.mix_layers else None

    def make(psi):
        return lt.compose(loaded, scale, psi, args.seed, args.num, latent=args.latent, mix_seed=args.mix_seed,
                          layers=layers)

    if sweep is None:
        imgs = lt.render(loaded, make(args.truncation), args.batch)
        what = f"chosen scale {scale}, truncation {args.truncation}"
    else:
        per = [lt.render(loaded, make(psi), args.batch) for psi in sweep]     # [values][images]
        imgs = np.stack(per, axis=1).reshape((-1,) + per[0].shape[1:])        # row = image, column = psi
        args.ncol = len(sweep)
        what = f"chosen scale {scale}, one row per image, truncation {','.join(map(str, sweep))} across"
    what += f", {'latent ' + args.latent if args.latent else 'seed ' + str(args.seed)}"
    if layers is not None:
        what += f", styles {args.mix_layers} of seed {args.mix_seed}"
    return _save_samples(args, imgs, loaded, what, t0)


def _load_generator(args):
    """The checkpoint of a latent tool (a StyleGAN2 / MS-PIE generator), compute announced."""
    from pegan import api
    from pegan.loading import announce_compute

    if args.step is not None and not os.path.isdir(args.checkpoint):
        raise UserError("--step applies to a pegan checkpoint directory, not a .pth")
    loaded = api.load(args.checkpoint, which=args.which, experiment=args.experiment, variant=args.variant,
                      step=args.step)
    if loaded.info.get("family") == "singan":
        raise UserError(f"pegan {args.command} works on StyleGAN2 / MS-PIE generators; "
                        f"{args.checkpoint} is a PE-SinGAN checkpoint")
    announce_compute(loaded)
    return loaded


def _mix(args) -> int:
    """NVIDIA's style-mixing grid at any scale: column images on top, row images on the left,
    each cell the row's styles with the column's in --layers."""
    import numpy as np

    from pegan import latent as lt
    from pegan.imageio import IMAGE_EXTS, image_grid, save_png, to_uint8

    checks.output_file(args.out, "--out", IMAGE_EXTS, overwrite=args.overwrite)
    t0 = time.time()
    loaded = _load_generator(args)
    model = loaded.model
    scale = _scale_of(args, model)
    layers = lt.parse_layers(args.layers, model.num_latents)
    rows = lt.items(loaded, args.rows, "--rows", scale, args.truncation, args.seed)
    cols = lt.items(loaded, args.cols, "--cols", scale, args.truncation, args.seed)
    row_img, col_img = lt.render(loaded, rows, args.batch), lt.render(loaded, cols, args.batch)
    R, C = len(rows), len(cols)
    cells = lt.render(loaded, lt.mix(rows.take(np.repeat(np.arange(R), C)), cols.take(np.tile(np.arange(C), R)),
                                     layers), args.batch)
    if loaded.info.get("color_order") == "BGR":
        row_img, col_img, cells = row_img[..., ::-1], col_img[..., ::-1], cells[..., ::-1]
    tiles = [np.full(to_uint8(row_img[:1]).shape, 255, np.uint8)] + [to_uint8(col_img)]
    for r in range(R):
        tiles += [to_uint8(row_img[r:r + 1]), to_uint8(cells[r * C:(r + 1) * C])]
    path = save_png(args.out, image_grid(np.concatenate(tiles), ncol=C + 1))
    print(f"wrote {path}: {R} rows x {C} columns at {row_img.shape[1]}x{row_img.shape[2]} (chosen scale "
          f"{scale}), styles {args.layers} from the columns, in {time.time() - t0:.1f} s")
    return 0


def _project(args) -> int:
    """Project target images into the generator at any scale and aspect (pegan.project)."""
    from pathlib import Path

    from pegan import project as pj
    from pegan.imageio import read_image

    settings = pj.ProjectSettings(steps=args.steps, wplus=args.wplus, lr=args.lr, noise_reg=args.noise_reg,
                                  w_avg_samples=args.w_avg_samples, seed=args.seed,
                                  pixel_weight=args.pixel_weight).check()
    stems = [Path(t).stem for t in args.targets]
    if len(set(stems)) != len(stems):
        raise UserError("two targets have the same file name: each gets a folder <outdir>/<name>; rename one")
    images = [read_image(t) for t in args.targets]       # missing / unreadable: one line

    def earlier_projection(p):       # folders <name>/ of the files a projection writes, nothing else
        files = ("projected_w.npz", "target.png", "projected.png", "compare.png", "progress.mp4", "progress.gif")
        subs = list(p.iterdir())
        return bool(subs) and all(s.is_dir() and (s / "projected_w.npz").is_file()
                                  and not checks.foreign_entries(s, files) for s in subs)

    with checks.replacing_dir(args.outdir, "--outdir", "pegan project output", earlier_projection,
                              overwrite=args.overwrite) as out:
        return _project_into(args, out, images, stems, settings)


def _project_into(args, out, images, stems, settings) -> int:
    import numpy as np

    from pegan import latent as lt
    from pegan import project as pj
    from pegan.imageio import image_grid, save_png, to_uint8

    t0 = time.time()
    loaded = _load_generator(args)
    model = loaded.model
    vgg = None
    if args.vgg16 or os.environ.get("PEGAN_VGG16_WEIGHTS"):
        from pegan.eval.vgg import load_vgg16, perceptual

        vgg = perceptual(load_vgg16(args.vgg16)[1])
        print("distance: VGG16 perceptual (conv1_2 .. conv5_3, equal weights)"
              + (f" + {args.pixel_weight} x pixel MSE" if args.pixel_weight else ""))
    else:
        print("distance: pixel MSE only (no VGG16 weights: pass --vgg16 vgg16-397923af.pth or set "
              "PEGAN_VGG16_WEIGHTS for the perceptual distance)")
    init = lt.load_latents(args.init, model) if args.init else None
    if init is not None and len(init) != len(images):
        raise UserError(f"--init {args.init} holds {len(init)} latents for {len(images)} targets")
    if args.chosen_scale is not None or args.size:
        scales = [_scale_of(args, model)] * len(images)
    else:
        scales = [pj.default_scale(model, im.shape[:2], args.max_side) for im in images]
    groups = {}
    for i, sc in enumerate(scales):
        groups.setdefault(tuple(sc), []).append(i)
    from pegan.models.stylegan2 import image_size

    for sc, idx in groups.items():
        hw = image_size(model.out_size, sc)
        targets = np.stack([pj.prepare_target(images[i], hw) for i in idx])
        for i in idx:
            print(f"{args.targets[i]}: {images[i].shape[0]}x{images[i].shape[1]} px, centre-cropped and "
                  f"resized to {hw[0]}x{hw[1]} (chosen scale {sc})")
        bar = _progress_bar(settings.steps, f"projecting {len(idx)} at {hw[0]}x{hw[1]}")
        res = pj.project(loaded, targets, sc, settings, perceptual=vgg,
                         init=None if init is None else init.take(idx), progress=bar.update,
                         frame_every=args.video_every if args.save_video else 0)
        bar.close()
        for k, i in enumerate(idx):
            d = out / stems[i]
            lat = res.latents.take([k])
            lat.settings.update(target=os.path.basename(args.targets[i]), final_loss=res.losses[-1])
            lt.save_latents(d / "projected_w.npz", lat)
            tgt, img = to_uint8(res.targets[k]), to_uint8(res.images[k])
            save_png(d / "target.png", tgt)
            save_png(d / "projected.png", img)
            save_png(d / "compare.png", image_grid(np.stack([tgt, img]), ncol=2))
            if args.save_video:
                from pegan.video import write_video

                frames = np.stack([to_uint8(np.concatenate([res.targets[k], f[k]], axis=1)) for f in res.frames])
                write_video(d / "progress.mp4", frames, fps=args.fps)
            mse = float(np.mean((res.images[k] - res.targets[k]) ** 2))
            print(f"  {stems[i]}: loss {res.losses[0]:.4g} -> {res.losses[-1]:.4g}, pixel PSNR "
                  f"{10 * np.log10(4 / max(mse, 1e-12)):.2f} dB")
    print(f"wrote {args.outdir}/<name>/projected_w.npz, target.png, projected.png, compare.png for "
          f"{len(images)} target(s) in {time.time() - t0:.1f} s")
    return 0


class _NoBar:
    def update(self, *a):
        pass

    def close(self):
        pass


def _progress_bar(total: int, desc: str):
    """A tqdm bar showing the loss (``update(step, loss)``), or nothing without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, disable=not sys.stderr.isatty())

    class Bar:
        def update(self, step, loss):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")

        def close(self):
            bar.close()

    return Bar()


def _video(args) -> int:
    """``pegan video``: a keyframe interpolation or a scale / aspect sweep of a StyleGAN2 / MS-PIE
    checkpoint, or a random walk of a PE-SinGAN one (the family decides, as in ``sample``), as
    MP4 or GIF (``pegan.video``). The arguments, the output path and the latent files are checked
    before the model is loaded."""
    from pegan import video
    from pegan.latent import load_latents

    out = checks.output_file(args.out, "--out", video.VIDEO_EXTS, overwrite=args.overwrite)
    seeds = None if args.seeds is None else video.parse_seeds(args.seeds)
    files = None if args.latents is None else [p.strip() for p in args.latents.split(",") if p.strip()]
    if files == []:
        raise UserError("--latents names no file: give latent .npz files of pegan project, e.g. a.npz,b.npz")
    if seeds is not None and files is not None:
        raise UserError("give the keyframes as --seeds or as --latents, not both")
    ranges = {flag: video.parse_range(v, flag) for flag, v in (("--scale-sweep", args.scale_sweep),
              ("--scale-h", args.scale_h), ("--scale-w", args.scale_w)) if v is not None}
    lats = None if files is None else [load_latents(f) for f in files]     # missing or unreadable: now
    if args.step is not None and not os.path.isdir(args.checkpoint):
        raise UserError("--step applies to a pegan checkpoint directory, not a .pth")
    size = _pair(args.size, "--size") if args.size else None
    from pegan import api
    from pegan.loading import announce_compute

    t0 = time.time()
    loaded = api.load(args.checkpoint, which=args.which, experiment=args.experiment, variant=args.variant,
                      pkl=args.pkl, step=args.step, compute=compute_overrides(args))
    announce_compute(loaded)
    bgr = loaded.info.get("color_order") == "BGR"
    if loaded.info.get("family") == "singan":
        wrong = [flag for flag, v in (("--seeds", seeds), ("--latents", files), ("--chosen-scale", args.chosen_scale),
                                      ("--space", args.space), ("--hold", args.hold), ("--loop", args.loop))
                 if v] + list(ranges) + (["--truncation"] if args.truncation != 1.0 else [])
        if wrong:
            raise UserError(f"{', '.join(wrong)} apply to StyleGAN2 / MS-PIE checkpoints; a SinGAN video is a random "
                            "walk (--frames, --seed, --start-stage, --alpha, --size, --width-factor)")
        frames, stage = args.frames or 100, args.start_stage or 0
        alpha = 0.9 if args.alpha is None else args.alpha
        batches = video.iter_singan_walk(loaded, frames, seed=args.seed, start_stage=stage, alpha=alpha, size=size,
                                         width_factor=args.width_factor, batch=args.batch, max_side=args.max_side)
        stream = video.to_frames(batches, bgr)
        what = f"random walk of seed {args.seed}: stages >= {stage} with alpha {alpha}"
    else:
        wrong = [flag for flag, v in (("--start-stage", args.start_stage), ("--alpha", args.alpha)) if v is not None]
        if wrong or args.width_factor != 1.0:
            raise UserError(f"{', '.join(wrong or ['--width-factor'])} apply to PE-SinGAN checkpoints")
        if seeds is None and lats is None:
            raise UserError("give the keyframes: --seeds 1,2,3 or --latents a.npz,b.npz (from pegan project)")
        if size and args.chosen_scale is not None:
            raise UserError("give --chosen-scale or --size, not both")
        scale = api.resolve_scale(loaded.model, None if args.chosen_scale is None else
                                  _pair(args.chosen_scale, "--chosen-scale"), size, args.max_side)
        lats = None if files is None else [load_latents(f, loaded.model) for f in files]
        if ranges:
            wrong = [flag for flag, v in (("--frames", args.frames), ("--loop", args.loop), ("--space", args.space)) if v]
            if wrong:
                raise UserError(f"{', '.join(wrong)} apply to interpolations; a scale sweep takes one frame per "
                                "offset (--hold K repeats each)")
            if len(seeds or []) + sum(len(x) for x in lats or []) != 1:
                raise UserError("a scale sweep renders one latent: give one seed (--seeds 3) or one latent file of "
                                "one latent")
            offsets = video.sweep_offsets(ranges.get("--scale-sweep"), ranges.get("--scale-h"), ranges.get("--scale-w"),
                                          base=scale)
            frames = video.iter_scale_sweep(loaded, offsets, seed=seeds[0] if seeds else None,
                                            latents=lats[0] if lats else None, truncation=args.truncation,
                                            noise_seed=args.seed, hold=args.hold or 1, max_side=args.max_side)
            stream = video.on_canvas(video.to_frames(([f] for f in frames), bgr),
                                     video.sweep_canvas(loaded.model.out_size, offsets))
            what = (f"scale sweep {offsets[0][0]},{offsets[0][1]} -> {offsets[-1][0]},{offsets[-1][1]}: {len(offsets)} "
                    "sizes centred on the largest")
        else:
            if args.hold is not None:
                raise UserError("--hold applies to scale sweeps (--scale-sweep, --scale-h, --scale-w)")
            space = args.space or ("z" if seeds is not None else "w")
            if seeds is not None:
                keys = video.seed_keyframes(loaded, seeds, scale, args.truncation)
            else:
                keys = video.file_keyframes(loaded, lats, scale, args.truncation, noise_seed=args.seed)
            per = args.frames or 48
            batches = video.iter_interpolation(loaded, keys, per, loop=args.loop, space=space,
                                               truncation=args.truncation, batch=args.batch)
            stream = video.to_frames(batches, bgr)
            what = (f"{len(keys)} keyframes, {per} frames each, in {space}{', looping' if args.loop else ''}, "
                    f"chosen scale {scale}, truncation {args.truncation}")
    done = video.write_video(out, stream, args.fps, overwrite=args.overwrite)
    print(f"wrote {done.path}: {done.frames} frames of {done.size[0]}x{done.size[1]} at {args.fps:g} fps ({what}) "
          f"in {time.time() - t0:.1f} s")
    return 0


def compute_overrides(args) -> dict:
    """``--config.compute.FIELD=VALUE`` of ``sample`` / ``evaluate`` as {field: value}: these
    commands build the stored model, so only its compute section can be chosen."""
    out = {}
    for item in args.config_overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("compute.") or key.count(".") != 1:
            raise UserError(f"--config.{item}: {args.command} takes only --config.compute.FIELD=VALUE "
                            "(the rest of the config is the checkpoint's)")
        out[key.split(".", 1)[1]] = value
    return out


def _save_samples(args, imgs, loaded, what, t0):
    import numpy as np

    from pegan.imageio import image_grid, save_png, to_uint8

    if loaded.info.get("color_order") == "BGR":
        imgs = imgs[..., ::-1]
    path = save_png(args.out, image_grid(to_uint8(imgs), ncol=args.ncol, pad=args.pad))
    msg = f"wrote {path}"
    if args.npy:
        with checks.writing_file(args.npy) as tmp, open(tmp, "wb") as f:
            np.save(f, imgs)
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
    if args.start_stage and start is None and args.recon:
        raise UserError("--start-stage with --recon needs --input IMAGE (a reconstruction has no fresh noise)")
    size = _pair(args.size, "--size") if args.size else None
    imgs = api.singan_sample(loaded, args.num, seed=args.seed, mode="recon" if args.recon else "rand",
                             size=size, width_factor=args.width_factor, start_image=start,
                             start_stage=args.start_stage, batch=args.batch, max_side=args.max_side)
    what = "reconstruction" if args.recon else f"random, seed {args.seed}"
    if start is not None:
        what += f", from {args.input} at stage {args.start_stage}"
    elif args.start_stage:
        what += f", stored noise below stage {args.start_stage}"
    return _save_samples(args, imgs, loaded, what, t0)


# Flags kept as aliases of config fields: dest -> (family or None for both, field, value or None for
# the flag's own). The config is the one place a setting lives; a flag only writes it.
ALIASES = {
    "seed": (None, "train.seed", None),
    "data": ("stylegan2", "data.path", None),
    "steps": ("stylegan2", "train.total_iters", None),
    "checkpoint_every": ("stylegan2", "train.checkpoint_every", None),
    "batch_gpu": ("stylegan2", "train.batch_gpu", None),
    "init_from": ("stylegan2", "train.init_from", None),
    "augment": ("stylegan2", "train.augment", None),
    "freeze_d": ("stylegan2", "train.freeze_d", None),
    "sample_every": ("stylegan2", "train.sample_every", None),
    "log_every": ("stylegan2", "train.log_every", None),
    "no_tensorboard": ("stylegan2", "train.tensorboard", False),
    "skip_bad_images": ("stylegan2", "data.on_error", "skip"),
    "eval": ("stylegan2", "eval.metrics", None),
    "eval_every": ("stylegan2", "eval.every", None),
    "eval_real": ("stylegan2", "eval.real", None),
    "eval_batch": ("stylegan2", "eval.batch", None),
    "inception": ("stylegan2", "eval.inception", None),
    "vgg16": ("stylegan2", "eval.vgg16", None),
    "image": ("singan", "data.image", None),
    "max_size": ("singan", "data.max_size", None),
    "iters": ("singan", "train.iters_per_scale", None),
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def train_config(args):
    """The run's config: the experiment (``--config`` or its aliases), then the alias flags, then
    the ``--config.KEY=VALUE`` overrides (``--set`` is one of those); a field given by both an
    alias and an override is refused, so no setting is silently replaced."""
    from pegan.configs import apply_overrides, load_experiment

    given = [n for n in (args.config, args.experiment_file, args.experiment) if n]
    if not given:
        raise UserError("name the experiment: pegan train --config experiments/<name>.py --workdir DIR")
    if len(set(given)) > 1:
        raise UserError(f"the experiment is named twice ({', '.join(given)}): give one --config")
    cfg = load_experiment(given[0], args.variant)
    set_by = {}
    for dest, (family, key, value) in ALIASES.items():
        got = getattr(args, dest, None)
        if got is None or got is False:
            continue
        if family is not None and family != cfg.family:
            raise UserError(f"{_flag(dest)} applies to {family} experiments; {cfg.name} is a {cfg.family} experiment")
        sec, field = key.split(".")
        cfg[sec][field] = got if value is None else value
        set_by[key] = _flag(dest)
    pairs = list(args.config_overrides or []) + list(args.set or [])
    for item in pairs:
        key = item.split("=", 1)[0]
        if key in set_by:
            raise UserError(f"{key} is given twice, by {set_by[key]} and by --config.{key}: give one")
    return apply_overrides(cfg, pairs)


def _train(args) -> int:
    from pegan import checkpoint as ckpt

    workdir = args.workdir or args.out
    if not workdir:
        raise UserError("pass --workdir DIR (the run's checkpoint directory)")
    cfg = train_config(args)
    ckpt.check_run_dir(workdir, "--workdir")
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        _init_distributed(args)
    from pegan import compute

    resolved = compute.resolve(cfg)     # an unknown value is refused here, before anything runs
    compute.apply_process_settings(resolved)    # matmul precision, compile cache: before tracing
    if cfg.family == "singan":
        return _train_singan(args, cfg, workdir, resolved)
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


def _train_singan(args, cfg, workdir, resolved) -> int:
    from pegan import compute
    from pegan.demo import _progress_factory
    from pegan.imageio import read_image
    from pegan.train import singan as ts

    ts.check_config(cfg)
    if cfg.data.image is None:
        raise UserError("a SinGAN trains on one image: set --config.data.image=FILE (the experiment's docstring "
                        "names the image the reference used)")
    image = read_image(cfg.data.image)
    print(compute.describe(compute.compute_section(cfg), resolved))
    t0 = time.time()
    import signal

    from pegan import checkpoint as ckpt

    # SIGTERM (a scheduler's stop) and Ctrl-C stop the run at the next iteration: raised from the
    # signal handler, the KeyboardInterrupt could land inside a checkpoint's save, where the
    # storage library took it and the run went on. A second signal stops it at once.
    requested = []

    def stop(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)

    def checked():
        if requested:
            raise KeyboardInterrupt

    class Stoppable:                   # a stage's progress bar that checks for a stop at each iteration
        def __init__(self, bar):
            self.bar = bar

        def update(self, n=1):
            checked()
            self.bar.update(n)

        def close(self):
            self.bar.close()

    make_bar = _progress_factory(cfg.name)

    def bars(stage, size, total):
        checked()                      # between stages: before the next one compiles
        return Stoppable(make_bar(stage, size, total))

    previous = signal.signal(signal.SIGTERM, stop), signal.signal(signal.SIGINT, stop)
    try:
        ts.run(cfg, image, workdir, progress_factory=bars, image_name=os.path.basename(cfg.data.image),
               step=args.step)
    except KeyboardInterrupt:
        done = ckpt.latest_step(workdir) if ckpt.is_checkpoint_dir(workdir) else None
        kept = (f"stages 0-{done - 1} are saved (step {done}); the same command resumes at stage {done}"
                if done else "no stage was finished yet")
        print(f"pegan train: stopped before the stage in progress finished; {kept}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    print(f"trained {cfg.name} into {workdir} in {time.time() - t0:.0f} s; sample with "
          f"`pegan sample {workdir} --num 8 --width-factor 2`")
    return 0


def _train_stylegan2(args, cfg, workdir) -> int:
    import jax
    from tqdm import tqdm

    from pegan import compute
    from pegan.data import PreparedImages, open_data
    from pegan.train.stylegan2_loop import Trainer, check_config

    check_config(cfg, jax.device_count())
    if not cfg.data.path:
        raise UserError("set the training images: --config.data.path=PATH (a `pegan prepare` dataset, or a "
                        "folder of images)")
    stored = max(cfg.generator.out_size // 4 * (4 + s) for s in cfg.scales)
    data = open_data(cfg.data.path, stored, on_error=cfg.data.on_error, hflip=cfg.data.hflip)
    if isinstance(data, PreparedImages):
        print(f"data: {len(data)} images of {data.size} px prepared in {data.path}"
              + (f" (host {data.process_index} of {data.process_count})" if data.process_count > 1 else ""))
    elif data.skipped:
        print(f"skipped {len(data.skipped)} unreadable images (first: {data.skipped[0]})")
    evaluator = None
    ev = cfg.eval
    if ev.metrics:
        from pegan.eval.evaluate import Protocol, make_evaluator

        real = ev.real or cfg.data.path
        is_stats = str(real).endswith((".npz", ".pkl"))
        evaluator = make_evaluator(ev.metrics, real=None if is_stats else real, real_stats=real if is_stats else None,
                                   inception=ev.inception, vgg16=ev.vgg16, batch=ev.batch,
                                   protocol=Protocol(fid_method="eigh"), log=lambda m: tqdm.write(m))
    from pegan.train.writers import create_writers

    lead = jax.process_index() == 0
    trainer = Trainer(cfg, data, workdir, log=tqdm.write, step=args.step)
    # the writers once the run is accepted (a refused resume leaves no new event file behind)
    writer = trainer.writer = create_writers(workdir, tensorboard=cfg.train.tensorboard, log=tqdm.write)
    n = trainer.mesh.devices.size
    if lead:
        print(f"{cfg.name}: {n} device(s) ({jax.devices()[0].platform}), statistics {trainer.statistics}, "
              f"batch per scale {[(s, trainer.schedule_batch(s)) for s in cfg.scales]}, "
              f"{cfg.train.total_iters} steps")
        print(compute.describe(compute.compute_section(cfg), trainer.compute))
    bar = tqdm(total=cfg.train.total_iters, initial=trainer.step, unit="step", dynamic_ncols=True,
               disable=not lead)
    t0 = time.time()
    kimg = [0.0]

    def progress(m):             # the losses come at the steps that fetch them (log steps)
        kimg[0] += m["batch"] / 1000
        bar.update(1)
        if "d_loss" in m:
            shown = dict(scale=m["scale"], D=f"{m['d_loss']:.3f}", G=f"{m['g_loss']:.3f}",
                         R1=f"{m['r1_penalty']:.2e}", PL=f"{m['pl_penalty']:.2e}")
            if "ada_p" in m:
                shown.update(p=f"{m['ada_p']:.3f}", rt=f"{m['ada_rt']:.2f}")
            bar.set_postfix(**shown)

    try:
        trainer.run(progress=progress, evaluator=evaluator)     # lengths and intervals: the config's
    finally:
        bar.close()             # before an error line, so that the error is the last line
    path = trainer.write_samples()
    writer.close()
    if not lead:
        return 0
    secs = time.time() - t0
    from pegan.train.stylegan2_loop import _shape_name

    def programs(sb):
        n = sum(k[:2] == sb for k in trainer.compile_seconds)
        return f" ({n} programs)" if n > 1 else ""

    comp = ", ".join(f"{_shape_name(*sb, None)}: {c:.0f} s{programs(sb)}"
                     for sb, c in trainer.compile_wall_seconds.items())
    print(f"step {trainer.step} in {workdir} ({secs:.0f} s, {secs / max(kimg[0], 1e-9):.0f} s/kimg; "
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
    # a file named by --out: a .json, replaced only with --overwrite; the default is pegan's own name
    checks.output_file(out, "--out", (".json",), overwrite=args.overwrite if args.out else None)
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
        cache_dir=args.cache_dir, experiment=args.experiment, step=args.step, max_side=args.max_side,
        compute=compute_overrides(args))
    report["seconds"] = round(time.time() - t0, 1)
    report["written_by"] = "pegan evaluate"         # a later evaluate may replace this file (checks.output_file)
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
        elif "kid" in r:
            print(f"{name}: KID {r['kid']:.6f} (std over {r['kid_subsets']} subsets of {r['kid_subset_size']}: "
                  f"{r['kid_std']:.6f}); {r['num_fakes']} fakes, {r['num_reals']} reals of {r['real']}")
        else:
            print(f"{name}: precision {r['precision']:.4f}, recall {r['recall']:.4f}; "
                  f"{r['num_fakes']} fakes, {r['num_reals']} reals of {r['real']}")
    with checks.writing_file(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} in {report['seconds']:.0f} s")
    return 0


def _experiments(args) -> int:
    from pegan.configs import experiment_names, load_experiment
    from pegan.configs.release import entry

    for name in experiment_names():
        c, e = load_experiment(name), entry(name)
        if c.family == "stylegan2":
            f = c.generator.out_size // 4
            what = f"px {','.join(str((4 + s) * f) for s in c.scales):14s}"
            if e is not None:
                what += f" FID50k {e['fid50k']:.2f}"
            paper = e["paper"] if e else "(not released)"
        else:
            pe = c.generator.positional_encoding
            kind = ("no PE, interp-pad" if pe is None else
                    f"{pe.type}" + (f" dim {pe.embedding_dim}" if pe.type == "SPE" else ""))
            what = (f"{e['image']} " if e else "") + f"({c.generator.num_scales + 1} stages), {kind}"
            paper = "PE-SinGAN" if e else "(not released)"
        print(f"{name:60s} {paper:16s} {what}")
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
    d.add_argument("--seed", type=_seed, default=0)
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

    s = sub.add_parser("sample", help="sample a grid of images from a checkpoint directory or a .pth",
                       description="--config.compute.FIELD=VALUE chooses how the stored model computes "
                       "(e.g. --config.compute.conv_impl=xla; see pegan/compute.py).")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out / --npy file")
    s.add_argument("checkpoint", help="pegan checkpoint directory (or a reference .pth)")
    s.add_argument("--chosen-scale", help="scale offset S or SH,SW (out_size 256: 0 -> 256 px, 2 -> 384, "
                   "4 -> 512, 12 -> 1024); default 0")
    s.add_argument("--size", help="image size H,W in pixels instead (must map to whole offsets)")
    s.add_argument("--max-side", type=_count(1), default=checks.MAX_SIDE,
                   help=f"refuse images with a side over this many px (default {checks.MAX_SIDE})")
    s.add_argument("--num", type=_count(1, MAX_IMAGES), default=16)
    s.add_argument("--truncation", type=_number(-2.0, 2.0), default=1.0)
    s.add_argument("--truncation-sweep", help="comma list of truncation values: one row per image, one column "
                   "per value (e.g. 0,0.25,0.5,0.75,1)")
    s.add_argument("--latent", help="a latent .npz (pegan project) to render instead of --seed: its w / W+, "
                   "its noise at its scale (the default scale), else noise from --seed")
    s.add_argument("--mix-seed", type=int, help="style mixing: take the styles --mix-layers from this seed's "
                   "images (image i from image i)")
    s.add_argument("--mix-layers", help="style indices A-B or A,B,C for --mix-seed (0: the coarsest)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--batch", type=_count(1, MAX_BATCH), default=4, help="images per forward pass")
    s.add_argument("--which", default="ema", choices=["ema", "orig"], help="EMA or raw generator")
    s.add_argument("--noise", default="random", choices=["random", "const"],
                   help="per-layer noise drawn from the seed, or the stored noise (scale 0 only)")
    s.add_argument("--step", type=int, default=None, help="checkpoint step to read (default: the latest)")
    s.add_argument("--ncol", type=_count(1), default=None, help="grid columns")
    s.add_argument("--pad", type=_count(0), default=2, help="white pixels around and between the grid's images "
                   "(default 2; 0 with --num 1: the image alone, as pegan explore shows it)")
    s.add_argument("--out", default="out/samples.png", help="the image file to write (.png, .jpg, .jpeg, "
                   ".bmp or .webp; default out/samples.png)")
    s.add_argument("--npy", help="also save the raw float32 images here (.npy)")
    s.add_argument("--experiment", help="for a .pth: the experiment, if not recognised")
    s.add_argument("--variant", choices=["full", "tiny"], default=None)
    s.add_argument("--pkl", help="SinGAN .pth: its .pkl (default: next to the .pth)")
    s.add_argument("--width-factor", type=_positive, default=1.0, help="SinGAN: output width x F")
    s.add_argument("--recon", action="store_true", help="SinGAN: reconstruct the training image")
    s.add_argument("--input", help="SinGAN: start from this image (editing / harmonisation)")
    s.add_argument("--start-stage", type=_count(0), default=0, help="SinGAN: the stage --input enters at; "
                   "without --input, the stages below it keep the stored (reconstruction) noise")
    s.set_defaults(func=_sample)

    def generator_args(q):
        q.add_argument("checkpoint", help="pegan checkpoint directory (or a reference .pth) of a StyleGAN2 / MS-PIE "
                       "generator")
        q.add_argument("--chosen-scale", help="scale offset S or SH,SW (default: 0)")
        q.add_argument("--size", help="image size H,W in pixels instead")
        q.add_argument("--max-side", type=_count(1), default=checks.MAX_SIDE,
                       help=f"refuse images with a side over this many px (default {checks.MAX_SIDE})")
        q.add_argument("--which", default="ema", choices=["ema", "orig"], help="EMA or raw generator")
        q.add_argument("--step", type=int, default=None, help="checkpoint step to read (default: the latest)")
        q.add_argument("--experiment", help="for a .pth: the experiment, if not recognised")
        q.add_argument("--variant", choices=["full", "tiny"], default=None)
        q.add_argument("--batch", type=_count(1, MAX_BATCH), default=4, help="images per forward pass")

    m = sub.add_parser("mix", help="style-mixing grid at any scale: rows x columns of seeds or projected latents")
    m.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    generator_args(m)
    m.add_argument("--rows", required=True, help="seeds and/or latent .npz files, comma-separated")
    m.add_argument("--cols", required=True, help="seeds and/or latent .npz files, comma-separated")
    m.add_argument("--layers", default="0-6", help="styles the columns give, A-B or A,B,C (default 0-6, "
                   "NVIDIA's coarse styles)")
    m.add_argument("--truncation", type=_number(-2.0, 2.0), default=1.0)
    m.add_argument("--seed", type=_seed, default=0, help="noise for latent files at another scale than theirs")
    m.add_argument("--out", default="out/mix.png", help="the image file to write (default out/mix.png)")
    m.set_defaults(func=_mix)

    j = sub.add_parser("project", help="project images into a generator at any scale and aspect (w or W+)")
    generator_args(j)
    j.add_argument("targets", nargs="+", help="target images (each centre-cropped and resized to the scale)")
    j.add_argument("--outdir", required=True, help="new folder: <outdir>/<target name>/projected_w.npz, "
                   "target.png, projected.png, compare.png")
    j.add_argument("--wplus", action="store_true", help="one style per layer (W+) instead of one w")
    j.add_argument("--steps", type=_count(1, 10**6), default=1000, help="optimisation steps (default 1000, NVIDIA's)")
    j.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default 0.1)")
    j.add_argument("--noise-reg", type=float, default=1e5, help="noise regularisation weight (default 1e5)")
    j.add_argument("--pixel-weight", type=float, default=0.0,
                   help="weight of the pixel MSE beside the VGG16 distance (default 0; 1 without VGG16)")
    j.add_argument("--w-avg-samples", type=_count(1, 10**5), default=10000, help="z samples for w_avg / w_std")
    j.add_argument("--seed", type=_seed, default=0)
    j.add_argument("--vgg16", help="torchvision vgg16-397923af.pth (or $PEGAN_VGG16_WEIGHTS); without: pixels only")
    j.add_argument("--init", help="start from a projected_w.npz (one latent per target; the schedule restarts)")
    j.add_argument("--save-video", action="store_true", help="also write progress.mp4 (target | projection)")
    j.add_argument("--video-every", type=_count(1), default=10, help="steps per progress-video frame")
    j.add_argument("--fps", type=_number(*checks.FPS_RANGE), default=30, help="frames per second of progress.mp4")
    j.add_argument("--overwrite", action="store_true", help="replace an earlier pegan project output in --outdir")
    j.set_defaults(func=_project)

    v = sub.add_parser("video", help="MP4 / GIF: interpolation or scale sweep (StyleGAN2 / MS-PIE), random walk "
                       "(PE-SinGAN)", description="StyleGAN2 / MS-PIE: an interpolation between --seeds or --latents, "
                       "or, with --scale-sweep / --scale-h / --scale-w, one latent at every scale offset from A to B. "
                       "PE-SinGAN: a random walk of the noise. See README 'Videos'.")
    v.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    v.add_argument("checkpoint", help="pegan checkpoint directory (or a reference .pth)")
    v.add_argument("--out", default="out/video.mp4", help="the video to write: .mp4 (H.264; needs the 'video' extra, "
                   "else a .gif is written beside it) or .gif (default out/video.mp4)")
    v.add_argument("--fps", type=_number(*checks.FPS_RANGE), default=24.0, help="frames per second (default 24)")
    v.add_argument("--seeds", help="keyframe seeds, e.g. 1,2,3 (seed s is `pegan sample --seed s --num 1`)")
    v.add_argument("--latents", help="keyframe latent files of pegan project, e.g. a.npz,b.npz (every row in order)")
    v.add_argument("--space", choices=["z", "w"], default=None, help="interpolate by slerp in z (seeds only; "
                   "the default for seeds) or by lerp in w (the default for latent files)")
    v.add_argument("--frames", type=_count(1, 10**5), default=None, help="frames per keyframe pair (default 48: 2 s at "
                   "24 fps); SinGAN: frames of the walk (default 100)")
    v.add_argument("--loop", action="store_true", help="run back to the first keyframe (no repeated last frame)")
    v.add_argument("--truncation", type=_number(-2.0, 2.0), default=1.0)
    v.add_argument("--chosen-scale", help="scale offset S or SH,SW of every frame (a sweep: of the axis that does "
                   "not walk); default 0")
    v.add_argument("--size", help="frame size H,W in pixels instead (SinGAN: the output size)")
    v.add_argument("--max-side", type=_count(1), default=checks.MAX_SIDE,
                   help=f"refuse frames with a side over this many px (default {checks.MAX_SIDE})")
    v.add_argument("--scale-sweep", metavar="A:B", help="sweep both scale offsets from A to B, one frame per step "
                   "(negative: --scale-sweep=-2:2)")
    v.add_argument("--scale-h", metavar="A:B", help="sweep the height offset from A to B")
    v.add_argument("--scale-w", metavar="C:D", help="sweep the width offset from C to D")
    v.add_argument("--hold", type=_count(1), default=None, help="sweep: repeat each frame K times (default 1)")
    v.add_argument("--batch", type=_count(1, MAX_BATCH), default=4, help="frames per forward pass (default 4)")
    v.add_argument("--seed", type=_seed, default=0, help="SinGAN: the walk's seed; latent files at another scale: "
                   "file i's noise comes from seed + i (default 0)")
    v.add_argument("--start-stage", type=_count(0), default=None, help="SinGAN: the first stage whose noise walks; "
                   "the coarser ones keep the reconstruction noise (default 0)")
    v.add_argument("--alpha", type=float, default=None, help="SinGAN: z_t = alpha z_{t-1} + sqrt(1 - alpha^2) r_t, "
                   "in [0, 1]; higher is slower (default 0.9)")
    v.add_argument("--width-factor", type=_positive, default=1.0, help="SinGAN: output width x F")
    v.add_argument("--which", default="ema", choices=["ema", "orig"], help="EMA or raw generator")
    v.add_argument("--step", type=int, default=None, help="checkpoint step to read (default: the latest)")
    v.add_argument("--experiment", help="for a .pth: the experiment, if not recognised")
    v.add_argument("--variant", choices=["full", "tiny"], default=None)
    v.add_argument("--pkl", help="SinGAN .pth: its .pkl (default: next to the .pth)")
    v.set_defaults(func=_video)

    t = sub.add_parser("train", help="train an experiment: StyleGAN2 / MS-PIE on an image folder, "
                       "or a PE-SinGAN on one image", description="Every setting is a field of the experiment's "
                       "config: --config.SECTION.FIELD=VALUE sets one (typed; see pegan/configs/base.py). The "
                       "other options below --step are aliases of config fields.")
    t.add_argument("--config", metavar="FILE[:tiny]", help="the experiment: experiments/<name>.py (':tiny' for the "
                   "tiny variant), or an experiment name")
    t.add_argument("--workdir", help="run directory: new, empty, or a pegan run (resumed if it holds this "
                   "run); a folder holding anything else is refused")
    t.add_argument("--step", type=int, default=None, help="resume from this step of WORKDIR instead of the latest; "
                   "the later steps are moved aside into WORKDIR/superseded/<step> (kept, not deleted)")
    t.add_argument("--distributed", action="store_true", help="multi-host: call jax.distributed.initialize() "
                   "first (TPU pods and SLURM are detected; elsewhere give --coordinator, --num-processes and "
                   "--process-id, or JAX's JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID)")
    t.add_argument("--coordinator", help="multi-host: HOST:PORT of process 0")
    t.add_argument("--num-processes", type=_count(1), help="multi-host: number of processes")
    t.add_argument("--process-id", type=_count(0), help="multi-host: this process's index")
    a = t.add_argument_group("aliases", "older spellings; each sets the config field named")
    a.add_argument("experiment_file", nargs="?", help="= --config")
    a.add_argument("--experiment", help="= --config")
    a.add_argument("--variant", choices=["full", "tiny"], default=None, help="= the :tiny suffix of --config")
    a.add_argument("--set", action="append", metavar="KEY=VALUE", help="= --config.KEY=VALUE")
    a.add_argument("--out", help=argparse.SUPPRESS)
    a.add_argument("--seed", type=_seed, default=None, help="train.seed")
    a.add_argument("--data", help="StyleGAN2: data.path")
    a.add_argument("--steps", type=_count(1), help="StyleGAN2: train.total_iters")
    a.add_argument("--checkpoint-every", type=_count(0), help="StyleGAN2: train.checkpoint_every")
    a.add_argument("--batch-gpu", type=_count(1), help="StyleGAN2: train.batch_gpu (images per device per pass: "
                   "gradient accumulation, as NVIDIA's --batch-gpu)")
    a.add_argument("--init-from", metavar="CKPT", help="StyleGAN2: train.init_from (fine-tune: start from a converted "
                   "release, a pegan run or a reference .pth; optimiser states, step and data position start fresh)")
    a.add_argument("--augment", metavar="MODE", help="StyleGAN2: train.augment (none | ada | fixed:P)")
    a.add_argument("--freeze-d", type=_count(0), metavar="K", help="StyleGAN2: train.freeze_d (FreezeD: K input-side "
                   "discriminator blocks keep their weights)")
    a.add_argument("--sample-every", type=_count(0), help="StyleGAN2: train.sample_every")
    a.add_argument("--log-every", type=_count(1), help="StyleGAN2: train.log_every")
    a.add_argument("--no-tensorboard", action="store_true", help="StyleGAN2: train.tensorboard=false")
    a.add_argument("--skip-bad-images", action="store_true", help="StyleGAN2: data.on_error=skip")
    a.add_argument("--eval", metavar="METRICS", help="StyleGAN2: eval.metrics, e.g. fid10k or fid10k,pr1k")
    a.add_argument("--eval-every", type=_count(0), help="StyleGAN2: eval.every")
    a.add_argument("--eval-real", help="StyleGAN2: eval.real")
    a.add_argument("--eval-batch", type=_count(1), help="StyleGAN2: eval.batch")
    a.add_argument("--inception", help="StyleGAN2: eval.inception")
    a.add_argument("--vgg16", help="StyleGAN2: eval.vgg16")
    a.add_argument("--image", help="SinGAN: data.image")
    a.add_argument("--max-size", type=_count(1), default=None, help="SinGAN: data.max_size")
    a.add_argument("--iters", type=_count(1), default=None, help="SinGAN: train.iters_per_scale")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="FID / precision-recall of a checkpoint at any scale (writes JSON)",
                       description="--config.compute.FIELD=VALUE chooses how the stored model computes "
                       "(e.g. --config.compute.conv_impl=xla; see pegan/compute.py).")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    e.add_argument("checkpoint", help="pegan checkpoint directory (or a reference .pth)")
    e.add_argument("--metrics", default="fid50k,pr10k", help="comma list of fid<N> / pr<N> / kid<N> (default fid50k,pr10k)")
    e.add_argument("--chosen-scale", help="scale offset S or SH,SW (4 -> 512 px for out_size 256); default: the "
                   "experiment's eval.scale, else its largest trained scale (where the paper reports)")
    e.add_argument("--size", help="image size H,W in pixels instead")
    e.add_argument("--max-side", type=_count(1), default=checks.MAX_SIDE,
                   help=f"refuse images with a side over this many px (default {checks.MAX_SIDE})")
    e.add_argument("--real", help="real images: a `pegan prepare` dataset or an image folder (the first N, in "
                   "order); a .npz/.pkl here is taken as --real-stats")
    e.add_argument("--real-stats", help="FID statistics of the reals: a pegan .npz or mmgen's inception .pkl")
    e.add_argument("--inception", help="pt_inception-2015-12-05-6726825d.pth (or $PEGAN_INCEPTION_WEIGHTS)")
    e.add_argument("--vgg16", help="torchvision vgg16-397923af.pth (or $PEGAN_VGG16_WEIGHTS)")
    e.add_argument("--batch", type=_count(1, MAX_BATCH), default=16, help="images per step over all local devices (default 16)")
    e.add_argument("--seed", type=_seed, default=0, help="seed of the fakes")
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

    x = sub.add_parser("explore", help="a local web page: drag the canvas size, seeds, truncation, mixing "
                       "of checkpoints (StyleGAN2 / MS-PIE / PE-SinGAN)")
    x.add_argument("checkpoints", nargs="+", help="pegan checkpoint directories or reference .pth files (only "
                   "these are served)")
    x.add_argument("--port", type=_count(0), default=8000, help="TCP port (default 8000; 0: any free one)")
    x.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine "
                   "only; any other needs the printed token: prefer an SSH tunnel)")
    x.add_argument("--cache", type=_count(1), default=4, help="compiled programs kept (one per output size; "
                   "default 4)")
    x.add_argument("--max-side", type=_count(16), default=checks.MAX_SIDE,
                   help=f"the largest image side served (px, default {checks.MAX_SIDE})")
    x.add_argument("--experiment", help="for a .pth: the experiment, if not recognised")
    x.add_argument("--variant", choices=["full", "tiny"], default=None)
    x.add_argument("--pkl", help="SinGAN .pth: its .pkl (default: next to the .pth)")
    x.set_defaults(func=_explore)

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


def split_config_overrides(argv: List[str]):
    """(the other arguments, ['KEY=VALUE', ...]) from ``--config.KEY=VALUE`` and
    ``--config.KEY VALUE`` (ml_collections' config_flags spelling)."""
    rest, pairs, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--config."):
            key, sep, value = a[len("--config."):].partition("=")
            if not sep:
                if i + 1 >= len(argv):
                    raise _ArgumentError("pegan", f"{a} needs a value: {a}=VALUE")
                value, i = argv[i + 1], i + 1
            if not key:
                raise _ArgumentError("pegan", f"{a}: name a field, e.g. --config.train.batch=8")
            pairs.append(f"{key}={value}")
        else:
            rest.append(a)
        i += 1
    return rest, pairs


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv, pairs = split_config_overrides(argv)
        args = build_parser().parse_args(argv)
        if pairs and args.command not in ("train", "sample", "evaluate"):
            raise _ArgumentError(f"pegan {args.command}", "--config.KEY=VALUE applies to train, sample and evaluate")
        args.config_overrides = pairs
    except _ArgumentError as e:
        print(f"{e.prog}: error: {e} (see {e.prog} --help)", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line(warnings.showwarning)
            # Pillow warns of a large image as it opens it; pegan refuses one past its own limit
            # (pegan.imageio.MAX_READ_PIXELS, Pillow's warning threshold) in one line instead
            warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
            require_for_command(args.command)
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
