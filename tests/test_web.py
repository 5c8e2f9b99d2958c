"""`scientist web`: every page over a small real archive (built with archive.writes and
filled like real evaluations), through FastAPI's TestClient, with a read-only engine. The
app must only read: GET only, no writes, and never import or run candidate code."""

import hashlib
import random
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from archive import reads, writes
from archive.db import open_engine, transaction
from archive.schema import Campaign, Candidate, ESCheckpoint, Event, IslandMember, LLMCall
from harness.cascade import Evaluation, StageRecord
from sandbox.landscape import Landscape, landscape_axes
from sandbox.tasks import load_task
from scientist.proposers.base import CallRecord
from scientist.web import queries as web_queries
from scientist.web.app import create_app
from scientist.web.charts import curves_chart, generation_chart, nice_ticks
from scientist.web.engine import ArchiveUnreadable, reader_engine
from scientist.web.landscapes import LandscapeCache, precompute

TASK = load_task("mirror_drift")
CHILD = TASK.baseline_source("ppo").replace("0.8, 1.2", "0.75, 1.25")
GRANDCHILD = (
    "import jax.numpy as jnp\n\n\ndef drift(ratio, advantage):\n"
    "    return jnp.square(ratio - 1.0) - 0.1 * jnp.abs(advantage)\n"
)
COUNTEREXAMPLE_DETAIL = "drift(r=1.5, A=2) = -0.15; a drift must be non-negative"
LOCAL = "http://127.0.0.1:8000"  # the app answers the Host a browser on this machine sends
FILLER = (
    "import jax.numpy as jnp\n\n\n"
    "def drift(ratio, advantage):\n    return {c} * jnp.square(ratio - 1.0)\n"
)


def marker_code(marker: Path) -> str:
    """A candidate that leaves a file behind if anything imports or runs it."""
    return (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('executed')\n\n\n"
        "def drift(ratio, advantage):\n    return 0.0 * ratio\n"
    )


def per_env(fitness: float, test: float, seed: int) -> dict:
    rng = random.Random(seed)

    def env(iqm: float, base: float) -> dict:
        scores = [iqm + rng.uniform(-0.1, 0.1) for _ in range(4)]
        return {
            "returns": [base * s for s in scores],
            "return_iqm": base * iqm,
            "normalised": {
                "scores": scores,
                "iqm": iqm,
                "ci_low": iqm - 0.094,
                "ci_high": iqm + 0.104,
            },
            "learning_curve": [base * iqm * (k / 20) for k in range(20)] + [None, base * iqm],
        }

    return {
        "meta_train": {"CartPole-v1": env(fitness, 500.0)},
        "meta_test": {"Acrobot-v1": env(test, -100.0)},
    }


def stages(final: str = "ok") -> list[StageRecord]:
    return [
        StageRecord("static", "ok", 0.01),
        StageRecord("trace", "ok", 1.2),
        StageRecord("validity", final, 2.5, "" if final == "ok" else COUNTEREXAMPLE_DETAIL),
    ] + (
        [StageRecord("trial", "ok", 4.0), StageRecord("full", "ok", 30.0, "trained 2 seeds")]
        if final == "ok"
        else []
    )


def checks(passed: bool) -> dict:
    names = ("finite", "non_negative", "zero_at_one", "zero_slope_at_one")
    return {
        "valid": passed,
        "checks": [
            {
                "name": n,
                "passed": passed or n != "non_negative",
                "detail": "ok" if passed or n != "non_negative" else COUNTEREXAMPLE_DETAIL,
                "counterexample": None
                if passed or n != "non_negative"
                else {"r": 1.5, "A": 2.0, "value": "-0.15"},
            }
            for n in names
        ],
    }


def ok(fitness: float, test: float, seed: int) -> Evaluation:
    return Evaluation(
        "ok",
        fitness,
        test,
        per_env=per_env(fitness, test, seed),
        stages=stages(),
        checks=checks(True),
        log_tail="training done\n",
        backend="process",
        seconds=37.5,
    )


