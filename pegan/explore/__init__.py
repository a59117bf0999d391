"""``pegan explore``: one local web page to look inside checkpoints at any scale and aspect.

The page (``page.html`` beside this file: plain HTML and a little JavaScript, no outside asset,
so it works offline) sends its controls to a small HTTP server of the standard library:

* ``GET /`` the page; ``GET /api/info`` the checkpoints served and the ranges of their controls;
* ``GET /api/render?...`` one PNG (headers ``X-Render-Ms``, ``X-Size``, ``X-Compiled``);
* ``GET /api/command?...`` the ``pegan sample`` command that writes the same PNG, byte for byte;
* ``POST /api/latent?ckpt=I&name=F`` a latent ``.npz`` of ``pegan project`` (read without
  pickles, checked against the generator); it answers the id that ``latent=`` takes;
* ``GET /api/stats`` the compiled programs held, hits, compiles and evictions.

Generation runs on one worker thread, off the request threads. Renders from one page (its
``client`` id) are coalesced: a request still queued when a newer one of the same client arrives
is answered 409 "superseded", so a fast slider drag renders only the settings it stops at (the
page itself keeps at most one request in flight as well). The worker keeps one compiled program
per output size (and generator, noise kind and kind of latent) in a small LRU (``cache``).

A bad request (an out-of-range size, an unknown checkpoint, an unreadable latent) is answered
400 with one line that the page shows; a bug is answered 500 and its traceback goes to the
server's standard error; the server goes on in both cases. Only the checkpoints named on the
command line are served. The server listens on 127.0.0.1 by default; on any other address it
asks every request for a token (printed with the address).
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

import numpy as np

from pegan import checks
from pegan import latent as lt
from pegan import loading
from pegan.errors import InputError, PeganError
from pegan.imageio import image_grid, png_bytes, to_uint8

__all__ = ["Explorer", "Programs", "Worker", "make_server", "serve", "png_bytes", "needs_token", "LOOPBACK",
           "MAX_UPLOAD"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")   # and the rest of 127.0.0.0/8 (``needs_token``)
MAX_UPLOAD = 64 << 20            # bytes of one uploaded latent file
MAX_UPLOADS = 16                 # latent files kept (the oldest goes first)
MAX_SEED = 2 ** 31 - 1
PAGE = Path(__file__).with_name("page.html")


def needs_token(host: str) -> bool:
    """Whether a server on ``host`` can be reached from other machines (then it asks for a token)."""
    if host in LOOPBACK:
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:          # a host name other than localhost: it may resolve to anything
        return True


class Programs:
    """An LRU of compiled programs: ``get(key, make)`` returns the held one or ``make()``s it
    (evicting the least recently used beyond ``size``). Thread-safe; counts hits and compiles."""

    def __init__(self, size: int = 4):
        self.size = checks.at_least(size, 1, "the program cache size")
        self._held: "OrderedDict[Any, Any]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.compiles = self.evictions = 0

    def get(self, key, make: Callable[[], Any]):
        with self._lock:
            if key in self._held:
                self._held.move_to_end(key)
                self.hits += 1
                return self._held[key]
            self.compiles += 1
            fn = self._held[key] = make()
            while len(self._held) > self.size:
                self._held.popitem(last=False)
                self.evictions += 1
            return fn

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {"size": self.size, "held": [list(map(_jsonable, k)) for k in self._held],
                    "hits": self.hits, "compiles": self.compiles, "evictions": self.evictions}


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


# -- the checkpoints -------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """One served checkpoint: its path as given, how to load it, and the generators loaded."""
    path: str
    experiment: Optional[str] = None
    variant: Optional[str] = None
    pkl: Optional[str] = None
    loaded: Dict[str, Any] = field(default_factory=dict)

    def get(self, which: str = "ema"):
        if which not in self.loaded:
            self.loaded[which] = loading.load(self.path, which=which, experiment=self.experiment,
                                              variant=self.variant, pkl=self.pkl)
        return self.loaded[which]

    @property
    def family(self) -> str:
        return "singan" if self.get().info.get("family") == "singan" else "stylegan2"


def _int(q: Dict[str, str], key: str, default: Optional[int], lo: Optional[int] = None,
         hi: Optional[int] = None) -> Optional[int]:
    text = q.get(key, "")
    if text == "":
        return default
    try:
        v = int(text)
    except ValueError:
        raise InputError(f"{key} must be a whole number, got {text[:40]!r}") from None
    if hi is None and lo is not None and v < lo:
        raise InputError(f"{key} must be at least {lo}, got {v}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"{key} must be in {lo}..{hi}, got {v}")
    return v


def _float(q: Dict[str, str], key: str, default: float, lo: float, hi: float) -> float:
    text = q.get(key, "")
    if text == "":
        return default
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{key} must be a number, got {text[:40]!r}") from None
    if not np.isfinite(v) or not lo <= v <= hi:
        raise InputError(f"{key} must be in [{lo}, {hi}], got {text[:40]}")
    return v


def _choice(q: Dict[str, str], key: str, choices: Sequence[str]) -> str:
    v = q.get(key, "") or choices[0]
    if v not in choices:
        raise InputError(f"{key} must be one of {', '.join(choices)}, got {v!r}")
    return v


def _fmt(v: float) -> str:
    return repr(float(v)) if not float(v).is_integer() else str(float(v))


class Explorer:
    """What the server does, without HTTP: settings (a query dict) in, PNG bytes or the
    reproducing command out. ``render`` is called from one thread at a time (the worker)."""

    def __init__(self, paths: Sequence[str], cache: int = 4, max_side: int = checks.MAX_SIDE,
                 experiment: Optional[str] = None, variant: Optional[str] = None, pkl: Optional[str] = None):
        if not paths:
            raise InputError("name at least one checkpoint to explore")
        self.max_side = checks.at_least(max_side, 16, "--max-side")
        self.checkpoints = [Checkpoint(str(p), experiment, variant, pkl) for p in paths]
        for c in self.checkpoints:
            c.get()                                  # a missing or bad checkpoint fails at start
        self.programs = Programs(cache)
        self._upload_dir = tempfile.mkdtemp(prefix="pegan-explore-")
        self._uploads: "OrderedDict[str, Tuple[int, str, str]]" = OrderedDict()   # id -> (ckpt, path, name)
        self._lock = threading.Lock()

    def close(self):
        shutil.rmtree(self._upload_dir, ignore_errors=True)

    # -- what the page needs to draw its controls

    def info(self) -> Dict[str, Any]:
        out = []
        for i, c in enumerate(self.checkpoints):
            loaded = c.get()
            d: Dict[str, Any] = {"id": i, "path": c.path, "name": os.path.basename(c.path.rstrip("/")) or c.path,
                                 "family": c.family, "experiment": loaded.config.get("name", None),
                                 "max_side": self.max_side}
            if c.family == "singan":
                st = loaded.state
                last = int(st["curr_stage"])
                d.update(stages=last + 1, native=[int(v) for v in st["sizes"][last]])
            else:
                m = loaded.model
                f = m.out_size // 4
                top = max(0, min(self.max_side, 4 * m.out_size) // f - 4)
                d.update(out_size=int(m.out_size), num_latents=int(m.num_latents), scale_min=-3, scale_max=int(top),
                         step=f, size0=[4 * f, 4 * f])
            out.append(d)
        return {"checkpoints": out, "cache": self.programs.size}

    # -- settings

    def _ckpt(self, q) -> Tuple[int, Checkpoint]:
        i = _int(q, "ckpt", 0)
        if not 0 <= i < len(self.checkpoints):
            raise InputError(f"unknown checkpoint {i}: this server has {len(self.checkpoints)} "
                             f"(0-{len(self.checkpoints) - 1})")
        return i, self.checkpoints[i]

    def settings(self, q: Dict[str, str]) -> Dict[str, Any]:
        """The checked settings of a query (an InputError names the first bad field)."""
        i, c = self._ckpt(q)
        s: Dict[str, Any] = {"ckpt": i, "seed": _int(q, "seed", 0, 0, MAX_SEED), "family": c.family}
        if c.family == "singan":
            loaded = c.get()
            last = int(loaded.state["curr_stage"])
            s["recon"] = q.get("recon", "") in ("1", "true", "on")
            s["start_stage"] = _int(q, "start_stage", 0, 0, last)
            h, w = _int(q, "height", None, 1, self.max_side), _int(q, "width", None, 1, self.max_side)
            if (h is None) != (w is None):
                raise InputError("give both height and width (or neither, for the width factor)")
            s["size"] = None if h is None else (h, w)
            s["width_factor"] = _float(q, "width_factor", 1.0, 0.05, 64.0)
            if s["size"] is not None and s["width_factor"] != 1.0:
                raise InputError("give height and width or a width factor, not both")
            if s["recon"] and (s["size"] is not None or s["width_factor"] != 1.0):
                raise InputError("reconstruction uses the stored noise: native size only")
            if s["recon"] and s["start_stage"]:
                raise InputError("reconstruction has no fresh noise: set the start stage to 0")
            # the sampler's own checks (size, --max-side, a start stage at the native size only), on
            # zero images: nothing is drawn
            loading.singan_inputs(loaded, 0, s["seed"], "rand", s["size"], s["width_factor"], 1.0, None,
                                  s["start_stage"], self.max_side)
            return s
        s["which"] = _choice(q, "which", ("ema", "orig"))
        s["noise"] = _choice(q, "noise", ("random", "const"))
        s["truncation"] = _float(q, "truncation", 1.0, -2.0, 2.0)
        model = c.get().model
        size = q.get("size", "").strip()
        if size:
            m = re.fullmatch(r"(\d{1,9})\s*[x,]\s*(\d{1,9})", size)     # (5,000 digits: past int()'s limit)
            if not m:
                raise InputError(f"size must be H,W in pixels, got {size[:40]!r}")
            s["scale"] = loading.resolve_scale(model, None, (int(m[1]), int(m[2])), self.max_side)
        else:
            sh, sw = _int(q, "sh", 0), _int(q, "sw", 0)       # resolve_scale says what is allowed
            s["scale"] = loading.resolve_scale(model, (sh, sw), None, self.max_side)
        s["mix_seed"] = _int(q, "mix_seed", None, 0, MAX_SEED)
        layers = q.get("mix_layers", "").strip()
        if (s["mix_seed"] is None) != (not layers):
            raise InputError("style mixing needs both a mix seed and a layer range (e.g. 0-3)")
        s["mix_layers"] = layers or None
        s["layers"] = lt.parse_layers(layers, model.num_latents) if layers else None
        s["latent"] = q.get("latent", "") or None
        if s["latent"] is not None:
            with self._lock:
                up = self._uploads.get(s["latent"])
            if up is None or up[0] != i:
                raise InputError(f"unknown latent {s['latent']!r} for this checkpoint: upload it again")
            s["latent_path"], s["latent_name"] = up[1], up[2]
        if s["noise"] == "const":
            if s["latent"] or s["layers"] is not None:
                raise InputError("the stored noise does not combine with a latent or style mixing: "
                                 "choose random noise")
            if tuple(s["scale"]) != (0, 0):
                raise InputError(f"the stored noise exists only at scale 0,0, not {s['scale'][0]},"
                                 f"{s['scale'][1]}: choose random noise")
        return s

    # -- rendering

    def render(self, q: Dict[str, str]) -> Tuple[bytes, Dict[str, Any]]:
        """(PNG bytes, what was made) for a query: the image ``command(q)`` writes."""
        s = self.settings(q)
        c = self.checkpoints[s["ckpt"]]
        before = self.programs.compiles
        t0 = time.perf_counter()
        if s["family"] == "singan":
            loaded = c.get()
            key_sizes = tuple(map(tuple, loading.singan_sizes(loaded, s["size"], s["width_factor"], 1.0, None)))

            def runners(first):
                return self.programs.get((s["ckpt"], "singan", first, key_sizes),
                                         lambda: loading.singan_runner(loaded, first))

            imgs = loading.singan_sample(loaded, 1, s["seed"], "recon" if s["recon"] else "rand", s["size"],
                                         s["width_factor"], 1.0, None, s["start_stage"], 1, None, runners=runners)
        else:
            loaded = c.get(s["which"])
            scale = tuple(s["scale"])
            if s["latent"] or s["layers"] is not None:
                lat = lt.compose(loaded, scale, s["truncation"], s["seed"], 1, latent=s.get("latent_path"),
                                 mix_seed=s["mix_seed"], layers=s["layers"])
                fn = self.programs.get((s["ckpt"], s["which"], "w", scale), lambda: lt.renderer(loaded, scale))
                imgs = np.asarray(fn(lat.w, lat.noises))
            else:
                def programs(sc):
                    return self.programs.get((s["ckpt"], s["which"], "z-" + s["noise"], tuple(sc)),
                                             lambda: loading.sample_program(loaded.model, sc))

                imgs = loading.sample(loaded, 1, scale, s["truncation"], s["seed"], batch=1, noise=s["noise"],
                                      max_side=None, programs=programs)
        if loaded.info.get("color_order") == "BGR":
            imgs = imgs[..., ::-1]
        ms = (time.perf_counter() - t0) * 1e3
        img = image_grid(to_uint8(imgs), ncol=1, pad=0)
        return png_bytes(img), {"ms": round(ms, 1), "height": int(img.shape[0]), "width": int(img.shape[1]),
                                "compiled": self.programs.compiles > before}

    def command(self, q: Dict[str, str], out: str = "explore.png") -> str:
        """The ``pegan sample`` command that writes the PNG of ``render(q)`` to ``out``."""
        s = self.settings(q)
        c = self.checkpoints[s["ckpt"]]
        cmd = ["pegan", "sample", c.path, "--seed", str(s["seed"]), "--num", "1", "--pad", "0"]
        for flag, v in (("--experiment", c.experiment), ("--variant", c.variant), ("--pkl", c.pkl)):
            if v:
                cmd += [flag, v]
        if s["family"] == "singan":
            if s["size"] is not None:
                cmd += ["--size", f"{s['size'][0]},{s['size'][1]}"]
            elif s["width_factor"] != 1.0:
                cmd += ["--width-factor", _fmt(s["width_factor"])]
            if s["start_stage"]:
                cmd += ["--start-stage", str(s["start_stage"])]
            if s["recon"]:
                cmd += ["--recon"]
        else:
            sh, sw = s["scale"]
            # FLAG=VALUE: a negative value would read as a flag
            cmd += [f"--chosen-scale={sh},{sw}", f"--truncation={_fmt(s['truncation'])}"]
            if s["which"] != "ema":
                cmd += ["--which", s["which"]]
            if s["noise"] != "random":
                cmd += ["--noise", s["noise"]]
            if s["latent"]:
                cmd += ["--latent", s["latent_name"]]
            if s["layers"] is not None:
                cmd += ["--mix-seed", str(s["mix_seed"]), "--mix-layers", s["mix_layers"]]
        return " ".join(shlex.quote(v) for v in cmd + ["--out", out])

    # -- latent files

    def add_latent(self, q: Dict[str, str], data: bytes) -> Dict[str, Any]:
        """Keep an uploaded latent .npz for checkpoint ``q['ckpt']`` (one latent); its id."""
        i, c = self._ckpt(q)
        if c.family == "singan":
            raise InputError("latent files are for StyleGAN2 / MS-PIE checkpoints")
        name = os.path.basename(q.get("name", "") or "latent.npz")
        if not name.lower().endswith(".npz") or not re.fullmatch(r"[\w.\- ]{1,200}", name):
            raise InputError(f"a latent file is a .npz of pegan project (with a plain file name), got {name!r}")
        uid = secrets.token_hex(8)
        path = os.path.join(self._upload_dir, f"{uid}.npz")
        with open(path, "wb") as f:
            f.write(data)
        try:
            lat = lt.load_latents(path, c.get().model)
        except PeganError as e:
            os.remove(path)
            raise InputError(str(e).replace(path, name)) from None
        if len(lat) != 1:
            os.remove(path)
            raise InputError(f"{name} holds {len(lat)} latents; the explorer takes a file of one "
                             "(pegan project writes one per target)")
        with self._lock:
            self._uploads[uid] = (i, path, name)
            while len(self._uploads) > MAX_UPLOADS:
                _, (_, old, _) = self._uploads.popitem(last=False)
                if os.path.exists(old):
                    os.remove(old)
        return {"latent": uid, "name": name, "scale": list(map(int, lat.scale)), "settings": lat.settings}


# -- the worker: generation off the request threads, coalesced per page --------------------------

class Superseded(Exception):
    """A queued render that a newer request of the same page replaced."""


class _Job:
    def __init__(self, client: Optional[str], fn):
        self.client, self.fn = client, fn
        self.done = threading.Event()
        self.result = self.error = None


class Worker(threading.Thread):
    """One thread that runs the jobs in order; a queued job of a client is superseded by that
    client's next one."""

    def __init__(self):
        super().__init__(daemon=True, name="pegan-explore-worker")
        self._cv = threading.Condition()
        self._queue: List[_Job] = []
        self._stop = False
        self.superseded = 0

    def submit(self, client: Optional[str], fn) -> _Job:
        job = _Job(client, fn)
        with self._cv:
            if client:
                for old in [j for j in self._queue if j.client == client]:
                    self._queue.remove(old)
                    old.error = Superseded()
                    old.done.set()
                    self.superseded += 1
            self._queue.append(job)
            self._cv.notify()
        return job

    def stop(self):
        with self._cv:
            self._stop = True
            self._cv.notify()

    def run(self):
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    for j in self._queue:
                        j.error = Superseded()
                        j.done.set()
                    return
                job = self._queue.pop(0)
            try:
                job.result = job.fn()
            except BaseException as e:      # answered to the request; the worker goes on
                job.error = e
            job.done.set()


