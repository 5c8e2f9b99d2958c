"""An `llm` campaign from the CLI, end to end: litellm's real HTTP client talks to a local
OpenAI-compatible server started by this test, which plays back recorded replies (a paid
API cannot run in CI; with a key present the same command works against a real provider).
The replies include prose without code and a 429; candidates are evaluated for real in the
process sandbox on the smoke budget, and the dollar cap stops the proposals.

Slow: about 4 minutes on 2 CPU cores."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.llm_server import Reply, completion, prose_only, rate_limited, recorded_server

pytestmark = pytest.mark.slow

SMOOTH = '''Here is a smoother drift.

```python
import jax.numpy as jnp


def drift(ratio, advantage):
    """Quadratic in log-ratio, scaled by the advantage's size."""
    return 0.5 * jnp.square(jnp.log(ratio)) * (1.0 + jnp.abs(advantage))
```
'''

WIDER_CLIP = """```python
import jax.numpy as jnp


def drift(ratio, advantage):
    clipped = jnp.clip(ratio, 0.7, 1.3)
    return jnp.maximum((ratio - clipped) * advantage, 0.0)
```"""

PRICE = (1.0, 2.0)  # dollars per million input / output tokens for the unpriced local model
CALL_COST = (120 * PRICE[0] + 80 * PRICE[1]) / 1e6
PROSE_COST = (120 * PRICE[0] + 31 * PRICE[1]) / 1e6  # prose_only() answers with 31 tokens
SPENT = PROSE_COST + 2 * CALL_COST


def test_llm_campaign_through_litellm_with_retries_no_code_and_a_dollar_cap(tmp_path):
    replies = [prose_only(), rate_limited("1"), completion(SMOOTH), completion(WIDER_CLIP)]
    config = tmp_path / "campaign.toml"
    config.write_text(f"price_per_million = [{PRICE[0]}, {PRICE[1]}]\nmax_cost = {SPENT - 1e-9}\n")
    db = f"sqlite:///{tmp_path}/archive.db"
    with recorded_server(replies) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "scientist.cli",
                "run",
                "--task",
                "mirror_drift",
                "--budget",
                "smoke",
                "--model",
                "openai/recorded-model",
                "--api-base",
                server.base_url,
                "--generations",
                "1",
                "--population",
                "3",
                "--islands",
                "1",
                "--workers",
                "2",
                "--sandbox",
                "process",
                "--seed",
                "1",
                "--reevaluate-top",  # promotions are tested elsewhere; this is the LLM path
                "0",
                "--config",
                str(config),
                "--name",
                "llm1",
                "--db",
                db,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "SCIENTIST_API_KEY": "sk-test-not-real"},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cost_cap" in done.stderr

    # Four requests: prose, a 429 retried into SMOOTH (one call, two attempts), WIDER_CLIP.
    assert len(server.requests) == 4
    assert all(r.headers.get("Authorization") == "Bearer sk-test-not-real" for r in server.requests)
    assert not any("sk-test-not-real" in r.prompt_text for r in server.requests)
    first_prompt = server.requests[0].prompt_text
    assert "def drift" in first_prompt and "fitness" in first_prompt.lower()

    db = sqlite3.connect(tmp_path / "archive.db")
    rows = db.execute(
        "SELECT id, origin, status, model, cost_usd, prompt_tokens, parent_id, proposal_note "
        "FROM candidate WHERE origin = 'llm' ORDER BY id"
    ).fetchall()
    assert [r[2] for r in rows] == ["no_code", "ok", "ok"], rows
    assert all(r[3] == "openai/recorded-model" for r in rows)
    assert [r[4] for r in rows] == pytest.approx([PROSE_COST, CALL_COST, CALL_COST])
    assert all(r[6] is not None for r in rows)  # every proposal names the parent it was shown
    calls = db.execute("SELECT attempts, error, cost_usd FROM llm_call ORDER BY id").fetchall()
    assert [c[0] for c in calls] == [1, 2, 1] and all(c[1] is None for c in calls)
    assert db.execute("SELECT status FROM campaign").fetchone()[0] == "cost_cap"

    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "scientist.cli",
            "status",
            "llm1",
            "--db",
            f"sqlite:///{tmp_path}/archive.db",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"${SPENT:.4f}" in status.stdout and "cost_cap" in status.stdout
    shown = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "scientist.cli",
                "archive",
                "show",
                str(rows[0][0]),
                "--json",
                "--db",
                f"sqlite:///{tmp_path}/archive.db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
    assert (
        shown["code"] is None
        and shown["note"]
        and shown["calls"][0]["cost_usd"] == pytest.approx(PROSE_COST)
    )


def test_llm_campaign_without_a_key_reaches_a_local_server_and_stops_on_a_config_error(tmp_path):
    """No key in the environment: the local server is still reached (a placeholder key), and
    its "model not found" stops the campaign at once with one line, never retried."""
    missing = Reply(
        status=404,
        body={"error": {"message": "model 'M' not found", "type": "invalid_request_error"}},
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    db = f"sqlite:///{tmp_path}/archive.db"
    with recorded_server([missing] * 5) as server:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "scientist.cli", "run", "--task", "mirror_drift"),
                *("--model", "openai/M", "--api-base", server.base_url, "--budget", "smoke"),
                *("--generations", "1", "--population", "2", "--islands", "1", "--workers", "1"),
                *("--reevaluate-top", "0"),
                *("--sandbox", "process", "--seed", "1", "--name", "nokey", "--db", db),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(server.requests) == 1  # reached, and not retried
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("campaign stopped: openai/M: the model or the endpoint does not exist")
    assert line.endswith("check --model and --api-base")
    status = sqlite3.connect(tmp_path / "archive.db").execute("SELECT status FROM campaign")
    assert status.fetchone()[0] == "failed"