def build_archive(path: Path, marker: Path, fillers: int = 60) -> dict:
    """Campaign `demo` (2 islands): PPO and DPO baselines on both, an LLM child of PPO (with
    its model call) that migrated to island 1, its invalid grandchild with a counterexample,
    a candidate that would write `marker` if run, and `fillers` scored mutations."""
    engine = open_engine(f"sqlite:///{path}")
    ids = {}
    with transaction(engine) as s:
        campaign = Campaign(
            name="demo",
            task="mirror_drift",
            budget="smoke",
            proposer="llm",
            config={
                "generations": 3,
                "islands": 2,
                "population": 2,
                "max_cost": 5.0,
                "models": ["test/model-a"],
            },
        )
        s.add(campaign)
        s.flush()
        for name, fitness in (("ppo", 1.0), ("dpo", 1.05)):
            c = writes.add_candidate(
                s,
                campaign,
                code=TASK.baseline_source(name),
                origin="baseline",
                operator="seed",
                island=0,
                generation=0,
                member_of=(0, 1),
                baseline_name=name,
                note=f"baseline {name}",
            )
            writes.record_evaluation(s, c.id, ok(fitness, fitness - 0.02, len(ids)))
            ids[name] = c.id
        call = CallRecord(
            "test/model-a",
            [
                {"role": "system", "content": "You design drifts."},
                {"role": "user", "content": "Improve <b>PPO</b>."},
            ],
            f"```python\n{CHILD}```",
            1200,
            300,
            0.0123,
            2.5,
        )
        child = writes.add_candidate(
            s,
            campaign,
            code=CHILD,
            origin="llm",
            operator="rewrite",
            island=0,
            generation=1,
            parent_id=ids["ppo"],
            inspiration_ids=[ids["dpo"]],
            model="test/model-a",
            note="wider clip",
            calls=[call],
        )
        writes.record_evaluation(s, child.id, ok(1.234, 1.111, 7))
        ids["child"] = child.id
        s.add(
            IslandMember(
                campaign_id=campaign.id,
                island=1,
                candidate_id=child.id,
                since_generation=2,
                migrated_from=0,
                fitness=1.234,
            )
        )
        writes.log_event(
            s,
            campaign.id,
            "migration",
            f"before generation 2: #{child.id} 0→1",
            {"generation": 2, "moves": [[child.id, 0, 1]]},
            key="migration:2",
        )
        grandchild = writes.add_candidate(
            s,
            campaign,
            code=GRANDCHILD,
            origin="llm",
            operator="diff",
            island=1,
            generation=2,
            parent_id=child.id,
            model="test/model-a",
        )
        writes.record_evaluation(
            s,
            grandchild.id,
            Evaluation(
                "invalid",
                None,
                stages=stages("invalid"),
                checks=checks(False),
                backend="process",
                seconds=4.0,
            ),
        )
        ids["grandchild"] = grandchild.id
        hostile = writes.add_candidate(
            s,
            campaign,
            code=marker_code(marker),
            origin="mutation",
            operator="mutate",
            island=1,
            generation=2,
            parent_id=ids["dpo"],
        )
        writes.record_evaluation(s, hostile.id, ok(0.5, 0.4, 11))
        ids["hostile"] = hostile.id
        rng = random.Random(3)
        ids["fillers"] = []
        for k in range(fillers):
            f = writes.add_candidate(
                s,
                campaign,
                code=FILLER.format(c=k + 2),
                origin="mutation",
                operator="mutate",
                island=k % 2,
                generation=1 + k % 3,
                parent_id=ids["ppo"],
            )
            writes.record_evaluation(
                s, f.id, ok(round(rng.uniform(0.1, 0.99), 4), rng.uniform(0.1, 0.9), k)
            )
            ids["fillers"].append(f.id)
        writes.log_event(s, campaign.id, "started", "generation 1 of 3")
        other = Campaign(
            name="empty", task="value_loss", budget="smoke", proposer="mutation", config={}
        )
        s.add(other)
        es = Campaign(
            name="es-run", task="mirror_drift", budget="smoke", proposer="es", config={"islands": 1}
        )
        s.add(es)
        s.flush()
        for generation, best in ((1, 0.9), (2, 1.1)):
            s.add(
                ESCheckpoint(
                    campaign_id=es.id,
                    generation=generation,
                    state=b"",
                    mean=b"",
                    best_fitness=best,
                    mean_fitness=best - 0.2,
                    member_fitness=[best, best - 0.4],
                    training_runs=4,
                    env_steps=40_000,
                    wall_seconds=6.0,
                )
            )
    engine.dispose()
    return ids


