"""A screenshot of ``pegan explore`` in headless Chromium (the README's docs/explore.png).

    .venv/bin/python scripts/explore_screenshot.py out/demo_run docs/explore.png --keys width_factor=20

Serves the checkpoints on 127.0.0.1, opens the page, presses the right-arrow key on each named
slider the given number of times (``--keys ID=N,...``), waits for the image and saves the window.
Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("out", help="the PNG to write")
    ap.add_argument("--keys", default="", help="slider=presses of the right arrow, comma-separated")
    ap.add_argument("--window", default="1000,640")
    opts = ap.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from pegan.explore import Explorer, make_server

    explorer = Explorer(opts.checkpoints)
    server, worker = make_server(explorer, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={opts.window}"):
        o.add_argument(a)
    o.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=o)
    try:
        d.get(f"http://127.0.0.1:{server.server_address[1]}/")

        def settle():
            for _ in range(1200):
                if d.execute_script("return !busy && pending === null && document.getElementById('img').naturalWidth > 0"):
                    return
                time.sleep(0.1)

        settle()
        for item in filter(None, opts.keys.split(",")):
            name, n = item.split("=")
            el = d.find_element(By.ID, name)
            for _ in range(int(n)):
                el.send_keys(Keys.RIGHT)
            settle()
        d.save_screenshot(opts.out)
        print(f"wrote {opts.out}: {d.find_element(By.ID, 'status').text}")
    finally:
        d.quit()
        server.shutdown()
        worker.stop()
        explorer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