# -- HTTP --------------------------------------------------------------------------------------------

MAX_CONNECTIONS = 64             # connections served at once; more are closed at once
SOCKET_TIMEOUT = 30              # seconds a connection may stall reading or writing
UPLOADS_AT_ONCE = 2              # latent uploads read at once (each held in memory: MAX_UPLOAD)


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that serves at most ``MAX_CONNECTIONS`` connections at once (a
    thread each: 2,000 stalled connections held 2,000 threads), over IPv6 for an IPv6 host."""
    daemon_threads = True

    def __init__(self, address, handler):
        if ":" in str(address[0]):
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)          # too many: refused at once, not queued
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    server_version = "pegan-explore"
    timeout = SOCKET_TIMEOUT         # a stalled request line, header or upload ends the connection
    explorer: Explorer
    worker: Worker
    token: Optional[str]
    quiet: bool = True

    def log_message(self, fmt, *args):       # the default logs every request to stderr
        if not self.quiet:
            super().log_message(fmt, *args)

    def _send(self, code: int, body: bytes, ctype: str, headers: Optional[Dict[str, str]] = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj):
        self._send(code, json.dumps(obj).encode(), "application/json")

    def _query(self) -> Tuple[str, Dict[str, str]]:
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return parts.path, q

    def _allowed(self, q) -> bool:
        if self.token is None:
            return True
        got = q.get("token") or self.headers.get("X-Pegan-Token") or ""
        if hmac.compare_digest(got.encode(), self.token.encode()):
            return True
        self._json(403, {"error": "this server needs its token: open the address it printed (…/?token=…)"})
        return False

    def _answer(self, fn):
        try:
            return fn()
        except Superseded:
            self._json(409, {"superseded": True})
        except PeganError as e:
            self._json(400, {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):   # the page went away (or stalled)
            self.close_connection = True
        except Exception as e:      # a bug: the page says so, the traceback goes to the log
            traceback.print_exc(file=sys.stderr)
            self._json(500, {"error": f"internal error ({type(e).__name__}); see the server's log"})

    def _in_worker(self, client, fn):
        job = self.worker.submit(client, fn)
        if not job.done.wait(timeout=3600):
            raise InputError("the render took over an hour: try a smaller size")
        if job.error is not None:
            raise job.error
        return job.result

    def do_GET(self):
        path, q = self._query()
        if not self._allowed(q):
            return
        if path in ("/", "/index.html"):
            return self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        if path == "/api/info":
            return self._answer(lambda: self._json(200, self.explorer.info()))
        if path == "/api/stats":
            stats = dict(self.explorer.programs.stats(), superseded=self.worker.superseded)
            return self._json(200, stats)
        if path == "/api/command":
            return self._answer(lambda: self._send(200, (self.explorer.command(q) + "\n").encode(),
                                                   "text/plain; charset=utf-8"))
        if path == "/api/render":
            def go():
                self.explorer.settings(q)            # a bad setting is answered at once
                png, meta = self._in_worker(q.get("client") or None, lambda: self.explorer.render(q))
                self._send(200, png, "image/png", {"X-Render-Ms": str(meta["ms"]),
                                                  "X-Size": f"{meta['height']}x{meta['width']}",
                                                  "X-Compiled": "1" if meta["compiled"] else "0"})
            return self._answer(go)
        self._json(404, {"error": f"no such page: {path}"})

    def do_POST(self):
        path, q = self._query()
        if not self._allowed(q):
            return
        if path != "/api/latent":
            return self._json(404, {"error": f"no such endpoint: {path}"})
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._json(411, {"error": "send the latent file with a Content-Length"})
        if not 0 < n <= MAX_UPLOAD:
            self.close_connection = True
            return self._json(413, {"error": f"a latent file must hold 1..{MAX_UPLOAD} bytes, this one {n}"})
        if not self.uploading.acquire(blocking=False):
            self.close_connection = True
            return self._json(503, {"error": f"{UPLOADS_AT_ONCE} latent files are being uploaded; try again"})
        try:
            data = self.rfile.read(n)
        finally:
            self.uploading.release()
        if len(data) < n:
            return self._json(400, {"error": f"the latent file ended after {len(data)} of its {n} bytes"})
        self._answer(lambda: self._json(200, self.explorer.add_latent(q, data)))


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000,
                token: Optional[str] = None, quiet: bool = True):
    """(a ThreadingHTTPServer for ``explorer`` on host:port, its worker), not yet serving; port 0
    picks a free one (``server.server_address``). ``token``: required of every request (None:
    none, the loopback default)."""
    worker = Worker()
    handler = type("Handler", (_Handler,), {"explorer": explorer, "worker": worker, "token": token,
                                            "quiet": quiet, "uploading": threading.BoundedSemaphore(UPLOADS_AT_ONCE)})
    try:
        server = _Server((host, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise InputError(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port") from None
        raise InputError(f"cannot listen on {host}:{port} ({e.strerror or e}): check --host (an address of "
                         "this machine, e.g. 127.0.0.1)") from None
    worker.start()
    return server, worker


def serve(paths: Sequence[str], host: str = "127.0.0.1", port: int = 8000, cache: int = 4,
          max_side: int = checks.MAX_SIDE, experiment=None, variant=None, pkl=None, log=print) -> int:
    """``pegan explore``: serve until interrupted."""
    checks.at_least(port, 0, "--port")
    if port > 65535:
        raise InputError(f"--port must be in 0..65535, got {port}")
    explorer = Explorer(paths, cache, max_side, experiment, variant, pkl)
    # the process-wide compute settings (matmul precision, compile cache) as pegan sample applies them
    loading.announce_compute(explorer.checkpoints[0].get(), log)
    token = secrets.token_urlsafe(16) if needs_token(host) else None
    server, worker = make_server(explorer, host, port, token)
    h, p = server.server_address[:2]
    shown = f"[{h}]" if ":" in str(h) else h
    url = f"http://{shown}:{p}/" + (f"?token={token}" if token else "")
    if token:
        print(f"pegan explore: warning: listening on {host}, reachable from other machines; every request "
              "needs the token in this address (an SSH tunnel to 127.0.0.1 is safer: see the README)",
              file=sys.stderr)
    log(f"serving {len(explorer.checkpoints)} checkpoint(s) at {url} (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        worker.stop()
        explorer.close()
    return 0
