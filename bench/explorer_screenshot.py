"""docs/figures/explorer.png: the latent-space explorer (`dcgan serve`) in headless Chromium.

Serves CHECKPOINT (a run, a checkpoint file or an export folder) the way `dcgan serve` does, on a
free loopback port, then drives Debian's Chromium with Selenium through the documented actions:
click samples 2 and 24 (the interpolation strips), pick A, B and C (A - B + C in the layout of
the paper's Fig. 7), pick the walk's base, and saves a screenshot of the whole page.

    python bench/explorer_screenshot.py --checkpoint ~/.cache/dcgan/quality-runs/paper-s0

(that run is the recipe's 5,000-step Fashion-MNIST run of `bench/quality.py --variants paper
--seeds 0`, its last.pt at step 5,000; any checkpoint works). Needs `chromium`, `chromium-driver` (apt) and selenium,
which `make test` installs.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 120
ROOT = Path(__file__).resolve().parent.parent

# The actions shown: interpolation between two samples, three groups for A - B + C, the walk's base.
INTERPOLATE = (2, 24)
GROUPS = {"a": (0, 8, 16), "b": (1, 9), "c": (3, 11, 19)}
BASE = 27
STRENGTH = 1.0  # the walk's slider


def serve(checkpoint: str):
    from dcgan.share.serve import create_app, listen, load_explorer, make_server

    app = create_app(load_explorer(checkpoint, "cpu"))
    sock = listen("127.0.0.1", 0)
    srv = make_server(app)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not srv.started:
        raise SystemExit("the explorer did not start")
    return f"http://127.0.0.1:{sock.getsockname()[1]}/", srv, thread


def shoot(url: str, out: Path, width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    profile = Path(tempfile.mkdtemp(prefix="dcgan-shot-"))
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))

    def wait(css: str) -> None:
        WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def click(i: int) -> None:
        driver.find_element(By.CSS_SELECTOR, f"#grid .cell[data-index='{i}']").click()

    def pick(mode: str) -> None:
        driver.find_element(By.CSS_SELECTOR, f"input[name=pick][value='{mode}']").click()

    try:
        driver.get(url)
        wait("#grid[data-ready='1']")
        for i in INTERPOLATE:
            click(i)
        wait("#interp-spherical[data-loaded='1']")
        for mode, picks in GROUPS.items():
            pick(mode)
            for i in picks:
                click(i)
        driver.find_element(By.ID, "compute").click()
        wait("#arith-img[data-loaded='1']")
        pick("base")
        click(BASE)
        wait("#walk-img[data-loaded='1']")
        first = driver.find_element(By.ID, "walk-img").get_attribute("src")
        driver.execute_script(f"const s = document.getElementById('strength'); s.value = '{STRENGTH}';"
                              "s.dispatchEvent(new Event('input'));")
        wait(f"#walk-img[data-loaded='1']:not([src='{first}'])")
        driver.execute_script("window.scrollTo(0, 0)")
        # The whole page: grow the window to the document's height (which a resize can change), then shoot.
        for _ in range(3):
            full = int(driver.execute_script("return document.documentElement.scrollHeight"))
            driver.set_window_size(width, max(height, full + 140))  # + the browser's own frame
            time.sleep(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a run, checkpoint file or export folder")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "explorer.png")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args()
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise SystemExit(f"{path} is missing: apt-get install chromium chromium-driver")
    from dcgan.errors import DCGANError

    try:
        url, srv, thread = serve(args.checkpoint)
    except DCGANError as e:
        raise SystemExit(f"error: {e}") from None
    try:
        shoot(url, args.out, args.width, args.height)
    finally:
        srv.should_exit = True
        thread.join(10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
