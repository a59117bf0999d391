"""``pegan explore`` in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium pointed at the installed driver) opens the page on the
tiny fixture checkpoints, moves the width slider with the keyboard and drags it with the mouse,
and the image's natural width follows; the page's reproduce command, run through the CLI, writes
the page's PNG byte for byte; a screenshot is saved (``PEGAN_EXPLORE_SCREENSHOT=path`` keeps
one). CI installs the browser (.ci/run) and fails here without it; elsewhere the test says what
it needs."""

import base64
import os
import shutil
import shlex
import threading
import time

import pytest

import pegan.api as pg
from helpers import tiny_checkpoints
from pegan.cli import main
from pegan.explore import Explorer, make_server
from pegan.models.stylegan2 import image_size

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NEEDS = "this test needs a browser: apt-get install chromium chromium-driver, and pip install selenium"


def _browser_or_skip():
    try:
        import selenium  # noqa: F401
        have = CHROMIUM and DRIVER
    except ImportError:
        have = False
    if not have:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {NEEDS}")
        pytest.skip(NEEDS)


@pytest.fixture(scope="module")
def page(fixtures, tmp_path_factory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ckpts = tiny_checkpoints(fixtures, tmp_path_factory.mktemp("browser"))
    explorer = Explorer(ckpts, cache=8)
    server, worker = make_server(explorer, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,700"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_script_timeout(120)
    driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
    yield driver, ckpts
    driver.quit()
    server.shutdown()
    server.server_close()
    worker.stop()
    explorer.close()


def settled(driver, width, timeout=120):
    """Wait until no request is in flight or waiting and the image is ``width`` px wide."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = driver.execute_script("return [busy || pending !== null, document.getElementById('img').naturalWidth,"
                                      " document.getElementById('error').textContent]")
        if not state[0] and state[1] == width:
            return
        assert not state[2], state[2]
        time.sleep(0.05)
    raise AssertionError(f"the image did not become {width} px wide: {state}")


def page_png(driver) -> bytes:
    """The bytes of the PNG the page shows (what its download button saves)."""
    b64 = driver.execute_async_script(
        "const done = arguments[0]; fetch(lastUrl).then(r => r.arrayBuffer()).then(b => {"
        " let s = ''; new Uint8Array(b).forEach(x => s += String.fromCharCode(x)); done(btoa(s)); });")
    return base64.b64decode(b64)


def test_the_width_slider_changes_the_image(page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, ckpts = page
    out_size = pg.load(ckpts[0]).model.out_size
    settled(driver, image_size(out_size, 0)[1])
    slider = driver.find_element(By.ID, "sw")
    slider.send_keys(Keys.RIGHT)
    slider.send_keys(Keys.RIGHT)                     # width offset 2
    assert slider.get_attribute("value") == "2"
    settled(driver, image_size(out_size, (0, 2))[1])
    assert "ms" in driver.find_element(By.ID, "status").text
    # a mouse drag to the right end: many input events, and the image ends at the last one
    ActionChains(driver).click_and_hold(slider).move_by_offset(40, 0).move_by_offset(200, 0).release().perform()
    sw = int(slider.get_attribute("value"))
    assert sw == int(slider.get_attribute("max"))
    settled(driver, image_size(out_size, (0, sw))[1])
    # the reproduce command writes the page's PNG, byte for byte
    command = driver.find_element(By.ID, "command").text
    assert f"--chosen-scale=0,{sw}" in command
    argv = shlex.split(command)
    argv[argv.index("--out") + 1] = str(tmp_path / "cli.png")
    assert main(argv[1:]) == 0
    assert (tmp_path / "cli.png").read_bytes() == page_png(driver)
    shot = os.environ.get("PEGAN_EXPLORE_SCREENSHOT") or str(tmp_path / "explore.png")
    assert driver.save_screenshot(shot) and os.path.getsize(shot) > 1000


def test_singan_width_factor(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver, ckpts = page
    H, W = pg.load(ckpts[1]).state["sizes"][-1]
    Select(driver.find_element(By.ID, "ckpt")).select_by_value("1")
    settled(driver, W)
    slider = driver.find_element(By.ID, "width_factor")
    for _ in range(10):                              # 1 + 10 * 0.05
        slider.send_keys(Keys.RIGHT)
    assert float(slider.get_attribute("value")) == pytest.approx(1.5)
    settled(driver, int(W * 1.5 + 0.5))
