"""Issue 7's acceptance, on a real campaign: `scientist run` (offline mutation proposer,
smoke budget, process sandbox) fills an archive; `scientist report` writes HTML, Markdown and
PDF from it (drift landscapes computed in the sandbox); the PDF, read back as text, names the
best candidate and its held-out score; `scientist web` over the same archive and landscape
cache shows, in headless Chromium, the leaderboard and that candidate's code and heatmap."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from archive.schema import Campaign, Candidate
from scientist.compare import split_score
from scientist.web.engine import reader_engine

REPO = Path(__file__).resolve().parent.parent
NAME = "e2e"


def scientist(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scientist.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{root / 'archive.db'}"
    done = scientist(
        "run",
        "--task",
        "mirror_drift",
        "--budget",
        "smoke",
        "--generations",
        "1",
        "--population",
        "1",
        "--islands",
        "1",
        "--workers",
        "2",
        "--sandbox",
        "process",
        "--seed",
        "3",
        "--reevaluate-top",  # promotions are test_reevaluation's and test_campaign's subject
        "0",
        "--name",
        NAME,
        "--db",
        url,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with Session(reader_engine(url)) as session:
        campaign_id = session.exec(select(Campaign.id).where(Campaign.name == NAME)).one()
        best = session.exec(
            select(Candidate)
            .where(
                Candidate.campaign_id == campaign_id,
                Candidate.status == "ok",
                Candidate.origin != "baseline",
            )
            .order_by(col(Candidate.fitness).desc(), Candidate.id)
        ).first()
        assert best is not None, (
            "the campaign discovered nothing that scored; the test needs one candidate"
        )
        score = split_score(best.per_env["meta_test"])
    return root, url, best, score.estimate.describe(3)  # as the report renders it


def test_report_as_html_and_pdf_names_the_best_candidate_and_its_held_out_score(campaign):
    pypdf = pytest.importorskip("pypdf", reason="pypdf is not installed (pip install -e '.[dev]')")
    root, url, best, held_out = campaign
    out = root / "report"
    done = scientist(
        "report",
        NAME,
        "--db",
        url,
        "--out",
        str(out),
        "--format",
        "html,pdf,md",
        "--cache",
        str(root / "landscapes"),
        "--sandbox",
        "process",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    label = f"#{best.id} ({best.origin}, {best.operator})"

    html = (out / f"report-{NAME}.html").read_text()
    assert f"The best discovered candidate, {label}" in html and held_out in html
    assert f'alt="drift heatmap of {label}"' in html  # its landscape came out of the sandbox

    text = " ".join(
        "".join(
            page.extract_text() for page in pypdf.PdfReader(out / f"report-{NAME}.pdf").pages
        ).split()
    )
    assert "Discovered drift functions for mirror_drift: campaign e2e" in text
    assert f"The best discovered candidate, {label}," in text
    assert re.search(
        rf"{re.escape(label)}.{{0,200}}and {re.escape(held_out)} on the held-out", text
    ), text[:3000]
    for section in (
        "Abstract",
        "1. Method",
        "2. Results",
        "3. Discovered algorithms",
        "4. Comparison",
        "5. Limitations",
    ):
        assert section in text

    md = (out / f"report-{NAME}.md").read_text()
    assert (
        f"figures/drift_{best.id}.png" in md
        and (out / "figures" / f"drift_{best.id}.png").stat().st_size > 10_000
    )


def test_browser_shows_leaderboard_code_and_heatmap(campaign):
    pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
    )
    from test_web_browser import CHROMIUM, DRIVER, new_browser, serve

    if not (CHROMIUM and DRIVER):
        pytest.skip(
            "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    root, url, best, _ = campaign
    precomputed = scientist(
        "web",
        "--db",
        url,
        "--cache",
        str(root / "landscapes"),
        "--precompute",
        NAME,
        "--sandbox",
        "process",
    )
    assert precomputed.returncode == 0, precomputed.stderr[-3000:]
    with serve(url, root / "landscapes") as base, new_browser() as browser:
        wait = WebDriverWait(browser, 30)
        browser.get(base + "/")
        browser.find_element(By.LINK_TEXT, NAME).click()
        wait.until(ec.presence_of_element_located((By.ID, "leaderboard")))
        rows = browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")
        ids = [r.find_element(By.CSS_SELECTOR, "a.cid").text for r in rows]
        assert f"#{best.id}" in ids and len(ids) == 4  # three baselines and the discovery
        browser.find_element(By.CSS_SELECTOR, "#leaderboard").find_element(
            By.LINK_TEXT, f"#{best.id}"
        ).click()
        wait.until(ec.presence_of_element_located((By.ID, "code")))
        code = browser.find_element(By.CSS_SELECTOR, "#code .highlight").text
        assert "def drift(ratio, advantage):" in code
        last_line = [line.strip() for line in best.code.splitlines() if line.strip()][-1]
        assert last_line in code  # the candidate's own code, as archived
        image = wait.until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "#heatmap img.drift"))
        )
        wait.until(
            lambda d: d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", image
            )
        )
        assert browser.execute_script("return arguments[0].naturalHeight", image) > 300
