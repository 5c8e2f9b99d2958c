"""The archive browser on a large archive.

    python -m benchmarks.web [--candidates 100000] [--islands 4] [--repeats 20] [--db URL]

Fills a fresh archive with benchmarks.selection.fill, then makes its rows the size of real
ones: scored candidates get per-environment results shaped like the quick budget's (4
environments, 4 seeds, 122-point learning curves, about 10 kB of JSON), stages and a check
report; parents link generation to generation; every tenth candidate has a model call
with a 4 kB prompt; a few migrants and events. Then times the main pages through FastAPI's
TestClient on a read-only engine: the first request of each page (cold: memoised aggregates
are computed) and the median and 95th percentile of the repeats.
"""

import sandbox  # noqa: F401  (XLA flags, before anything imports jax)

# isort: split

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from archive import reads, writes
from archive.db import open_engine, transaction
from archive.schema import LLMCall
from benchmarks.selection import fill
from sandbox.vocabulary import EventKind, Status
from scientist.web.app import create_app
from scientist.web.engine import reader_engine

ENVS = (
    ("meta_train", "Breakout-MinAtar"),
    ("meta_test", "Asterix-MinAtar"),
    ("meta_test", "Freeway-MinAtar"),
    ("meta_test", "SpaceInvaders-MinAtar"),
)


def realistic_results(points: int, seeds: int = 4) -> tuple[dict, list, dict]:
    rng = random.Random(0)
    per_env: dict = {}
    for split, env in ENVS:
        scores = [rng.uniform(0.5, 1.5) for _ in range(seeds)]
        per_env.setdefault(split, {})[env] = {
            "returns": [30 * s for s in scores],
            "return_iqm": 30.0,
            "normalised": {"scores": scores, "iqm": 1.0, "ci_low": 0.8, "ci_high": 1.2},
            "learning_curve": [rng.uniform(0, 40) for _ in range(points)],
        }
    stages = [
        {"name": n, "status": Status.OK, "seconds": rng.uniform(0.1, 30), "detail": ""}
        for n in ("static", "trace", "validity", "smoke", "full", "score")
    ]
    checks = {
        "valid": True,
        "checks": [
            {"name": n, "passed": True, "detail": Status.OK, "counterexample": None}
            for n in ("finite", "non_negative", "zero_at_one", "zero_slope_at_one")
        ],
    }
    return per_env, stages, checks


def make_realistic(
    engine, campaign_id: int, n: int, islands: int, points: int, calls_every: int
) -> None:
    per_env, stages, checks = realistic_results(points)
    with transaction(engine) as session:
        writes.update_candidates(
            session,
            campaign_id,
            Status.OK,
            {"per_env": per_env, "stages": stages, "checks": checks, "eval_seconds": 37.5},
        )
        # fill() puts 100 candidates in each generation: each one's parent is in the one before.
        writes.chain_parents(session, campaign_id, 100)
    prompt = [{"role": "system", "content": "x" * 1000}, {"role": "user", "content": "y" * 3000}]
    rows = [
        dict(
            campaign_id=campaign_id,
            candidate_id=i,
            model="bench/model",
            messages=prompt,
            response="z" * 800,
            prompt_tokens=1200,
            completion_tokens=300,
            cost_usd=0.0021,
            seconds=2.0,
            attempts=1,
        )
        for i in range(1, n + 1, calls_every)
    ]
    with transaction(engine) as session:
        for start in range(0, len(rows), 5000):
            writes.insert_rows(session, LLMCall, rows[start : start + 5000])
    with transaction(engine) as session:
        rng = random.Random(2)
        scored = [i for i in range(1, n + 1, 7)]
        for generation in range(2, 10, 2):
            for island in range(islands):
                candidate = next(
                    i
                    for i in rng.sample(scored, 50)
                    if (i - 1) % islands == island
                    and reads.membership(session, campaign_id, island, i) is not None
                )
                target = (island + 1) % islands
                if reads.membership(session, campaign_id, target, candidate) is None:
                    writes.add_migrant(session, campaign_id, candidate, island, target, generation)
            writes.log_event(
                session, campaign_id, EventKind.MIGRATION, f"before generation {generation}"
            )
    with transaction(engine) as session:
        writes.analyze(session)


def pages(n: int, best: int) -> dict[str, str]:
    rng = random.Random(1)
    some = [rng.randrange(1, n + 1) for _ in range(3)]
    last_page = n // 50
    return {
        "campaigns list": "/",
        "campaign (leaderboard page 1)": "/campaigns/1",
        "campaign, leaderboard page 2": "/campaigns/1?page=2",
        f"campaign, leaderboard page {last_page // 2}": f"/campaigns/1?page={last_page // 2}",
        "campaign, by meta-test fitness": "/campaigns/1?sort=meta_test",
        "campaign, invalid ones": "/campaigns/1?status=invalid",
        "candidate (best)": f"/candidates/{best}",
        "candidate (random)": f"/candidates/{some[0]}",
        "compare 3": f"/compare?ids={best},{some[1]},{some[2]}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--islands", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--curve-points", type=int, default=122, help="learning-curve length (quick budget: 122)"
    )
    parser.add_argument(
        "--calls-every", type=int, default=10, help="one model call per this many candidates"
    )
    parser.add_argument("--db", default=None, help="archive URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="web-bench-"))
    url = args.db or f"sqlite:///{workdir}/archive.db"
    engine = open_engine(url)
    start = time.perf_counter()
    campaign_id = fill(engine, args.candidates, args.islands)
    make_realistic(
        engine, campaign_id, args.candidates, args.islands, args.curve_points, args.calls_every
    )
    with transaction(engine) as session:
        best = reads.leaderboard(session, campaign_id, top=1)[0].id
    engine.dispose()
    size = (
        Path(url.removeprefix("sqlite:///")).stat().st_size / 1e6
        if url.startswith("sqlite:///")
        else float("nan")
    )
    built = time.perf_counter() - start
    print(
        f"archive: {args.candidates} candidates on {args.islands} islands, {size:.0f} MB ({url}), "
        f"built in {built:.1f} s"
    )
    reader = reader_engine(url)
    client = TestClient(create_app(reader, workdir / "landscapes"), base_url="http://127.0.0.1")
    print(f"{'page':<36} {'first':>9} {'median':>9} {'p95':>9}   (ms; {args.repeats} repeats)")
    rows: list[dict] = []
    for name, path in pages(args.candidates, best).items():
        timings = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - t0) * 1e3)
            if response.status_code != 200:
                raise SystemExit(f"{path}: HTTP {response.status_code}")
        first, rest = timings[0], sorted(timings[1:])
        p95 = rest[min(len(rest) - 1, int(0.95 * len(rest)))]
        print(f"{name:<36} {first:9.1f} {statistics.median(rest):9.1f} {p95:9.1f}")
        rows.append(
            {
                "page": name,
                "path": path,
                "first_ms": round(first, 2),
                "median_ms": round(statistics.median(rest), 2),
                "p95_ms": round(p95, 2),
            }
        )
    figures = {
        "candidates": args.candidates,
        "islands": args.islands,
        "repeats": args.repeats,
        "archive_mb": None if size != size else round(size, 1),  # NaN: not a SQLite file
        "build_s": round(built, 1),
        "slowest_first_ms": max(r["first_ms"] for r in rows),
        "slowest_median_ms": max(r["median_ms"] for r in rows),
        "slowest_p95_ms": max(r["p95_ms"] for r in rows),
        "pages": rows,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