def synthetic_landscape() -> Landscape:
    """A stand-in for a sandbox-computed landscape: PPO-like drift on the real grid."""
    ratio, advantage = landscape_axes()
    r, a = np.meshgrid(ratio.astype(np.float64), advantage.astype(np.float64))
    drift = np.maximum(0.0, (r - np.clip(r, 0.8, 1.2)) * a)
    return Landscape(
        ratio.astype(np.float64),
        advantage.astype(np.float64),
        drift,
        a - np.gradient(drift, ratio, axis=1),
    )


def code_hash_of(engine, candidate_id: int) -> str:
    with Session(engine) as s:
        return s.get(Candidate, candidate_id).code_hash


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    marker = root / "EXECUTED"
    ids = build_archive(root / "archive.db", marker)
    return root, ids, marker


@pytest.fixture(scope="module")
def engine(archive):
    return reader_engine(f"sqlite:///{archive[0] / 'archive.db'}")


@pytest.fixture(scope="module")
def client(archive, engine):
    return TestClient(create_app(engine, archive[0] / "landscapes"), base_url=LOCAL)


def section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start : html.index("</section>", start)]


def ids_in(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'class="cid" href="/candidates/(\d+)"', html)]


def test_campaigns_list_shows_each_campaign_with_counts_best_and_spend(client, archive):
    _, ids, _ = archive
    response = client.get("/")
    assert response.headers["content-security-policy"].startswith(
        "default-src 'none'"
    )  # so no script runs
    assert response.headers["x-content-type-options"] == "nosniff"
    html = response.text
    assert "demo" in html and "empty" in html and "mirror_drift" in html and "llm" in html
    assert "invalid 1" in html and "ok 64" in html
    assert f'<a href="/candidates/{ids["child"]}">1.234</a>' in html
    assert "$0.0123" in html
    empty = client.get("/campaigns/2")
    assert (
        empty.status_code == 200
        and "Nothing scored yet" in empty.text
        and "No island members yet" in empty.text
    )
    es = client.get("/campaigns/3").text
    assert (
        "ES best" in section(es, "generations")
        and "8 training runs, 80,000 environment steps" in es
    )


def test_campaign_page_leaderboard_chart_islands_cost_and_events(client, archive):
    _, ids, _ = archive
    response = client.get("/campaigns/1")
    assert response.status_code == 200
    html = response.text
    board = ids_in(section(html, "leaderboard"))
    assert board[:3] == [ids["child"], ids["dpo"], ids["ppo"]] and len(board) == 50
    assert '<svg class="chart"' in section(html, "generations") and "<polyline" in section(
        html, "generations"
    )
    islands = section(html, "islands")
    assert f"#{ids['child']}</a>: island 0 → 1 before generation 2" in islands
    assert re.search(
        rf'<td class="num">1</td>\s*<td><a href="/candidates/{ids["child"]}">', islands
    )  # 1 migrant in
    assert "$0.0123" in section(html, "cost") and "test/model-a" in section(html, "cost")
    assert "before generation 2" in section(html, "events") and "generation 1 of 3" in section(
        html, "events"
    )


