"""Parent selection from a large archive.

    python -m benchmarks.selection [--candidates 100000] [--islands 4] [--db URL]

Fills a fresh archive with scored candidates spread over the islands (bulk inserts), then
times what the campaign loop does per proposal: drawing the parents by rank, the island's
best, its recent failures, and loading those candidates.
"""

import argparse
import json
import random
import statistics
import tempfile
import time

from archive import writes
from archive.db import open_engine, transaction
from archive.schema import Candidate, IslandMember, utcnow
from sandbox.vocabulary import Origin, Sandbox, Status
from scientist.search.strategies.islands import IslandEvolution
from scientist.search.strategy import SearchSettings, Slot
from scientist.search.views import views

CODE = (
    "import jax.numpy as jnp\n\n\n"
    "def drift(ratio, advantage):\n    return {c} * jnp.square(ratio - 1.0)\n"
)


def fill(engine, n: int, islands: int) -> int:
    with transaction(engine) as session:
        campaign = writes.create_campaign(
            session,
            name="bench",
            task="mirror_drift",
            budget="smoke",
            proposer=Origin.MUTATION,
            config={},
            note="benchmark fixture",
        )
        campaign_id = campaign.id
    rng, now, chunk = random.Random(0), utcnow(), 10_000
    for start in range(0, n, chunk):
        rows, members = [], []
        for i in range(start, min(n, start + chunk)):
            failed = rng.random() < 0.3
            fitness = None if failed else rng.gauss(0.8, 0.3)
            rows.append(
                dict(
                    id=i + 1,
                    campaign_id=campaign_id,
                    task="mirror_drift",
                    code=CODE.format(c=i),
                    code_hash=f"{i:064x}",
                    origin=Origin.MUTATION,
                    operator="mutate",
                    inspiration_ids=[],
                    island=i % islands,
                    generation=i // 100,
                    proposal_note="",
                    prompt_tokens=0,
                    completion_tokens=0,
                    cost_usd=0.0,
                    status=Status.INVALID if failed else Status.OK,
                    fitness=fitness,
                    per_env={},
                    stages=[],
                    log_tail="",
                    backend=Sandbox.PROCESS,
                    created_at=now,
                )
            )
            if not failed:
                members.append(
                    dict(
                        campaign_id=campaign_id,
                        island=i % islands,
                        candidate_id=i + 1,
                        since_generation=i // 100,
                        fitness=fitness,
                    )
                )
        with transaction(engine) as session:
            writes.insert_rows(session, Candidate, rows)
            writes.insert_rows(session, IslandMember, members)
    return campaign_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--islands", type=int, default=4)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--db", default=None, help="archive URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='selection-bench-')}/archive.db"
    engine = open_engine(url)
    start = time.perf_counter()
    campaign_id = fill(engine, args.candidates, args.islands)
    print(
        f"archive: {args.candidates} candidates on {args.islands} islands ({url}), "
        f"filled in {time.perf_counter() - start:.1f} s"
    )
    strategy = IslandEvolution(engine, campaign_id, SearchSettings(islands=args.islands))
    rng = random.Random(1)
    timings = {"parents (2 by rank)": [], "full request (parents, best 3, failures 2, load)": []}
    for draw in range(args.draws):
        island = draw % args.islands
        t0 = time.perf_counter()
        strategy.sample_parent_ids(island, 2, rng)
        t1 = time.perf_counter()
        ask = strategy.ask(Slot(1, island, draw), rng)
        shown = [views(engine, ids) for ids in vars(ask).values()]
        t2 = time.perf_counter()
        assert shown[0], "no parents drawn"
        timings["parents (2 by rank)"].append((t1 - t0) * 1e3)
        timings["full request (parents, best 3, failures 2, load)"].append((t2 - t1) * 1e3)
    figures: dict = {"candidates": args.candidates, "islands": args.islands, "draws": args.draws}
    for key, (name, values) in zip(("parents", "request"), timings.items()):
        values.sort()
        print(
            f"{name:<50} median {statistics.median(values):6.2f} ms"
            f"   p95 {values[int(0.95 * len(values))]:6.2f} ms"
            f"   max {values[-1]:6.2f} ms"
        )
        figures[f"{key}_median_ms"] = round(statistics.median(values), 3)
        figures[f"{key}_p95_ms"] = round(values[int(0.95 * len(values))], 3)
        figures[f"{key}_max_ms"] = round(values[-1], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
