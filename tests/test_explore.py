"""``pegan explore`` over HTTP on 127.0.0.1, against the tiny config-f and PE-SinGAN fixture
checkpoints: every endpoint, the error answers, concurrent requests, the coalescing of one
page's requests, the LRU of compiled programs, and the reproduce command, which run through the
CLI must write the page's PNG byte for byte. The real-browser test is tests/test_explore_browser.py."""

import io
import json
import shlex
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image

import pegan.api as pg
from pegan import latent as lt
from pegan.cli import main
from pegan.explore import MAX_UPLOAD, Explorer, make_server, needs_token
from pegan.imageio import to_uint8
from pegan.models.stylegan2 import image_size

from helpers import tiny_checkpoints


@pytest.fixture(scope="module")
def ckpts(fixtures, tmp_path_factory):
    """Converted pegan checkpoint directories: [config-f tiny, PE-SinGAN CSG tiny]."""
    return tiny_checkpoints(fixtures, tmp_path_factory.mktemp("explore"))


class Client:
    def __init__(self, base, token=None):
        self.base, self.token = base, token

    def get(self, path, **q):
        if self.token:
            q["token"] = self.token
        url = self.base + path + ("?" + urllib.parse.urlencode(q) if q else "")
        try:
            with urllib.request.urlopen(url, timeout=300) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def post(self, path, data: bytes, **q):
        req = urllib.request.Request(self.base + path + "?" + urllib.parse.urlencode(q), data=data, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def start(explorer, token=None):
    server, worker = make_server(explorer, "127.0.0.1", 0, token)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, worker, Client(f"http://127.0.0.1:{server.server_address[1]}", token)


def stop(server, worker):
    server.shutdown()
    server.server_close()
    worker.stop()


@pytest.fixture(scope="module")
def served(ckpts):
    explorer = Explorer(ckpts, cache=8)
    server, worker, client = start(explorer)
    yield explorer, worker, client
    stop(server, worker)
    explorer.close()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def run_command(command: str, out) -> bytes:
    """Run the page's reproduce command through the CLI, writing to ``out``; the file's bytes."""
    argv = shlex.split(command)
    assert argv[:2] == ["pegan", "sample"]
    i = argv.index("--out")
    argv[i + 1] = str(out)
    assert main(argv[1:]) == 0
    return out.read_bytes()


def test_info_describes_both_families(served, ckpts):
    _, _, c = served
    code, _, body = c.get("/api/info")
    info = json.loads(body)
    assert code == 200 and [d["family"] for d in info["checkpoints"]] == ["stylegan2", "singan"]
    sg, sn = info["checkpoints"]
    g = pg.load(ckpts[0])
    assert sg["num_latents"] == g.model.num_latents and sg["size0"] == list(image_size(g.model.out_size, 0))
    assert (4 + sg["scale_max"]) * sg["step"] <= 4 * g.model.out_size
    s = pg.load(ckpts[1])
    assert sn["stages"] == s.state["curr_stage"] + 1 and sn["native"] == list(s.state["sizes"][-1])
    code, headers, page = c.get("/")
    assert code == 200 and headers["Content-Type"].startswith("text/html") and b'id="sw"' in page
    assert b"http://" not in page and b"https://" not in page        # no outside asset: works offline


@pytest.mark.parametrize("query", [
    dict(seed=3, sh=2, sw=4, truncation=0.7),                        # non-square, truncated
    dict(seed=5, sh=-1, sw=1, which="orig"),                         # the raw generator
    dict(seed=1, sh=0, sw=0, noise="const"),                         # the stored noise
    dict(seed=2, size="48,64", mix_seed=9, mix_layers="0-3", truncation=0.5),   # mixing, size in px
])
def test_render_is_the_api_sample_and_the_command_writes_its_bytes(served, ckpts, tmp_path, query):
    explorer, _, c = served
    code, headers, png = c.get("/api/render", **query)
    assert code == 200 and headers["Content-Type"] == "image/png", png
    img = pixels(png)
    # independently: the API's images of the same settings
    g = pg.load(ckpts[0], which=query.get("which", "ema"))
    scale = (2, 4) if "size" in query else (query["sh"], query["sw"])
    if "mix_seed" in query:
        lat = lt.mix(lt.latents_for(g, query["seed"], 1, scale, query["truncation"]),
                     lt.latents_for(g, query["mix_seed"], 1, scale, query["truncation"]), range(4))
        want = lt.render(g, lat)
    else:
        want = pg.sample(g, 1, scale, truncation=query.get("truncation", 1.0), seed=query["seed"],
                         noise=query.get("noise", "random"))
    assert img.shape[:2] == image_size(g.model.out_size, scale) == tuple(map(int, headers["X-Size"].split("x")))
    np.testing.assert_array_equal(img, to_uint8(want)[0])
    code, _, cmd = c.get("/api/command", **query)
    assert code == 200
    assert run_command(cmd.decode(), tmp_path / "cli.png") == png


def test_singan_controls_and_their_commands(served, ckpts, tmp_path):
    _, _, c = served
    s = pg.load(ckpts[1])
    H, W = s.state["sizes"][-1]
    last = s.state["curr_stage"]
    cases = [(dict(seed=4, width_factor=1.5), (H, int(W * 1.5 + 0.5))),
             (dict(seed=4, height=H + 8, width=W + 16), (H + 8, W + 16)),
             (dict(seed=6, start_stage=last), (H, W)),
             (dict(recon=1), (H, W))]
    for q, size in cases:
        q["ckpt"] = 1
        code, headers, png = c.get("/api/render", **q)
        assert code == 200, png
        assert pixels(png).shape[:2] == size
        code, _, cmd = c.get("/api/command", **q)
        assert run_command(cmd.decode(), tmp_path / "sn.png") == png, cmd
    # the reconstruction is the training image's: the API's recon, pixel for pixel
    _, _, png = c.get("/api/render", ckpt=1, recon=1)
    np.testing.assert_array_equal(pixels(png), to_uint8(pg.singan_sample(s, 1, mode="recon"))[0])
    # start stage K: stages below K keep the stored noise, so K = last differs from K = 0 only in detail
    a = pixels(c.get("/api/render", ckpt=1, seed=6, start_stage=last)[2]).astype(int)
    b = pixels(c.get("/api/render", ckpt=1, seed=6, start_stage=0)[2]).astype(int)
    r = pixels(c.get("/api/render", ckpt=1, recon=1)[2]).astype(int)
    assert np.abs(a - r).mean() < np.abs(b - r).mean()


@pytest.mark.parametrize("query, words", [
    (dict(sh=-4), "at least -3"),
    (dict(size="5000,64"), "4096"),
    (dict(size="33,64"), "size"),
    (dict(ckpt=7), "unknown checkpoint 7"),
    (dict(seed="x"), "seed must be a whole number"),
    (dict(truncation="nan"), "truncation"),
    (dict(noise="const", sh=1), "only at scale 0,0"),
    (dict(mix_seed=3), "mix seed and a layer range"),
    (dict(mix_seed=3, mix_layers="0-99"), "styles 0-7"),
    (dict(mix_seed=3, mix_layers="0-99999999999999"), "not 99999999999999"),   # every integer, before: OOM
    (dict(size="5" * 5000 + ",5"), "size must be H,W in pixels"),               # int()'s digit limit: a 500
    (dict(seed="7" * 5000), "seed must be a whole number"),
    (dict(latent="deadbeef"), "unknown latent"),
    (dict(ckpt=1, width_factor=0.01), "width_factor"),
    (dict(ckpt=1, recon=1, width_factor=2), "native size only"),
    (dict(ckpt=1, start_stage=99), "start_stage"),
    (dict(ckpt=1, start_stage=1, width_factor=1.5), "native size only"),
])
def test_bad_requests_get_one_clear_line(served, query, words):
    _, _, c = served
    for path in ("/api/render", "/api/command"):
        code, headers, body = c.get(path, **query)
        assert code == 400 and headers["Content-Type"] == "application/json", body
        msg = json.loads(body)["error"]
        assert words in msg and "\n" not in msg
    assert c.get("/api/nothing")[0] == 404
    assert c.get("/api/render", seed=1)[0] == 200          # the server goes on


def test_concurrent_requests_each_get_their_own_image(served, ckpts):
    _, _, c = served
    g = pg.load(ckpts[0])
    got = {}

    def fetch(seed):
        got[seed] = c.get("/api/render", seed=seed, sh=1, sw=1)

    threads = [threading.Thread(target=fetch, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    want = to_uint8(pg.sample(g, 1, (1, 1), seed=0))[0]
    for seed in range(6):
        code, _, png = got[seed]
        assert code == 200
        np.testing.assert_array_equal(pixels(png), to_uint8(pg.sample(g, 1, (1, 1), seed=seed))[0])
    assert not np.array_equal(pixels(got[1][2]), want)


def test_one_pages_queued_requests_are_coalesced(served):
    """While the worker is busy, a page's queued renders are replaced by its newest one: the
    older ones are answered 409 and only the last is rendered."""
    _, worker, c = served
    gate = threading.Event()
    blocker = worker.submit(None, gate.wait)
    before = worker.superseded
    got = {}

    def fetch(i):
        got[i] = c.get("/api/render", seed=i, sh=0, sw=i % 3, client="page-1")

    threads = []
    for i in range(4):
        threads.append(threading.Thread(target=fetch, args=(i,)))
        threads[-1].start()
        deadline = time.time() + 30
        while worker.superseded - before < i and time.time() < deadline:   # each replaces the one before
            time.sleep(0.01)
    deadline = time.time() + 30
    while worker.superseded - before < 3 and time.time() < deadline:
        time.sleep(0.01)
    other = {}
    t_other = threading.Thread(target=lambda: other.update(r=c.get("/api/render", seed=9, client="page-2")))
    t_other.start()
    time.sleep(0.2)
    gate.set()
    for t in threads + [t_other]:
        t.join(300)
    blocker.done.wait(30)
    assert [got[i][0] for i in range(4)] == [409, 409, 409, 200]
    assert other["r"][0] == 200                              # another page is not coalesced with it
    assert worker.superseded - before == 3


def test_lru_keeps_a_few_compiled_sizes(ckpts):
    explorer = Explorer(ckpts[:1], cache=2)
    server, worker, c = start(explorer)
    try:
        def stats():
            return json.loads(c.get("/api/stats")[2])

        def compiled(**q):
            code, headers, _ = c.get("/api/render", **q)
            assert code == 200
            return headers["X-Compiled"] == "1"

        assert compiled(sh=0, sw=0) and compiled(sh=1, sw=2)
        assert not compiled(sh=1, sw=2, seed=5, truncation=0.6)     # same size: no compile, any truncation
        assert compiled(sh=2, sw=0)                                 # a third size evicts the oldest
        s = stats()
        assert (s["compiles"], s["evictions"], s["hits"]) == (3, 1, 1)
        assert [k[-1] for k in s["held"]] == [[1, 2], [2, 0]]
        assert compiled(sh=0, sw=0)                                 # evicted: compiled again
        assert not compiled(sh=2, sw=0)
    finally:
        stop(server, worker)
        explorer.close()


def test_latent_upload(served, ckpts, tmp_path, monkeypatch):
    explorer, _, c = served
    g = pg.load(ckpts[0])
    good = lt.save_latents(tmp_path / "proj.npz", lt.latents_for(g, 11, 1, (2, 4), 1.0))
    code, body = c.post("/api/latent", open(good, "rb").read(), ckpt=0, name="proj.npz")
    got = json.loads(body)
    assert code == 200 and got["scale"] == [2, 4]
    code, _, png = c.get("/api/render", latent=got["latent"], sh=2, sw=4, truncation=0.8)
    assert code == 200
    w = lt.latents_for(g, 11, 1, (2, 4), 1.0)
    want = lt.render(g, lt.Latents(lt.truncate(g, w.w, 0.8), w.noises, (2, 4)))
    np.testing.assert_array_equal(pixels(png), to_uint8(want)[0])
    _, _, cmd = c.get("/api/command", latent=got["latent"], sh=2, sw=4, truncation=0.8)
    assert "--latent proj.npz" in cmd.decode()
    monkeypatch.chdir(tmp_path)                      # the command names the file as uploaded
    assert run_command(cmd.decode(), tmp_path / "lat.png") == png
    # hostile or wrong files: one line each, nothing kept
    two = lt.save_latents(tmp_path / "two.npz", lt.latents_for(g, 1, 2, (0, 0)))
    pickled = tmp_path / "p.npz"
    np.savez(pickled, w=np.array([object()], dtype=object))
    for data, name, words in [(b"not a zip", "x.npz", "not a readable .npz"),
                              (open(pickled, "rb").read(), "p.npz", "holds Python objects"),
                              (open(two, "rb").read(), "two.npz", "holds 2 latents"),
                              (open(good, "rb").read(), "../../etc.txt", "a latent file is a .npz")]:
        code, body = c.post("/api/latent", data, ckpt=0, name=name)
        assert code == 400 and words in json.loads(body)["error"], body
    code, body = c.post("/api/latent", open(good, "rb").read(), ckpt=1, name="proj.npz")
    assert code == 400 and "StyleGAN2" in json.loads(body)["error"]
    import os
    assert sorted(os.listdir(explorer._upload_dir)) == [f"{got['latent']}.npz"]


def test_upload_size_is_bounded(served):
    _, _, c = served
    port = int(c.base.rsplit(":", 1)[1])
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", "/api/latent?ckpt=0&name=a.npz")
    conn.putheader("Content-Length", str(MAX_UPLOAD + 1))
    conn.endheaders()                                # the body is never sent: refused on its length
    r = conn.getresponse()
    assert r.status == 413 and "latent file must hold" in json.loads(r.read())["error"]
    conn.close()


def test_stalled_and_surplus_connections_do_not_hold_the_server(ckpts, monkeypatch):
    """2,000 connections sending half a request line held 2,000 threads forever, and stalled
    uploads held their memory: a connection that stalls is closed after the socket timeout,
    connections beyond the cap are closed at once, uploads are read two at a time, and the
    page still answers."""
    import socket

    import pegan.explore as ex

    monkeypatch.setattr(ex, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(ex._Handler, "timeout", 1.0)
    explorer = Explorer(ckpts[:1], cache=1)
    server, worker, c = start(explorer)
    port = server.server_address[1]
    try:
        stalled = []
        for _ in range(4):                               # the cap's worth, each half a request line
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /api/in")
            stalled.append(s)
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        extra.sendall(b"GET /api/info HTTP/1.0\r\n\r\n")
        try:
            assert extra.recv(100) == b""                # closed at once: over the cap
        except ConnectionResetError:
            pass
        t0 = time.time()
        for s in stalled:                                # each closed by the timeout
            assert s.recv(100) == b""
        assert time.time() - t0 < 8
        status, _, body = c.get("/api/info")
        assert status == 200 and json.loads(body)["checkpoints"]
        uploads = []
        for _ in range(2):                               # two uploads that declare 1000 bytes and stall
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST /api/latent?ckpt=0&name=a.npz HTTP/1.1\r\nContent-Length: 1000\r\n\r\nPK")
            uploads.append(s)
        time.sleep(0.3)
        status, body = c.post("/api/latent", b"x" * 10, ckpt=0, name="b.npz")
        assert status == 503 and "being uploaded" in json.loads(body)["error"]
        for s in uploads:                                # closed by the timeout: their memory freed
            assert s.recv(1000) == b""
        status, body = c.post("/api/latent", b"x" * 10, ckpt=0, name="b.npz")
        assert status == 400 and "not a readable .npz" in json.loads(body)["error"]      # a slot again
    finally:
        stop(server, worker)
        explorer.close()


def test_a_bug_is_a_500_and_the_server_goes_on(served, monkeypatch, capsys):
    explorer, _, c = served
    real = explorer.render

    def broken(q):
        raise RuntimeError("boom")

    monkeypatch.setattr(explorer, "render", broken)
    code, _, body = c.get("/api/render", seed=1)
    assert code == 500 and "RuntimeError" in json.loads(body)["error"]
    monkeypatch.setattr(explorer, "render", real)
    assert c.get("/api/render", seed=1)[0] == 200
    assert "boom" in capsys.readouterr().err            # the traceback is in the server's log


def test_token_guards_every_endpoint(ckpts):
    explorer = Explorer(ckpts[:1], cache=1)
    server, worker, c = start(explorer, token="s3cret")
    try:
        bare = Client(c.base)
        for path in ("/", "/api/info", "/api/render", "/api/stats"):
            code, _, body = bare.get(path)
            assert code == 403 and "token" in json.loads(body)["error"]
        assert bare.get("/api/info", token="wrong")[0] == 403
        assert c.get("/api/info")[0] == 200 and c.get("/")[0] == 200
    finally:
        stop(server, worker)
        explorer.close()
    assert not needs_token("127.0.0.1") and not needs_token("127.0.0.5") and not needs_token("::1")
    assert not needs_token("localhost")
    assert needs_token("0.0.0.0") and needs_token("192.168.1.4") and needs_token("myhost")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    assert main(["explore", str(tmp_path), "--port", "70000"]) == 2
    assert "65535" in capsys.readouterr().err
    assert main(["explore", str(tmp_path), "--cache", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_pegan_explore_serves_until_interrupted(ckpts, tmp_path):
    """The command itself: it prints its address (port 0: a free one), serves, and stops on Ctrl-C."""
    import os
    import queue
    import re
    import signal
    import subprocess
    import sys

    # faulthandler: should the server not stop, SIGABRT writes every thread's stack to its stderr
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    # stderr to a file and stdout drained by a thread: a pipe nobody reads can fill and block a write
    err = open(tmp_path / "stderr.txt", "w+")
    p = subprocess.Popen([sys.executable, "-m", "pegan.cli", "explore", ckpts[0], "--port", "0"],
                         stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in p.stdout], daemon=True).start()
    try:
        url = None
        deadline = time.time() + 240
        while url is None and time.time() < deadline and p.poll() is None:
            try:
                m = re.search(r"at (http://127\.0\.0\.1:\d+/)", lines.get(timeout=1))
            except queue.Empty:
                continue
            url = m and m[1]
        assert url, (tmp_path / "stderr.txt").read_text() if p.poll() is not None else "no address printed"
        code, _, body = Client(url.rstrip("/")).get("/api/info")
        assert code == 200 and json.loads(body)["checkpoints"][0]["family"] == "stylegan2"
        p.send_signal(signal.SIGINT)
        try:
            assert p.wait(120) == 130
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            p.wait(30)
            raise AssertionError("pegan explore did not stop within 120 s of SIGINT; its stacks:\n"
                                 + (tmp_path / "stderr.txt").read_text()) from None
        assert "interrupted" in (tmp_path / "stderr.txt").read_text()
    finally:
        if p.poll() is None:
            p.kill()
        err.close()


def test_a_reference_pth_is_served_and_its_command_names_the_experiment(fixtures, tmp_path):
    from helpers import CFG_F

    pth = str(fixtures / "mspie_stylegan2_config-f_tiny.mmgen.pth")
    explorer = Explorer([pth], cache=2, experiment=CFG_F, variant="tiny")
    try:
        png, meta = explorer.render({"seed": "4", "sh": "1", "sw": "3"})
        cmd = explorer.command({"seed": "4", "sh": "1", "sw": "3"})
        assert f"--experiment {CFG_F} --variant tiny" in cmd
        assert run_command(cmd, tmp_path / "pth.png") == png
        g = pg.load(pth, experiment=CFG_F, variant="tiny")
        np.testing.assert_array_equal(pixels(png), to_uint8(pg.sample(g, 1, (1, 3), seed=4))[0])
    finally:
        explorer.close()
