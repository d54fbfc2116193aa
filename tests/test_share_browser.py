"""The explorer in a real browser: Debian's headless Chromium driven by Selenium.

The server runs in a thread on a free loopback port over a tiny random-weight G exported to a
temporary folder. The tests skip, with the reason printed, when chromium, chromedriver or the
selenium package are missing (`make test` installs them).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
def export_dir(tmp_path_factory) -> Path:
    """An export of a tiny random G (16 px, 1 channel)."""
    reason = _skip_reason()
    if reason:
        print(f"skipping the browser tests: {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("browser")
    out = root / "export"
    assert cli.main(["export", "--checkpoint", str(make_run(root)), "--out", str(out)]) == 0
    return out


@contextlib.contextmanager
def running(export: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """The server `dcgan serve` runs, in a thread on 127.0.0.1 and a free port: (url, stop)."""
    from dcgan.share.serve import create_app, listen, load_explorer, make_server

    app = create_app(load_explorer(str(export), "cpu"))
    sock = listen("127.0.0.1", 0)
    srv = make_server(app)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the explorer did not start"

    def stop() -> None:
        srv.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "the explorer did not stop"

    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/", stop
    finally:
        if thread.is_alive():
            stop()


@pytest.fixture(scope="module")
def server(export_dir):
    """The explorer over the export, shared by the tests that do not stop it."""
    with running(export_dir) as (url, _):
        yield url


@contextlib.contextmanager
def chromium(url: str, profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    try:
        driver.get(url)
        wait(driver, "#grid[data-ready='1']")
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium_for_module(server, tmp_path_factory):
    """One Chromium for the tests of the shared server (starting one takes seconds)."""
    with chromium(server, tmp_path_factory.mktemp("chromium") / "profile") as driver:
        yield driver


@pytest.fixture
def browser(chromium_for_module, server):
    """A fresh page of the explorer (new JavaScript state, empty fragment) at 1400 x 1000."""
    driver = chromium_for_module
    driver.set_window_size(1400, 1000)
    driver.get("about:blank")
    driver.get(server)
    wait(driver, "#grid[data-ready='1']")
    return driver


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


# --- the page's state is always what is on screen ----------------------------------------------

RESULT_IMAGES = ("interp-linear", "interp-spherical", "arith-img", "walk-img")


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def shown(driver, img: str) -> bool:
    """Whether an image is on screen (displayed with a source), as the user sees it."""
    return js(driver, "const i = document.getElementById(arguments[0]);"
                      "return !i.hidden && getComputedStyle(i).display !== 'none' && i.hasAttribute('src');", img)


def href(driver, link: str) -> str | None:
    from selenium.webdriver.common.by import By

    return browser_el(driver, link).get_attribute("href") if driver.find_elements(By.ID, link) else None


def browser_el(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def text(driver, element_id: str) -> str:
    return browser_el(driver, element_id).text


def set_seed_box(driver, value: str) -> None:
    js(driver, "const s = document.getElementById('seed'); s.value = arguments[0];"
               "s.dispatchEvent(new Event('change'));", value)


def pick_everything(driver) -> None:
    """Interpolate 3 -> 10, A = 0,1, B = 2, C = 4, A - B + C, walk from 9: every panel shown."""
    cell(driver, 3).click()
    cell(driver, 10).click()
    for mode, picks in (("a", (0, 1)), ("b", (2,)), ("c", (4,))):
        choose(driver, mode)
        for i in picks:
            cell(driver, i).click()
    browser_el(driver, "compute").click()
    choose(driver, "base")
    cell(driver, 9).click()
    for img in RESULT_IMAGES:
        wait(driver, f"#{img}[data-loaded='1']")
    assert all(shown(driver, img) for img in RESULT_IMAGES)


def test_first_load_shows_no_broken_images(browser):
    for img in RESULT_IMAGES:
        assert not shown(browser, img), img
    broken = js(browser, "return [...document.images].filter(i => i.offsetParent !== null &&"
                         " !(i.complete && i.naturalWidth > 0)).map(i => i.id);")
    assert broken == []
    assert not browser_el(browser, "sel-canvas").is_displayed()
    for link in ("sel-png", "interp-linear-png", "arith-png", "walk-z"):
        assert href(browser, link) is None and not browser_el(browser, link).is_displayed()
    assert text(browser, "grid-msg") == "" and text(browser, "status") == ""


def test_new_seed_after_picks_clears_every_panel_of_the_old_seed(browser):
    pick_everything(browser)
    assert "seed=0" in href(browser, "walk-png")
    browser_el(browser, "new-seed").click()
    wait(browser, "#grid[data-ready='1']:not([data-seed='0'])")
    seed = browser_el(browser, "grid").get_attribute("data-seed")
    for img in RESULT_IMAGES:
        assert not shown(browser, img), img
    for link in ("interp-linear-png", "interp-spherical-z", "arith-png", "arith-z", "walk-png", "sel-png"):
        assert href(browser, link) is None, link
    assert text(browser, "sel-index") == "–" and not browser_el(browser, "sel-canvas").is_displayed()
    assert text(browser, "interp-ends") == ""
    assert [text(browser, f"group-{g}") for g in "abc"] == ["–", "–", "–"]
    assert js(browser, "return document.querySelectorAll('#grid .tag, #grid .cell.interp, #grid .cell.sel').length") == 0
    assert f"seed={seed}&" in href(browser, "grid-png") and browser_el(browser, "seed").get_attribute("value") == seed
    assert browser.current_url.endswith(f"#seed={seed}&n=64")

    # The new grid's picks name the new seed's samples.
    choose(browser, "interp")
    cell(browser, 1).click()
    cell(browser, 2).click()
    wait(browser, "#interp-linear[data-loaded='1']")
    assert f"seed={seed}&" in href(browser, "interp-linear-png")


def test_clear_groups_removes_a_minus_b_plus_c_and_the_walk(browser):
    pick_everything(browser)
    strip = browser_el(browser, "interp-linear").get_attribute("src")
    browser_el(browser, "clear").click()
    wait(browser, "#arith-img[hidden]")
    for img in ("arith-img", "walk-img"):
        assert not shown(browser, img), img
    for link in ("arith-png", "walk-png", "walk-z"):
        assert href(browser, link) is None, link
    assert [text(browser, f"group-{g}") for g in "abc"] == ["–", "–", "–"]
    assert js(browser, "return document.querySelectorAll('#grid .tag').length") == 0
    # The interpolation does not depend on the groups: it stays.
    assert shown(browser, "interp-linear") and browser_el(browser, "interp-linear").get_attribute("src") == strip
    # Changing a group of a shown A - B + C computes it again.
    choose(browser, "a")
    for i in (0, 1):
        cell(browser, i).click()
    for mode, i in (("b", 2), ("c", 4)):
        choose(browser, mode)
        cell(browser, i).click()
    browser_el(browser, "compute").click()
    wait(browser, "#arith-img[data-loaded='1']")
    first = browser_el(browser, "arith-img").get_attribute("src")
    choose(browser, "c")
    cell(browser, 5).click()
    wait(browser, f"#arith-img[data-loaded='1']:not([src='{first}'])")
    assert "c=4%2C5" in href(browser, "arith-png")


def test_an_error_goes_with_the_next_valid_input(browser):
    set_seed_box(browser, "-3")
    wait(browser, "#grid-msg.error")
    assert "whole number" in text(browser, "grid-msg")
    assert browser_el(browser, "seed").get_attribute("value") == "0"  # the box shows the grid's seed
    assert browser_el(browser, "grid").get_attribute("data-seed") == "0"
    browser_el(browser, "compute").click()  # no groups yet
    wait(browser, "#arith-msg.error")
    assert "pick at least one sample" in text(browser, "arith-msg")

    set_seed_box(browser, "12")
    wait(browser, "#grid[data-ready='1'][data-seed='12']")
    assert text(browser, "grid-msg") == "" and text(browser, "arith-msg") == ""
    assert "seed 12," in text(browser, "seed-shown") and "seed=12&" in href(browser, "grid-png")


def test_the_page_stays_true_when_the_server_stops(export_dir, chromium_for_module):
    driver = chromium_for_module
    with running(export_dir) as (url, stop):  # a server of its own, stopped mid-session
        driver.get("about:blank")
        driver.get(url)
        wait(driver, "#grid[data-ready='1']")
        cell(driver, 3).click()
        cell(driver, 10).click()
        wait(driver, "#interp-spherical[data-loaded='1']")
        strip = browser_el(driver, "interp-linear").get_attribute("src")
        stop()

        browser_el(driver, "new-seed").click()
        wait(driver, "#grid-msg.error")
        assert "did not answer" in text(driver, "grid-msg")
        set_seed_box(driver, "7")
        wait(driver, "#grid[aria-busy='false']")
        time.sleep(0.2)
        assert "did not answer" in text(driver, "grid-msg")
        # Nothing changed: the grid, the seed box, the seed shown and its links all say seed 0.
        assert driver.find_element("id", "grid").get_attribute("data-seed") == "0"
        assert browser_el(driver, "seed").get_attribute("value") == "0"
        assert "seed 0," in text(driver, "seed-shown") and "seed=0&" in href(driver, "grid-png")
        assert browser_el(driver, "interp-linear").get_attribute("src") == strip
        assert "seed=0&" in href(driver, "interp-linear-png") and text(driver, "interp-ends") == "#3 → #10"

        # An action that needs the server changes nothing either (the picks included).
        choose(driver, "a")
        cell(driver, 0).click()
        choose(driver, "b")
        cell(driver, 1).click()
        choose(driver, "c")
        cell(driver, 2).click()
        browser_el(driver, "compute").click()
        wait(driver, "#arith-msg.error")
        assert not shown(driver, "arith-img") and href(driver, "arith-png") is None
        assert "seed=0&n=64&interp=3,10&a=0&b=1&c=2" in driver.current_url


def test_results_are_drawn_at_the_grid_tile_size_and_scrolled_into_view(browser):
    browser.set_window_size(1400, 700)
    cell(browser, 3).click()
    cell(browser, 10).click()
    wait(browser, "#interp-linear[data-loaded='1']")
    tile = js(browser, "return document.querySelector('#grid .cell canvas').getBoundingClientRect().width")
    assert tile >= 64
    for mode in ("linear", "spherical"):
        width, natural = js(browser, "const i = document.getElementById(arguments[0]);"
                                     "return [i.getBoundingClientRect().width, i.naturalWidth];", f"interp-{mode}")
        frame = width * 16 / natural  # the strip's frames are 16 px in its PNG
        assert frame >= tile - 0.5, (frame, tile)
    for mode, picks in (("a", (0, 1)), ("b", (2,)), ("c", (4,))):
        choose(browser, mode)
        for i in picks:
            cell(browser, i).click()
    choose(browser, "base")
    js(browser, "window.scrollTo(0, 0)")
    cell(browser, 9).click()
    wait(browser, "#walk-img[data-loaded='1']")
    assert browser_el(browser, "walk-img").size["width"] >= tile
    top, bottom, height = js(browser, "const r = document.getElementById('walk-fig').getBoundingClientRect();"
                                      "return [r.top, r.bottom, window.innerHeight];")
    assert 0 <= top and bottom <= height + 1, "the walk was not scrolled into view"
    browser_el(browser, "compute").click()
    wait(browser, "#arith-img[data-loaded='1']")
    # Fig. 7's tiles are 64 px in its PNG; shown at least as wide as the grid's.
    assert browser_el(browser, "arith-img").size["width"] >= js(
        browser, "return document.getElementById('arith-img').naturalWidth") * tile / 64 - 1