def test_leaderboard_pages_sorts_and_status_filter(client, archive, engine):
    _, ids, _ = archive
    with Session(engine) as s:
        expected = [c.id for c in reads.leaderboard(s, 1, top=None)]
    first, second = (
        ids_in(section(client.get(f"/campaigns/1?page={p}").text, "leaderboard")) for p in (1, 2)
    )
    assert first + second == expected and len(second) == 14
    assert 'class="next"' not in client.get("/campaigns/1?page=2").text
    assert (
        ids_in(section(client.get("/campaigns/1?page=99").text, "leaderboard")) == second
    )  # clamped to the last
    ascending = ids_in(section(client.get("/campaigns/1?order=asc&page=2").text, "leaderboard"))
    assert ascending[-3:] == [ids["ppo"], ids["dpo"], ids["child"]]
    with Session(engine) as s:
        by_test = [
            c.id
            for c in sorted(
                s.exec(select(Candidate).where(Candidate.status == "ok")).all(),
                key=lambda c: (-c.meta_test_fitness, c.id),
            )
        ]
    assert (
        ids_in(section(client.get("/campaigns/1?sort=meta_test").text, "leaderboard"))
        == by_test[:50]
    )
    assert (
        ids_in(section(client.get("/campaigns/1?sort=id").text, "leaderboard"))[0]
        == ids["fillers"][-1]
    )
    assert ids_in(section(client.get("/campaigns/1?status=invalid").text, "leaderboard")) == [
        ids["grandchild"]
    ]
    assert client.get("/campaigns/1?page=0").status_code == 400


def test_candidate_page_code_diff_lineage_stages_scores_and_calls(client, archive):
    _, ids, _ = archive
    html = client.get(f"/candidates/{ids['child']}").text
    code = section(html, "code")
    assert 'class="highlight' in code and '<span class="k">def</span>' in code
    assert re.search(r'<span class="gi">\+.*0\.75, 1\.25\)', code) and re.search(
        r'<span class="gd">-.*0\.8, 1\.2\)', code
    )
    lineage = section(html, "lineage")
    assert (
        f'<a href="/candidates/{ids["ppo"]}"' in lineage
        and f'href="/candidates/{ids["grandchild"]}"' in lineage
    )
    assert f'href="/candidates/{ids["dpo"]}">#{ids["dpo"]}</a>' in html  # the inspiration
    assert "trained 2 seeds" in section(html, "stages")
    scores = section(html, "scores")
    # The stored intervals rest on 4 seeds: too few for one of checked coverage, not shown.
    assert "[1.140, 1.338]" not in scores and "4 seeds: too few for an interval" in scores
    assert "CartPole-v1" in scores and "Against the baselines, seed by seed" in scores
    assert scores.count('<svg class="chart"') == 3  # intervals and two learning curves
    assert "Improve &lt;b&gt;PPO&lt;/b&gt;." in section(html, "calls")  # escaped, never markup


def test_candidate_page_shows_failed_checks_with_counterexamples(client, archive):
    _, ids, _ = archive
    html = client.get(f"/candidates/{ids['grandchild']}").text
    assert "FAIL" in section(html, "checks") and COUNTEREXAMPLE_DETAIL in section(html, "checks")
    assert "&#34;value&#34;: &#34;-0.15&#34;" in section(
        html, "checks"
    ) or '"value": "-0.15"' in section(html, "checks")
    assert f'#{ids["child"]}</a> ← <a href="/candidates/{ids["ppo"]}"' in section(html, "lineage")
    assert "No candidate has this one as its parent" in section(html, "lineage")


def test_compare_page_puts_candidates_side_by_side(client, archive):
    _, ids, _ = archive
    html = client.get(f"/compare?ids={ids['ppo']},{ids['child']},{ids['grandchild']}").text
    assert html.count('class="highlighttable"') == 3
    assert "1.234" in html and "meta_train CartPole-v1" in html and '<svg class="chart"' in html
    assert re.search(r'<span class="gi">\+.*0\.75, 1\.25\)', html)
    # the leaderboard's compare form sends repeated ids
    assert client.get(f"/compare?ids={ids['ppo']}&ids={ids['dpo']}").status_code == 200
    assert client.get(f"/compare?ids={ids['ppo']}").status_code == 400
    assert client.get("/compare?ids=1,x").status_code == 400


