"""`scientist web` end to end in a real browser: the command runs as a subprocess on a free
port over a small archive (test_web's), and headless Chromium, driven by selenium, clicks
from the campaigns list to the campaign, to a candidate, and to a comparison.

The candidate's drift landscape is written into the cache directory by this test with
numpy, in sandbox/landscape.py's file format on landscape_axes(): a stand-in for the one
the sandbox would compute (`scientist web --precompute`), which the server validates and
renders like any other. Skips only when Chromium or its driver is not installed
(`apt-get install chromium chromium-driver`, see scripts/install-system-deps.sh)."""

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_web import build_archive, code_hash_of

from sandbox.landscape import landscape_axes
from scientist.web.engine import reader_engine

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)
DRIVER = shutil.which("chromedriver")

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
)
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_stand_in_landscape(path: Path) -> None:
    """PPO's drift on the sandbox's grid, arrays indexed [advantage, ratio], float32."""
    ratio, advantage = landscape_axes()
    r, a = np.meshgrid(ratio, advantage)
    drift = np.maximum(0.0, (r - np.clip(r, 0.8, 1.2)) * a)
    d_objective_dr = a - np.gradient(drift, ratio, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        ratio=ratio,
        advantage=advantage,
        drift=drift.astype(np.float32),
        d_objective_dr=d_objective_dr.astype(np.float32),
    )


@contextlib.contextmanager
def serve(url: str, cache: Path):
    """`scientist web` as a subprocess on a free port; yields its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scientist.cli",
            "web",
            "--db",
            url,
            "--port",
            str(port),
            "--cache",
            str(cache),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"scientist web did not start: {process.communicate()[0][-3000:]}")
        time.sleep(0.2)
    try:
        yield base
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    ids = build_archive(root / "archive.db", root / "EXECUTED")
    url = f"sqlite:///{root / 'archive.db'}"
    write_stand_in_landscape(
        root / "landscapes" / f"{code_hash_of(reader_engine(url), ids['child'])}.npz"
    )
    with serve(url, root / "landscapes") as base:
        yield base, ids, root
    assert not (root / "EXECUTED").exists()


@contextlib.contextmanager
def new_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=DRIVER)
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser():
    with new_browser() as driver:
        yield driver


def test_click_from_the_campaigns_to_a_candidate_and_a_comparison(server, browser):
    base, ids, _ = server
    wait = WebDriverWait(browser, 30)
    browser.get(base + "/")
    assert "Campaigns" in browser.find_element(By.TAG_NAME, "h1").text

    browser.find_element(By.LINK_TEXT, "demo").click()
    wait.until(ec.presence_of_element_located((By.ID, "leaderboard")))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Campaign demo"
    board = browser.find_element(By.ID, "leaderboard")
    rows = board.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 50
    leaders = [r.find_element(By.CSS_SELECTOR, "a.cid").text for r in rows[:3]]
    assert leaders == [f"#{ids['child']}", f"#{ids['dpo']}", f"#{ids['ppo']}"]
    assert rows[0].find_element(By.CSS_SELECTOR, "td.fitness").text == "1.234"
    assert browser.find_element(By.CSS_SELECTOR, "#generations svg.chart").is_displayed()

    board.find_element(By.LINK_TEXT, f"#{ids['child']}").click()
    wait.until(ec.presence_of_element_located((By.ID, "code")))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Candidate #{ids['child']}")
    code = browser.find_element(By.CSS_SELECTOR, "#code .highlight")
    assert code.is_displayed() and "def drift(ratio, advantage):" in code.text
    assert (
        "jnp.clip(ratio, 0.75, 1.25)" in browser.find_element(By.CSS_SELECTOR, "#code .diff").text
    )
    image = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#heatmap img.drift")))
    wait.until(
        lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", image
        )
    )
    assert (
        image.size["width"] > 300
        and browser.execute_script("return arguments[0].naturalHeight", image) > 300
    )
    assert "drift-free region" in browser.find_element(By.ID, "heatmap").text
    assert "4 seeds: too few for an interval" in browser.find_element(By.ID, "scores").text

    # back on the leaderboard, tick two candidates and compare them (a plain GET form)
    browser.back()
    wait.until(ec.presence_of_element_located((By.ID, "leaderboard")))
    for candidate_id in (ids["child"], ids["ppo"]):
        browser.find_element(By.CSS_SELECTOR, f'input[name="ids"][value="{candidate_id}"]').click()
    browser.find_element(By.CSS_SELECTOR, "#leaderboard button[type=submit]").click()
    wait.until(ec.title_contains("compare"))
    assert browser.find_elements(By.CSS_SELECTOR, ".side-by-side .highlight")[0].is_displayed()
    assert len(browser.find_elements(By.CSS_SELECTOR, ".side-by-side .highlighttable")) == 2
    assert (
        len(browser.find_elements(By.CSS_SELECTOR, "img.drift")) == 1
    )  # only the child's landscape is cached
