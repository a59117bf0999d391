"""The StyleGAN2 / MS-PIE training loop: scales, data, checkpoints, resume, samples.

* Scale of step k: a deterministic function of (seed, k), known before the batch is built and
  the same on every host. Default: uniform over ``cfg.scales`` (what the reference really does,
  REFERENCE §1.3); ``train.scale_sampling = 'configured'`` uses ``train.scale_probs``.
* Per-scale batch: ``train.batch_per_scale`` ({scale: batch}) overrides ``train.batch`` (the
  batch of one step on this machine). One compiled step per (scale, batch).
* Data: ``ImageFolder`` keeps a folder's images in memory at the stored size, and
  ``pegan.data.PreparedImages`` reads a ``pegan prepare`` dataset (same contract, per-host rows,
  prefetch of the batches the schedule names next); the images of step k come from a permutation
  fixed by (seed, epoch) and a flip fixed by (seed, k), so the data position is the step counter
  and a resumed run sees exactly what a straight run sees.
* Checkpoints: ``pegan.checkpoint`` layout, items generator_ema / generator / discriminator
  (what ``pegan sample`` reads) and train_state (everything for an exact resume). SIGTERM and
  Ctrl-C save and exit cleanly.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from pegan import checkpoint as ckpt
from pegan.models.stylegan2 import build_discriminator, build_generator, compute_mean_latent, image_size
from pegan.train import stylegan2 as tr

__all__ = ["ImageFolder", "choose_scale", "batch_for_scale", "Trainer"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class ImageFolder:
    """All images of a folder, resized (Lanczos) to ``size`` x ``size``, as float32 in [-1, 1]."""

    def __init__(self, folder, size: int, on_error: str = "raise"):
        from PIL import Image, UnidentifiedImageError

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"data folder {folder} does not exist")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) under {folder}")
        imgs, self.skipped = [], []
        for p in files:
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    if im.size != (size, size):
                        im = im.resize((size, size), Image.LANCZOS)
                    imgs.append(np.asarray(im))
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                if on_error != "skip":
                    raise ValueError(f"cannot read image {p}: {e}; remove it or pass on_error='skip'") from None
                self.skipped.append(str(p))
        if not imgs:
            raise ValueError(f"no readable image under {folder}")
        self.images = (np.stack(imgs).astype(np.float32) / 127.5 - 1.0)
        self.size = size

    def __len__(self):
        return len(self.images)

    def batch(self, seed: int, step: int, batch: int, offset: int) -> np.ndarray:
        """The images of a step: positions ``offset .. offset + batch`` of the epoch stream."""
        n = len(self.images)
        out = []
        for pos in range(offset, offset + batch):
            epoch, i = divmod(pos, n)
            perm = np.random.default_rng([seed, 1, epoch]).permutation(n)
            out.append(self.images[perm[i]])
        x = np.stack(out)
        flip = np.random.default_rng([seed, 2, step]).random(batch) < 0.5
        x[flip] = x[flip, :, ::-1]
        return x


def choose_scale(seed: int, step: int, scales, probs=None) -> int:
    rng = np.random.default_rng([seed, 3, step])
    return int(scales[rng.choice(len(scales), p=probs)])


def batch_for_scale(tcfg, scale: int) -> int:
    per = tcfg.get("batch_per_scale", None)
    if per:
        per = dict(per)
        if str(scale) in per:
            return int(per[str(scale)])
        if scale in per:
            return int(per[scale])
    return int(tcfg.batch)


class Trainer:
    def __init__(self, cfg, data: ImageFolder, workdir, seed: int = 0, log: Callable[[str], None] = print):
        self.cfg, self.data, self.workdir, self.seed, self.log = cfg, data, Path(workdir), seed, log
        self.G, self.D = build_generator(cfg), build_discriminator(cfg)
        self.tcfg = cfg.train
        self.offset = 0
        self.compile_seconds: Dict[tuple, float] = {}
        self._fns: Dict[tuple, Callable] = {}
        self.state = tr.init_state(self.G, self.D, self.tcfg, jax.random.PRNGKey(seed))
        self._stop = False
        if ckpt.is_checkpoint_dir(self.workdir) and ckpt.steps(self.workdir):
            self._restore()

    # -- steps ---------------------------------------------------------------------------
    def _step_fn(self, scale: int, batch: int):
        key = (scale, batch)
        if key not in self._fns:
            G, D, tcfg = self.G, self.D, self.tcfg
            size = image_size(G.out_size, scale)
            pl_batch = max(1, batch // tcfg.pl_batch_shrink)

            def step(state, real):
                k = jax.random.fold_in(state.key, state.step)
                rnd = tr.draw_randomness(k, G, scale, batch, pl_batch, tcfg.mix_prob)
                real = tr.resize_reals(real, size)
                new, metrics, _ = tr.train_step(state, real, rnd, G=G, D=D, tcfg=tcfg, scale=scale)
                return new, metrics

            self._fns[key] = jax.jit(step, donate_argnums=(0,))
        return self._fns[key]

    def compilations(self) -> int:
        return sum(f._cache_size() for f in self._fns.values())

    def schedule(self, step: int):
        t = self.tcfg
        probs = None
        if t.get("scale_sampling", "uniform") == "configured":
            probs = list(t.scale_probs)
        scale = choose_scale(self.seed, step, list(self.cfg.scales), probs)
        return scale, batch_for_scale(t, scale)

    def run(self, num_steps: int, checkpoint_every: Optional[int] = None, sample_every: Optional[int] = None,
            progress=None, evaluator=None, eval_every: Optional[int] = None) -> List[dict]:
        """Train until the state's step reaches ``num_steps``."""
        history = []
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while int(self.state.step) < num_steps and not self._stop:
                step = int(self.state.step)
                scale, batch = self.schedule(step)
                real = jnp.asarray(self.data.batch(self.seed, step, batch, self.offset))
                self._hint_next(step, batch, num_steps)
                fn = self._step_fn(scale, batch)
                before = fn._cache_size()
                t0 = time.time()
                self.state, metrics = fn(self.state, real)
                if fn._cache_size() != before:
                    jax.block_until_ready(metrics["d_loss"])
                    self.compile_seconds[(scale, batch)] = time.time() - t0
                self.offset += batch
                m = {k: float(np.mean(v)) for k, v in metrics.items()}
                if not np.isfinite(m["d_loss"]) or not np.isfinite(m["g_loss"]):
                    raise FloatingPointError(f"non-finite loss at step {step} (D {m['d_loss']}, G {m['g_loss']}); "
                                             f"the last checkpoint in {self.workdir} is kept")
                m.update(step=step, scale=scale, batch=batch)
                history.append(m)
                if progress is not None:
                    progress(m)
                done = int(self.state.step)
                if checkpoint_every and done % checkpoint_every == 0:
                    self.save()
                if sample_every and done % sample_every == 0:
                    self.write_samples()
                if evaluator is not None and eval_every and done % eval_every == 0:
                    self.evaluate(evaluator)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if self._stop:
            self.log(f"stopping at step {int(self.state.step)}: saving")
        self.save()
        return history

    def _hint_next(self, step: int, batch: int, num_steps: int, ahead: int = 2):
        """Name the next steps' batches to a loader that prefetches (``pegan.data.PreparedImages``)."""
        hint = getattr(self.data, "prefetch", None)
        if hint is None:
            return
        off = self.offset + batch
        for k in range(step + 1, min(step + 1 + ahead, num_steps)):
            nb = self.schedule(k)[1]
            hint(self.seed, k, nb, off)
            off += nb

    def _on_signal(self, signum, frame):
        self._stop = True

    # -- checkpoints ---------------------------------------------------------------------
    def _generator_item(self, params):
        buffers = dict(self.state.g_buffers)
        v = {"params": params, "buffers": buffers}
        buffers["mean_latent"] = compute_mean_latent(self.G, v, jax.random.PRNGKey(0), 4096)
        return {"params": params, "buffers": buffers}

    def save(self):
        step = int(self.state.step)
        if step in ckpt.steps(self.workdir):
            return
        info = {"family": "stylegan2", "experiment": self.cfg.name, "variant": self.cfg.get("variant", "full"),
                "color_order": "RGB", "source": {"trained_by": "pegan", "seed": self.seed}}
        items = {"generator_ema": self._generator_item(self.state.ema_params),
                 "generator": self._generator_item(self.state.g_params),
                 "discriminator": {"params": self.state.d_params},
                 "train_state": {"state": flax.serialization.to_state_dict(self.state),
                                 "data_offset": np.asarray(self.offset)}}
        ckpt.save(self.workdir, step, items, self.cfg, info,
                  max_to_keep=self.tcfg.get("keep_checkpoints", None))

    def _restore(self):
        old = ckpt.read_config(self.workdir)
        if old.name != self.cfg.name:
            raise ckpt.CheckpointError(f"{self.workdir} holds a run of {old.name}, not {self.cfg.name}")
        abstract = {"state": flax.serialization.to_state_dict(self.state), "data_offset": np.asarray(0)}
        got = ckpt.restore(self.workdir, ["train_state"], None,
                           {"train_state": jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                                                        abstract)})["train_state"]
        self.state = flax.serialization.from_state_dict(self.state, jax.tree.map(jnp.asarray, got["state"]))
        self.offset = int(got["data_offset"])
        self.log(f"resumed {self.workdir} at step {int(self.state.step)}")

    def evaluate(self, evaluator, scales=None) -> dict:
        """Metrics of the EMA generator (``pegan.eval.evaluate.Evaluator``) at ``scales`` (default:
        the largest trained scale, where the reference reports them), appended to
        ``workdir/metrics.jsonl`` and logged."""
        import json

        v = {"params": self.state.ema_params, "buffers": self.state.g_buffers}
        step = int(self.state.step)
        out = {"step": step, "kimg": round(self.offset / 1000, 3)}
        for s in scales or [max(self.cfg.scales)]:
            res = evaluator(self.G, v, s)
            out[f"scale_{s}"] = {k: r for k, r in res.items() if not k.startswith("_")}
            for name, r in out[f"scale_{s}"].items():
                vals = ", ".join(f"{k} {r[k]:.4f}" for k in ("fid", "precision", "recall") if k in r)
                self.log(f"step {step} scale {s}: {name} {vals}")
        if jax.process_index() == 0:
            self.workdir.mkdir(parents=True, exist_ok=True)
            with open(self.workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(out) + "\n")
        return out

    def write_samples(self, num: int = 4, path=None):
        from pegan.imageio import image_grid, labelled_row, save_png, stack_rows, to_uint8

        v = {"params": self.state.ema_params, "buffers": self.state.g_buffers}
        z = jax.random.normal(jax.random.PRNGKey(1234), (num, self.G.style_channels))
        rows = []
        for s in self.cfg.scales:
            img = self.G.apply(v, z, s, rng=jax.random.PRNGKey(5678))
            h, w = img.shape[1:3]
            rows.append(labelled_row([image_grid(to_uint8(np.asarray(img)), ncol=num)],
                                     [f"EMA generator, chosen scale {s}: {h}x{w}"]))
        path = path or self.workdir / f"samples_{int(self.state.step):07d}.png"
        return save_png(path, stack_rows(rows))