def test_unknown_ids_are_404(client, archive):
    _, ids, _ = archive
    for url in (
        "/campaigns/999",
        "/candidates/99999",
        "/candidates/abc",
        f"/compare?ids={ids['ppo']},99999",
        "/candidates/99999/drift.png",
        f"/candidates/{ids['ppo']}/drift.png",
        "/nowhere",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
    assert "no candidate 99999" in client.get("/candidates/99999").text


def test_only_get_is_accepted(client, archive):
    _, ids, _ = archive
    for url in ("/", "/campaigns/1", f"/candidates/{ids['child']}", "/compare?ids=1,2", "/nowhere"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert client.request(method, url).status_code == 405, (method, url)


def test_the_app_never_runs_candidate_code_and_never_writes(client, archive, engine):
    root, ids, marker = archive
    before = table_counts(engine)
    digest = hashlib.sha256((root / "archive.db").read_bytes()).hexdigest()
    hostile = ids["hostile"]
    for url in (
        "/",
        "/campaigns/1",
        "/campaigns/1?page=2",
        "/campaigns/1?sort=meta_test",
        "/campaigns/1?sort=id",
        f"/candidates/{hostile}",
        f"/candidates/{hostile}/code.py",
        f"/candidates/{hostile}/drift.png",
        f"/candidates/{ids['dpo']}",
        f"/compare?ids={hostile},{ids['dpo']}",
    ):
        assert client.get(url).status_code in (200, 404)
    assert "pathlib.Path" in client.get(f"/candidates/{hostile}/code.py").text
    assert not marker.exists()
    assert table_counts(engine) == before
    assert hashlib.sha256((root / "archive.db").read_bytes()).hexdigest() == digest
    with Session(engine) as s, pytest.raises(OperationalError, match="readonly"):
        s.add(Event(campaign_id=1, kind="x"))
        s.commit()


def table_counts(engine) -> dict:
    with Session(engine) as s:
        return {
            t.__name__: s.exec(select(func.count()).select_from(t)).one()
            for t in (Campaign, Candidate, IslandMember, LLMCall, Event)
        }


def test_heatmap_from_the_cache_or_how_to_get_it(archive, engine, tmp_path):
    _, ids, _ = archive
    client = TestClient(create_app(engine, tmp_path / "cache"), base_url=LOCAL)
    html = section(client.get(f"/candidates/{ids['ppo']}").text, "heatmap")
    assert "scientist web --precompute demo" in html and "--compute-landscapes" in html
    cache = LandscapeCache(tmp_path / "cache")
    cache.store(code_hash_of(engine, ids["ppo"]), synthetic_landscape())
    html = section(client.get(f"/candidates/{ids['ppo']}").text, "heatmap")
    assert f'<img src="/candidates/{ids["ppo"]}/drift.png"' in html and "drift-free region" in html
    png = client.get(f"/candidates/{ids['ppo']}/drift.png")
    assert (
        png.status_code == 200
        and png.headers["content-type"] == "image/png"
        and png.content[:4] == b"\x89PNG"
    )
    # a corrupt cache file is reported, never trusted
    cache.npz(code_hash_of(engine, ids["dpo"])).write_bytes(b"PK\x03\x04 not really")
    assert "is invalid" in section(client.get(f"/candidates/{ids['dpo']}").text, "heatmap")
    assert client.get(f"/candidates/{ids['dpo']}/drift.png").status_code == 404


def test_compute_landscapes_runs_in_the_background_worker(archive, engine, tmp_path):
    _, ids, _ = archive
    threads, release = [], threading.Event()

    def fake_sandbox(task, code, sandbox):
        threads.append(threading.current_thread().name)
        release.wait(10)
        return synthetic_landscape()

    client = TestClient(
        create_app(engine, tmp_path / "cache", compute_landscapes=True, compute=fake_sandbox),
        base_url=LOCAL,
    )
    html = section(client.get(f"/candidates/{ids['child']}").text, "heatmap")
    assert "computing this drift" in html
    release.set()
    for _ in range(100):
        html = section(client.get(f"/candidates/{ids['child']}").text, "heatmap")
        if "<img" in html:
            break
        time.sleep(0.1)
    assert "<img" in html and threads == ["landscape-worker"]
    assert client.get(f"/candidates/{ids['child']}/drift.png").status_code == 200


def test_precompute_fills_the_cache_best_first_once_per_code(archive, engine, tmp_path):
    _, ids, _ = archive
    seen = []
    dpo = TASK.baseline_source("dpo")

    def fake_sandbox(task, code, sandbox):
        seen.append(code)
        if code == dpo:
            raise ValueError("the landscape run failed")
        return synthetic_landscape()

    cache = LandscapeCache(tmp_path / "cache")
    result = precompute(engine, "demo", cache, top=3, compute=fake_sandbox, echo=lambda line: None)
    assert (result.computed, result.cached, [i for i, _ in result.failed]) == (2, 0, [ids["dpo"]])
    assert seen[:3] == [CHILD, dpo, TASK.baseline_source("ppo")] and cache.has(
        code_hash_of(engine, ids["child"])
    )
    assert (
        tmp_path / "cache" / f"{code_hash_of(engine, ids['child'])}.png"
    ).is_file()  # rendered ahead of any page
    again = precompute(engine, "demo", cache, top=6, compute=fake_sandbox, echo=lambda line: None)
    assert (again.computed, again.cached, [i for i, _ in again.failed]) == (3, 2, [ids["dpo"]])
    with pytest.raises(LookupError):
        precompute(engine, "nope", cache, compute=fake_sandbox)
    with pytest.raises(ValueError, match="no drift"):
        precompute(engine, "empty", cache, compute=fake_sandbox)


def test_ranked_ids_merge_islands_like_a_global_sort(tmp_path):
    """Baselines on every island and migrants on two: the merged, de-duplicated pages are
    exactly the candidate table's fitness order, page after page, either direction."""
    engine = open_engine(f"sqlite:///{tmp_path}/a.db")
    rng = random.Random(0)
    with transaction(engine) as s:
        campaign = Campaign(
            name="c", task="mirror_drift", budget="smoke", proposer="mutation", config={}
        )
        s.add(campaign)
        s.flush()
        for k in range(240):
            baseline = k < 3
            c = writes.add_candidate(
                s,
                campaign,
                code=FILLER.format(c=k),
                origin="baseline" if baseline else "mutation",
                operator="m",
                island=k % 3,
                generation=k // 30,
                member_of=(0, 1, 2) if baseline else None,
            )
            fitness = round(rng.uniform(0, 2), 1)  # many ties
            writes.record_evaluation(
                s,
                c.id,
                Evaluation("ok", fitness, None)
                if rng.random() > 0.2
                else Evaluation("invalid", None),
            )
        best = s.exec(select(IslandMember).where(IslandMember.fitness > 1.5)).all()
        for m in best[:20]:
            if s.get(IslandMember, (campaign.id, (m.island + 1) % 3, m.candidate_id)) is None:
                s.add(
                    IslandMember(
                        campaign_id=campaign.id,
                        island=(m.island + 1) % 3,
                        candidate_id=m.candidate_id,
                        migrated_from=m.island,
                        fitness=m.fitness,
                    )
                )
    with Session(engine) as s:
        expected = [c.id for c in reads.leaderboard(s, campaign.id, top=None)]
        for descending in (True, False):
            pages = [
                web_queries.ranked_ids(s, campaign.id, [0, 1, 2], offset, 7, descending)
                for offset in range(0, len(expected) + 7, 7)
            ]
            merged = [i for page in pages for i in page]
            want = (
                expected
                if descending
                else sorted(expected, key=lambda i: (s.get(Candidate, i).fitness, i))
            )
            assert merged == want


def test_deep_pages_come_from_a_memoised_ordering_that_agrees(client, engine, monkeypatch):
    monkeypatch.setattr(web_queries, "DEEP", 10)  # page 2 onwards is "deep"
    with Session(engine) as s:
        expected = [c.id for c in reads.leaderboard(s, 1, top=None)]
        fitness = {
            c.id: c.fitness for c in s.exec(select(Candidate).where(Candidate.status == "ok")).all()
        }
    pages = [
        ids_in(section(client.get(f"/campaigns/1?page={p}").text, "leaderboard")) for p in (1, 2)
    ]
    assert pages[0] + pages[1] == expected
    ascending = [
        ids_in(section(client.get(f"/campaigns/1?order=asc&page={p}").text, "leaderboard"))
        for p in (1, 2)
    ]
    assert ascending[0] + ascending[1] == sorted(expected, key=lambda i: (fitness[i], i))


def test_memo_recomputes_on_a_new_fingerprint_unless_allowed_to_be_stale():
    now = [0.0]
    memo, calls = web_queries.Memo(size=2, clock=lambda: now[0]), []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert memo.get("a", 1, compute) == 1 and memo.get("a", 1, compute) == 1
    assert memo.get("a", 2, compute) == 2  # new fingerprint
    assert memo.get("a", 3, compute, max_stale=30) == 2  # changed, but young enough
    now[0] = 31.0
    assert memo.get("a", 3, compute, max_stale=30) == 3
    memo.get("b", 1, compute), memo.get("c", 1, compute)
    assert "a" not in memo.items  # least recently used, dropped


def test_charts_are_svg_with_escaped_labels():
    assert [round(t, 6) for t in nice_ticks(0.0, 1.0)] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-3.7, 12.2) == [0.0, 5.0, 10.0]
    chart = curves_chart([("<script>", [1.0, None, 2.0, 3.0])])
    assert "<script>" not in chart and "&lt;script&gt;" in chart and chart.count("<polyline") == 1
    progression = reads.Progression(
        [reads.GenerationStat(0, 2, 1.0, 0.9), reads.GenerationStat(1, 5, 1.2, 0.7)],
        None,
        es=[(1, 1.1, 0.8), (2, 1.3, 0.9)],
    )
    svg = generation_chart(progression)
    assert svg.startswith("<svg") and "ES best" in svg
    assert generation_chart(reads.Progression([], None)) is None


def test_reader_engine_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(ArchiveUnreadable, match="no archive"):
        reader_engine(f"sqlite:///{tmp_path}/missing.db")
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(ArchiveUnreadable, match="not an rl-scientist archive"):
        reader_engine(f"sqlite:///{tmp_path}/empty.db")


def test_cli_errors_exit_2(archive):
    from scientist.cli import app

    root, _, _ = archive
    runner = CliRunner()
    missing = runner.invoke(app, ["web", "--db", f"sqlite:///{root}/nothing.db"])
    assert missing.exit_code == 2 and "no archive" in missing.output
    unknown = runner.invoke(
        app,
        [
            "web",
            "--db",
            f"sqlite:///{root}/archive.db",
            "--precompute",
            "nope",
            "--cache",
            str(root / "c"),
        ],
    )
    assert unknown.exit_code == 2 and "no campaign named 'nope'" in unknown.output


def test_precompute_in_the_process_sandbox_then_the_pages_show_the_heatmaps(
    archive, engine, tmp_path
):
    """The real thing: `scientist web --precompute` runs the two best drifts in the process
    sandbox and caches their landscapes; the pages then show them. The hostile candidate
    is not among them, and nothing ran it here."""
    import subprocess
    import sys

    root, ids, marker = archive
    cache = tmp_path / "cache"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
            "web",
            "--db",
            f"sqlite:///{root / 'archive.db'}",
            "--precompute",
            "demo",
            "--top",
            "2",
            "--sandbox",
            "process",
            "--cache",
            str(cache),
        ],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 landscapes computed, 0 already cached, 0 failed" in done.stderr
    client = TestClient(create_app(engine, cache), base_url=LOCAL)
    child = section(client.get(f"/candidates/{ids['child']}").text, "heatmap")
    dpo = section(client.get(f"/candidates/{ids['dpo']}").text, "heatmap")
    assert "<img" in child and "hard clip" in child and "<img" in dpo and "rollback" in dpo.lower()
    assert client.get(f"/candidates/{ids['dpo']}/drift.png").content[:4] == b"\x89PNG"
    assert not marker.exists()
