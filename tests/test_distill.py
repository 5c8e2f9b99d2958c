"""Distillation of a learned drift into a closed form (`scientist distill`).

A paid API cannot run in CI: litellm's real HTTP path is exercised against a local
OpenAI-compatible stand-in (tests/llm_server.py) that plays back recorded replies and keeps
the requests it received. The "learned" drift is the DPO baseline's code archived with
origin "es": the ES test suite (tests/test_es.py) covers producing real ES candidates; here
the source only needs to be a drift whose landscape the sandbox can sample, and with DPO the
right answer is known. Landscapes and the evaluation run for real in the process sandbox.

The unit tests check the description, the fit and the grid conditions on landscapes of the
baselines and a few broken drifts."""

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from archive import reads, writes
from archive.db import open_engine, transaction
from archive.schema import Campaign
from harness.landscape import compute_landscape
from sandbox.tasks import load_task
from scientist.analysis import detect_features
from scientist.distill import describe_landscape, fit_error, grid_conditions, worst_cells
from tests.llm_server import completion, prose_only, recorded_server

DPO_WRONG_CONSTANTS = """The table looks like DPO: a tanh-damped penalty on (r - 1) A for A >= 0, \
on log(r) A below.

```python
import jax.numpy as jnp


def drift(ratio, advantage):
    up = (ratio - 1.0) * advantage
    down = jnp.log(ratio) * advantage
    return jnp.where(advantage >= 0,
                     jnp.maximum(up - 2.5 * jnp.tanh(up / 2.5), 0.0),
                     jnp.maximum(down - 0.5 * jnp.tanh(down / 0.5), 0.0))
```
"""

DPO_CLOSED_FORM = '''Refitting the constants: 2 for A >= 0 and 0.6 for A < 0.

```python
import jax.numpy as jnp


def damped(x, scale):
    """x - c tanh(x / c): zero with zero slope at 0, linear far out."""
    return jnp.maximum(x - scale * jnp.tanh(x / scale), 0.0)


def drift(ratio, advantage):
    gain = advantage >= 0
    x = jnp.where(gain, ratio - 1.0, jnp.log(ratio)) * advantage
    return jnp.where(gain, damped(x, 2.0), damped(x, 0.6))
```
'''

# |r - 1| written so that autodiff reports slope 0 at r = 1 exactly: only the grid quotients see
# the kink.
KINKED = """import jax.numpy as jnp


def drift(ratio, advantage):
    distance = jnp.where(ratio > 1.0, ratio - 1.0, 0.0) + jnp.where(ratio < 1.0, 1.0 - ratio, 0.0)
    return 0.5 * distance * (1.0 + jnp.abs(advantage))
"""
NEGATIVE = (
    "import jax.numpy as jnp\n\n\n"
    "def drift(ratio, advantage):\n    return -jnp.square(ratio - 1.0) * jnp.abs(advantage)\n"
)

PRICE = (1.0, 2.0)  # USD per million input / output tokens for the unpriced local model
CALL_COST = (120 * PRICE[0] + 80 * PRICE[1]) / 1e6  # completion() reports 120 + 80 tokens
PROSE_COST = (120 * PRICE[0] + 31 * PRICE[1]) / 1e6  # prose_only() 120 + 31


@pytest.fixture(scope="module")
def landscapes():
    spec = load_task("mirror_drift")
    sources = {name: spec.baseline_source(name) for name in ("ppo", "dpo", "zero")}
    sources.update(kinked=KINKED, negative=NEGATIVE)
    return {
        name: compute_landscape("mirror_drift", source, sandbox="process")
        for name, source in sources.items()
    }


# -- description, fit and conditions ------------------------------------------------------


def test_the_description_is_a_table_of_the_drift_and_its_features(landscapes):
    dpo = landscapes["dpo"]
    features = detect_features(dpo)
    text = describe_landscape(dpo, features)
    d_table = text.split("\n\n")[0].splitlines()
    header, rows = d_table[1], d_table[3:]
    assert header.startswith("| A \\ r | ") and len(header.split("|")) - 3 == 14  # 14 ratio columns
    assert [row.split("|")[1].strip() for row in rows] == ["-2", "-1", "-0.5", "0.5", "1", "2"]
    one = header.split("|")[2:-1].index(" 1 ")
    assert all(row.split("|")[2:-1][one].strip() == "0" for row in rows)  # D(1, A) = 0
    # A value checked against DPO's closed form at the grid's ratio nearest 2.
    j = int(np.argmin(np.abs(dpo.ratio - 2.0)))
    x = (dpo.ratio[j] - 1.0) * 1.0
    assert f"{x - 2.0 * np.tanh(x / 2.0):.4g}" in rows[4]
    assert "dJ/dr = A - dD/dr" in text
    for sentence in features.describe():
        assert sentence in text
    assert len(text) < 4000  # compact enough for any prompt


