"""The explorer in a real browser: Debian's headless Chromium driven by Selenium.

The server runs in a thread on a free loopback port over a tiny random-weight G exported to a
temporary folder. The tests skip, with the reason printed, when chromium, chromedriver or the
selenium package are missing (`make test` installs them).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from test_share import make_run

from dcgan import cli

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000")
WAIT_S = 30  # generous: the machine may be busy


def _skip_reason() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing: `apt-get install chromium chromium-driver` (make test does it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is missing: `pip install -e '.[dev]'` (make test does it)"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The explorer over an export of a tiny random G, on 127.0.0.1 and a free port."""
    reason = _skip_reason()
    if reason:
        print(f"skipping the browser tests: {reason}")
        pytest.skip(reason)

    from dcgan.share.serve import create_app, listen, load_explorer, make_server

    root = tmp_path_factory.mktemp("browser")
    out = root / "export"
    assert cli.main(["export", "--checkpoint", str(make_run(root)), "--out", str(out)]) == 0
    app = create_app(load_explorer(str(out), "cpu"))
    sock = listen("127.0.0.1", 0)
    srv = make_server(app)  # what `dcgan serve` runs
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the explorer did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    try:
        driver.get(server)
        wait(driver, "#grid[data-ready='1']")
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def wait(driver, css: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def cell(driver, i: int):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"#grid .cell[data-index='{i}']")


def choose(driver, mode: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"input[name=pick][value='{mode}']").click()


def natural_size(driver, css: str) -> tuple[int, int]:
    return tuple(driver.execute_script(
        "const i = document.querySelector(arguments[0]); return [i.naturalWidth, i.naturalHeight];", css))


def test_click_two_samples_shows_the_interpolation_strips(browser, tmp_path):
    from selenium.webdriver.common.by import By

    cells = browser.find_elements(By.CSS_SELECTOR, "#grid .cell")
    assert len(cells) == 64
    facts = browser.find_element(By.ID, "facts").text
    assert "fashion_mnist" in facts and "step 40" in facts and "fd_clf 12.500" in facts
    assert "seed 0" in browser.find_element(By.ID, "seed-shown").text
    cell(browser, 3).click()
    cell(browser, 10).click()
    for mode in ("linear", "spherical"):
        wait(browser, f"#interp-{mode}[data-loaded='1']")
        assert natural_size(browser, f"#interp-{mode}") == (9 * 18 + 2, 20)  # 9 samples of 16 px, padded
        href = browser.find_element(By.ID, f"interp-{mode}-z").get_attribute("href")
        assert f"mode={mode}" in href and "format=json" in href
    assert "#3 → #10" in browser.find_element(By.ID, "interp-ends").text
    assert browser.find_element(By.ID, "sel-index").text == "#10"
    assert browser.find_element(By.ID, "status").text == ""
    browser.save_screenshot(str(tmp_path / "interpolation.png"))

    # A new seed redraws the grid and shows the seed.
    before = browser.find_element(By.ID, "grid").get_attribute("data-seed")
    browser.find_element(By.ID, "new-seed").click()
    wait(browser, f"#grid[data-ready='1']:not([data-seed='{before}'])")
    seed = browser.find_element(By.ID, "grid").get_attribute("data-seed")
    assert f"seed {seed}," in browser.find_element(By.ID, "seed-shown").text


def test_a_minus_b_plus_c_and_the_walk_along_b_to_a(browser):
    from selenium.webdriver.common.by import By

    for mode, picks in (("a", (0, 1, 2)), ("b", (3,)), ("c", (4, 5))):
        choose(browser, mode)
        for i in picks:
            cell(browser, i).click()
    assert browser.find_element(By.ID, "group-a").text == "#0 #1 #2"
    browser.find_element(By.ID, "compute").click()
    wait(browser, "#arith-img[data-loaded='1']")
    w, h = natural_size(browser, "#arith-img")
    assert w > 6 * 64 and h >= 3 * 64  # Fig. 7: three concept columns, then the 3x3 block, 64 px tiles
    assert "a=0%2C1%2C2" in browser.find_element(By.ID, "arith-png").get_attribute("href")

    choose(browser, "base")
    cell(browser, 9).click()
    wait(browser, "#walk-img[data-loaded='1']")
    first = browser.find_element(By.ID, "walk-img").get_attribute("src")
    browser.execute_script("const s = document.getElementById('strength'); s.value = '1.5';"
                           "s.dispatchEvent(new Event('input'));")
    wait(browser, f"#walk-img[data-loaded='1']:not([src='{first}'])")
    assert browser.find_element(By.ID, "strength-value").text == "1.50"
    assert "strength=1.5" in browser.find_element(By.ID, "walk-z").get_attribute("href")
    assert browser.find_element(By.ID, "status").text == ""


def test_a_link_reopens_the_page_state(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server + "#seed=5&n=16&interp=1,2&a=0,7&b=3&c=4&base=6&s=1.25")
    browser.refresh()  # a fragment change alone does not reload the page
    wait(browser, "#grid[data-ready='1'][data-seed='5']")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#grid .cell")) == 16
    for img in ("interp-linear", "interp-spherical", "arith-img", "walk-img"):
        wait(browser, f"#{img}[data-loaded='1']")
    assert browser.find_element(By.ID, "group-a").text == "#0 #7"
    assert "strength=1.25" in browser.find_element(By.ID, "walk-png").get_attribute("href")
    assert "seed=5&n=16&interp=1,2&a=0,7" in browser.current_url
