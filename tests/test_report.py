"""`scientist report` over test_web's small archive (real archive writes, evaluations filled
like the sandbox's): content, determinism, errors, and the LLM narrative against a local
recorded stand-in for a paid API (tests/llm_server.py; no real model is called here). The
report from a real smoke campaign, PDF included, is tested in test_smoke_campaign_end_to_end.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session
from test_web import build_archive

from archive.schema import Candidate
from scientist.compare import split_score
from scientist.report.data import collect
from scientist.report.narrative import check_prose, supported
from scientist.web.engine import reader_engine
from tests.llm_server import completion, recorded_server

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    ids = build_archive(root / "archive.db", root / "EXECUTED", fillers=12)
    return root, f"sqlite:///{root / 'archive.db'}", ids


def report(
    url: str, out: Path, *options: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
            "report",
            "demo",
            "--db",
            url,
            "--out",
            str(out),
            "--no-landscapes",
            *options,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def held_out(url: str, candidate_id: int) -> str:
    with Session(reader_engine(url)) as session:
        score = split_score(session.get(Candidate, candidate_id).per_env["meta_test"])
    return score.estimate.describe(3)


def test_report_content_is_from_the_archive_and_deterministic(archive, tmp_path):
    root, url, ids = archive
    first = report(url, tmp_path / "a", "--format", "html,md")
    assert first.returncode == 0, first.stderr[-3000:]
    second = report(url, tmp_path / "b", "--format", "md,html")
    assert second.returncode == 0, second.stderr[-3000:]
    html = (tmp_path / "a" / "report-demo.html").read_text()
    md = (tmp_path / "a" / "report-demo.md").read_text()
    # The same archive gives the same bytes, figures included.
    assert html == (tmp_path / "b" / "report-demo.html").read_text()
    assert md == (tmp_path / "b" / "report-demo.md").read_text()
    assert (tmp_path / "a" / "figures" / "fitness.png").read_bytes() == (
        tmp_path / "b" / "figures" / "fitness.png"
    ).read_bytes()

    best = f"#{ids['child']} (llm, rewrite)"
    abstract = md.split("## Abstract", 1)[1].split("## 1.", 1)[0]
    assert (
        f"The best discovered candidate, {best}" in abstract
        and held_out(url, ids["child"]) in abstract
    )
    assert "$0.0123" in abstract and "(test/model-a)" in abstract
    results = md.split("## 2. Results", 1)[1].split("## 3.", 1)[0]
    assert results.index(best) < results.index("*DPO*") < results.index("*PPO*")
    assert f"| {held_out(url, ids['ppo'])} |" in results
    assert "figures/fitness.png" in results and "figures/learning_curves.png" in results
    algorithms = md.split("## 3. Discovered algorithms", 1)[1].split("## 4.", 1)[0]
    assert (
        "jnp.clip(ratio, 0.75, 1.25)" in algorithms
        and "| zero_slope_at_one | passed |" in algorithms
    )
    assert f"Lineage: {best} ← PPO." in algorithms
    comparison = md.split("## 4. Comparison", 1)[1].split("## 5.", 1)[0]
    # Every other campaign on the task is compared by default (es-run; not `empty`, a value_loss
    # campaign).
    assert (
        comparison.startswith(" with es-run")
        and "ES campaign es-run: 2 generations, best member 1.100" in comparison
    )
    assert (
        "| LLM |" in comparison and "| mutation |" in comparison and "hand-designed" in comparison
    )
    limitations = md.split("## 5. Limitations", 1)[1]
    assert "1 of 17 evaluated candidates failed a stage (1 invalid)" in limitations
    assert "status is 'created'" in limitations and "not a symbolic proof" in limitations

    assert html.count("data:image/png;base64,") == 2  # self-contained: both figures inline
    assert "<script" not in html
    assert not (root / "EXECUTED").exists()  # no candidate code ran


def test_report_errors_are_clear(archive, tmp_path):
    _, url, _ = archive
    unknown = subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
            "report",
            "nope",
            "--db",
            url,
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2 and "no campaign named 'nope'" in unknown.stderr
    other_task = report(url, tmp_path, "--against", "empty")
    assert (
        other_task.returncode == 2
        and "is on task value_loss, not mirror_drift" in other_task.stderr
    )
    bad_format = report(url, tmp_path, "--format", "docx")
    assert bad_format.returncode == 2 and "choose from html, pdf, md" in bad_format.stderr
    no_model = subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
            "report",
            "es-run",
            "--db",
            url,
            "--out",
            str(tmp_path),
            "--narrative",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        no_model.returncode == 2
        and "the campaign used no LLM; name one with --model" in no_model.stderr
    )
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_narrative_is_prose_whose_numbers_are_checked_against_the_report(archive, tmp_path):
    """The model is a local recorded stand-in for a paid API, reached over HTTP by litellm."""
    _, url, ids = archive
    best = held_out(url, ids["child"]).split()[0]
    reply = (
        f"The rewrite of PPO widened the clip range and scored {best} on the held-out environment. "
        "It beat everything by 3.14159 standard deviations. "
        "The intervals overlap, so more seeds are needed.\n\n"
        "Next, try asymmetric clipping."
    )
    with recorded_server([completion(reply)]) as server:
        done = report(
            url,
            tmp_path,
            "--format",
            "md",
            "--narrative",
            "--model",
            "openai/recorded-model",
            "--api-base",
            server.base_url,
            env={"SCIENTIST_API_KEY": "sk-test-not-real"},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(server.requests) == 1
    prompt = server.requests[0].prompt_text
    assert (
        "discussion" in prompt
        and f"#{ids['child']} (llm, rewrite)" in prompt
        and "sk-test" not in prompt
    )
    assert server.requests[0].body["model"] == "recorded-model"
    md = (tmp_path / "report-demo.md").read_text()
    discussion = md.split("## 5. Discussion", 1)[1].split("## 6. Limitations", 1)[0]
    assert (
        f"scored {best} on the held-out" in discussion
        and "Next, try asymmetric clipping." in discussion
    )
    assert (
        "3.14159" not in discussion
        and "1 sentence(s) citing numbers not in the data were removed" in discussion
    )
    assert "Written by openai/recorded-model" in discussion


def test_number_check():
    assert (
        supported("1.18", {"1.181"})
        and supported("1.181", {"1.181"})
        and not supported("1.19", {"1.181"})
    )
    assert supported("9600000", {"9600000"}) and not supported("2.5", {"1.181", "3"})
    kept, dropped = check_prose(
        "A scored 1.18. B scored 7.7!\n\nC had 3 seeds.", "score 1.181 with 3 seeds"
    )
    assert kept == ("A scored 1.18.", "C had 3 seeds.") and dropped == 1


def test_collect_reads_only_what_it_shows(archive):
    _, url, ids = archive
    with Session(reader_engine(url)) as session:
        data = collect(session, "demo")
    assert [e.id for e in data.discovered][:1] == [ids["child"]] and len(data.discovered) == 3
    assert {b.label for b in data.baselines} == {"PPO", "DPO"}
    assert len(data.leaderboard) == 10 and data.counts == {"invalid": 1, "ok": 16}
    assert [p.generation for p in data.generations] == [0, 1, 2, 3]
    assert all(
        a.best_so_far <= b.best_so_far for a, b in zip(data.generations, data.generations[1:])
    )
    assert data.curves["meta_test"]["Acrobot-v1"][0].label == data.discovered[0].label