def test_fit_error_is_zero_for_the_same_drift_and_large_for_another(landscapes):
    dpo, ppo, zero = landscapes["dpo"], landscapes["ppo"], landscapes["zero"]
    same = fit_error(dpo, dpo)
    assert same["drift_rmse"] == 0.0 and same["drift_r2"] == 1.0 and same["slope_rmse"] == 0.0
    assert (
        same["cells"] == 81 * 161 and same["target_nan_cells"] == same["candidate_nan_cells"] == 0
    )
    other = fit_error(dpo, ppo)
    assert other["drift_relative_rmse"] > 0.2 and other["drift_r2"] < 0.9
    assert other["slope_relative_rmse"] > 0.05 and other["drift_max_error"] > 0.1
    assert fit_error(zero, dpo)["drift_r2"] is None  # a constant target leaves R² undefined
    assert np.isfinite(fit_error(zero, dpo)["drift_relative_rmse"])  # the floor keeps it finite

    # NaN cells on either side are left out and counted.
    drift = np.array(dpo.drift)
    drift[0, 10:20] = np.nan  # A = -2, r from 0.38 to 0.43: the table's r = 0.4 among them
    holed = dataclasses.replace(dpo, drift=drift)
    fit = fit_error(dpo, holed)
    assert fit["candidate_nan_cells"] == 10 and fit["drift_rmse"] == 0.0
    assert fit_error(holed, dpo)["target_nan_cells"] == 10
    worst = worst_cells(dpo, holed)[0]
    assert worst.startswith("r = 0.39") and "A = -2" in worst and "yours is nan" in worst


def test_worst_cells_name_the_points_that_differ_most(landscapes):
    lines = worst_cells(landscapes["dpo"], landscapes["ppo"])
    assert len(lines) == 6 and all(
        line.startswith("r = ") and "D should be" in line for line in lines
    )
    assert worst_cells(landscapes["dpo"], landscapes["dpo"]) == []


def test_grid_conditions_pass_the_baselines_and_catch_kinks_and_negative_values(landscapes):
    for name in ("ppo", "dpo", "zero"):
        assert grid_conditions(landscapes[name]) == [], name
    kinked = grid_conditions(landscapes["kinked"])
    assert len(kinked) == 1 and kinked[0].startswith("kink at r = 1")
    negative = grid_conditions(landscapes["negative"])
    assert any(v.startswith("negative: D = ") for v in negative)


# -- the command, end to end --------------------------------------------------------------


def _archive_with_learned_drift(tmp_path) -> tuple[str, int]:
    url = f"sqlite:///{tmp_path}/archive.db"
    with transaction(open_engine(url)) as session:
        campaign = Campaign(
            name="es1", task="mirror_drift", budget="smoke", proposer="es", config={"name": "es1"}
        )
        session.add(campaign)
        session.flush()
        source = writes.add_candidate(
            session,
            campaign,
            code=load_task("mirror_drift").baseline_source("dpo"),
            origin="es",
            operator="es-mean",
            island=0,
            generation=4,
            note="stand-in for an ES mean network",
        )
        return url, source.id


def _distill(db: str, source_id: int, server, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
            "distill",
            str(source_id),
            "--model",
            "openai/recorded-model",
            "--api-base",
            server.base_url,
            "--sandbox",
            "process",
            "--price-in",
            str(PRICE[0]),
            "--price-out",
            str(PRICE[1]),
            "--db",
            db,
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCIENTIST_API_KEY": "sk-test-not-real"},
    )


@pytest.mark.slow
def test_distill_feeds_back_the_fit_until_the_closed_form_matches_then_scores_it(tmp_path):
    db, source_id = _archive_with_learned_drift(tmp_path)
    replies = [prose_only(), completion(DPO_WRONG_CONSTANTS), completion(DPO_CLOSED_FORM)]
    with recorded_server(replies) as server:
        done = _distill(db, source_id, server, "--attempts", "4", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    # One conversation: each request carries the previous reply and the feedback on it.
    assert len(server.requests) == 3
    assert all(r.headers.get("Authorization") == "Bearer sk-test-not-real" for r in server.requests)
    first, second, third = (r.prompt_text for r in server.requests)
    assert "drift D(r, A)" in first and "rollback" in first and "def drift" in first
    assert "sk-test-not-real" not in first + second + third
    assert second.startswith(first.rstrip("\n")[:200]) and "gave no usable module" in second
    assert [m["role"] for m in server.requests[2].messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    feedback = server.requests[2].messages[-1]["content"]
    assert (
        "relative" in feedback and "Largest differences" in feedback and "D should be" in feedback
    )

    assert [a["outcome"] for a in result["attempts"]] == ["no_code", "poor_fit", "accepted"]
    wrong = result["attempts"][1]["fit"]
    assert 0.1 < wrong["drift_relative_rmse"] < 0.3  # measured, not perfect
    assert (
        result["kept_attempt"] == 3
        and result["fit"]["drift_rmse"] < 1e-5
        and result["fit"]["drift_r2"] > 0.9999
    )
    assert (
        result["status"] == "ok"
        and result["fitness"] is not None
        and result["source_id"] == source_id
    )
    assert result["cost_usd"] == pytest.approx(PROSE_COST + 2 * CALL_COST)

    archive = sqlite3.connect(tmp_path / "archive.db")
    row = archive.execute(
        "SELECT id, campaign_id, origin, operator, parent_id, status, fitness, cost_usd, "
        "proposal_note, generation FROM candidate WHERE origin = 'distilled'"
    ).fetchall()
    assert len(row) == 1
    cid, campaign_id, _, operator, parent, status, fitness, cost, note, generation = row[0]
    assert (
        cid == result["candidate_id"]
        and operator == "distill"
        and parent == source_id
        and generation == 4
    )
    assert (
        campaign_id
        == archive.execute(
            "SELECT campaign_id FROM candidate WHERE id = ?", (source_id,)
        ).fetchone()[0]
    )
    assert (
        status == "ok" and fitness == pytest.approx(result["fitness"]) and "attempt 3 of 3" in note
    )
    # Every call is on record with its cost, the unkept replies included.
    calls = archive.execute(
        "SELECT candidate_id, cost_usd, messages FROM llm_call ORDER BY id"
    ).fetchall()
    assert [c[0] for c in calls] == [cid] * 3
    assert [len(json.loads(c[2])) for c in calls] == [
        2,
        4,
        6,
    ]  # each record is the conversation as sent
    assert [c[1] for c in calls] == pytest.approx([PROSE_COST, CALL_COST, CALL_COST])
    assert cost == pytest.approx(PROSE_COST + 2 * CALL_COST)
    with transaction(open_engine(db)) as session:
        assert reads.spent_usd(session, campaign_id) == pytest.approx(PROSE_COST + 2 * CALL_COST)
    kinds = {
        kind: json.loads(data) for kind, data in archive.execute("SELECT kind, data FROM event")
    }
    assert (
        kinds["distilled"]["fit"]["drift_rmse"] < 1e-5
        and kinds["distill_evaluated"]["status"] == "ok"
    )


def test_replies_without_code_are_archived_as_a_no_code_candidate_with_their_costs(tmp_path):
    db, source_id = _archive_with_learned_drift(tmp_path)
    with recorded_server([prose_only(), prose_only()]) as server:
        done = _distill(db, source_id, server, "--attempts", "2")
    assert done.returncode == 1, done.stderr[-3000:]
    assert len(server.requests) == 2 and "no_code" in done.stderr and "no_code" in done.stdout
    archive = sqlite3.connect(tmp_path / "archive.db")
    ((cid, status, parent, cost),) = archive.execute(
        "SELECT id, status, parent_id, cost_usd FROM candidate WHERE origin = 'distilled'"
    ).fetchall()
    assert status == "no_code" and parent == source_id and cost == pytest.approx(2 * PROSE_COST)
    assert (
        archive.execute("SELECT COUNT(*) FROM llm_call WHERE candidate_id = ?", (cid,)).fetchone()[
            0
        ]
        == 2
    )


def test_an_unknown_candidate_is_a_usage_error(tmp_path):
    db, source_id = _archive_with_learned_drift(tmp_path)
    with recorded_server([]) as server:
        done = _distill(db, source_id + 100, server)
    assert (
        done.returncode == 2
        and f"no candidate {source_id + 100}" in done.stderr
        and not server.requests
    )
