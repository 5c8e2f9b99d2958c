"""Elite re-evaluation, paired comparison with PPO and the best-of-N control arm, on real
campaigns (issue 16).

The first campaign trains for real (process sandbox, smoke budget): every candidate is PPO's
drift written another way, so none may come out labelled "beats PPO". The others use a
stand-in for the sandbox (no training) to watch selection decisions as they are made.
"""

import hashlib
from concurrent.futures import Future

import pytest

from archive import reads
from archive.db import open_engine, transaction
from harness.cascade import Evaluation
from sandbox.fitness import interquartile_mean
from sandbox.tasks import load_task
from sandbox.vocabulary import Fidelity, Origin, Review, Selection, Status
from scientist.campaign.config import CampaignConfig
from scientist.campaign.loop import CampaignLoop
from scientist.proposers.base import Proposal, ProposalRequest
from scientist.proposers.mutation import MutationProposer
from scientist.search.paired import labels, versus_baselines
from tests.stand_ins import blockwise

PPO_VARIANTS = {
    # clip range 0.19 and 0.21: behaviourally different, about as good as PPO
    "eps 0.19": "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    clipped = jnp.clip(ratio, 0.81, 1.19)\n"
    "    return jnp.maximum((ratio - clipped) * advantage, 0.0)\n",
    "eps 0.21": "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    return jnp.maximum(advantage * (ratio - jnp.clip(ratio, 0.79, 1.21)), 0.0)\n",
    # PPO itself, spelled differently: a duplicate of the baseline by behaviour
    "eps 0.2": "import jax.numpy as jnp\n\ndef drift(ratio, advantage):\n"
    "    inside = jnp.minimum(jnp.maximum(ratio, 0.8), 1.2)\n"
    "    return jnp.maximum(0.0, advantage * ratio - advantage * inside)\n",
}


class Fixed:
    """A proposer that hands out the given sources in turn (the campaign's only stand-in: the
    sandbox, the scorer, the archive and the loop are the real ones)."""

    name = Origin.MUTATION

    def __init__(self, sources: dict[str, str]):
        self.sources = list(sources.items())
        self.given = 0

    def propose(self, request: ProposalRequest) -> Proposal:
        note, code = self.sources[self.given % len(self.sources)]
        self.given += 1
        return Proposal(code, "seed", [p.id for p in request.parents], note=note)


@pytest.fixture(scope="module")
def ppo_variants(tmp_path_factory):
    engine = open_engine(f"sqlite:///{tmp_path_factory.mktemp('variants') / 'archive.db'}")
    config = CampaignConfig(
        name="variants",
        task="mirror_drift",
        generations=1,
        islands=1,
        population=len(PPO_VARIANTS),
        budget="smoke",
        sandbox="process",
        workers=1,
        seed=11,
        reevaluate_top=10,  # every variant: the baselines rank among the top too
        # the smoke budget's re-evaluation: 4 fresh blocks, 2 + 8 seeds on CartPole
    )
    campaign = CampaignLoop(engine, config, Fixed(PPO_VARIANTS)).run()
    assert campaign.status == "finished", campaign.message
    return engine, campaign.id


@pytest.mark.slow
def test_ppo_written_differently_is_never_labelled_beats_ppo(ppo_variants):
    engine, campaign_id = ppo_variants
    with transaction(engine) as session:
        rows = reads.candidates(session, campaign_id)
        proposed = [c for c in rows if c.origin != Origin.BASELINE]
        assert sorted(c.proposal_note for c in proposed) == sorted(PPO_VARIANTS)
        same = next(c for c in proposed if c.proposal_note == "eps 0.2")
        assert same.status == Status.DUPLICATE  # PPO by behaviour: never trained
        scored = [c for c in proposed if c.status == Status.OK]
        assert len(scored) == 2
        paired = versus_baselines(session, scored)
        alone = versus_baselines(session, scored[:1])[scored[0].id]
    # Labels are corrected for every label the campaign could print (2 re-evaluated
    # candidates x PPO and DPO), whichever candidates are asked about.
    assert {p.claims for ps in paired.values() for p in ps} == {4}
    assert [p.claims for p in alone] == [4, 4]
    for c in scored:
        assert c.review == Review.DONE and c.seeds == 10
        versus = {p.baseline: p for p in paired[c.id]}
        assert set(versus) == {"ppo", "dpo"}
        # The interval rests on the 8 fresh paired seeds alone, never on the search block
        # that picked the candidate, and does not claim a win.
        assert versus["ppo"].blocks == (1, 2, 3, 4) and versus["ppo"].difference.seeds == 8
        assert versus["ppo"].difference.has_interval
        assert not versus["ppo"].beats and "beats PPO" not in labels(paired[c.id]), versus


@pytest.mark.slow
def test_elites_pool_fresh_blocks_paired_with_the_baselines(ppo_variants):
    """Each re-evaluated candidate trained blocks 1..4 from the same seeds as PPO and DPO;
    its fitness is the IQM over all 10 seeds of its rounds, and it ranks on its island by
    that fitness less a standard error."""
    engine, campaign_id = ppo_variants
    with transaction(engine) as session:
        rows = {c.id: c for c in reads.candidates(session, campaign_id)}
        rounds = reads.rounds_of(session, list(rows))
        members = {m.candidate_id: m.fitness for m in _members(session, campaign_id)}
    baselines = {c.baseline_name: c for c in rows.values() if c.origin == Origin.BASELINE}
    seeds_of = lambda c: {r.block: r.training_seed for r in rounds[c.id]}  # noqa: E731
    for c in rows.values():
        if c.status != Status.OK or c.origin == Origin.BASELINE:
            continue
        assert sorted(seeds_of(c)) == [0, 1, 2, 3, 4]
        for name in ("ppo", "dpo"):
            theirs = seeds_of(baselines[name])
            assert all(theirs[b] == s for b, s in seeds_of(c).items())
        assert len(set(seeds_of(c).values())) == 5  # fresh seeds in every block
        evals = {r.eval_seed for r in rounds[c.id]}
        assert len(evals) == 5
        scores = [
            x for r in rounds[c.id] for x in r.scores["meta_train"]["CartPole-v1"]["normalised"]
        ]
        assert len(scores) == 10
        assert c.fitness == pytest.approx(interquartile_mean(scores))
        assert members[c.id] < c.fitness  # the rank score: less one standard error
        normalised = c.per_env["meta_train"]["CartPole-v1"]["normalised"]
        assert normalised["ci_low"] is not None and normalised["scores"] == scores
    # The zero drift is not a paired reference: it keeps its search round only.
    assert sorted(r.block for r in rounds[baselines["zero"].id]) == [0]


@pytest.mark.slow
def test_proposals_are_screened_and_promoted_ones_train_the_meta_test(ppo_variants):
    """Multi-fidelity on the real sandbox: a proposal's search round trains CartPole (its
    meta-train environment) alone; its promotion (re-evaluation) trains Acrobot (meta-test)
    too, on the fresh blocks only, and its row says it rests on every environment. The
    baselines, the references every candidate is paired with, train everything at once."""
    engine, campaign_id = ppo_variants
    with transaction(engine) as session:
        rows = {c.id: c for c in reads.candidates(session, campaign_id)}
        rounds = reads.rounds_of(session, list(rows))
    promoted = [c for c in rows.values() if c.review == Review.DONE and c.status == Status.OK]
    assert promoted
    for c in promoted:
        search, *fresh = sorted(rounds[c.id], key=lambda r: r.block)
        assert set(search.scores) == {"meta_train"}
        assert all(set(r.scores["meta_test"]) == {"Acrobot-v1"} for r in fresh)
        assert c.fidelity == Fidelity.FULL and c.meta_test_fitness is not None
        assert c.per_env["meta_test"]["Acrobot-v1"]["blocks"] == [1, 2, 3, 4]
        assert len(c.per_env["meta_test"]["Acrobot-v1"]["normalised"]["scores"]) == 8
    for c in rows.values():
        if c.origin == Origin.BASELINE and c.status == Status.OK:
            search = next(r for r in rounds[c.id] if r.block == 0)
            assert set(search.scores) == {"meta_train", "meta_test"}
            assert c.fidelity == Fidelity.FULL


def _members(session, campaign_id):
    from sqlmodel import select

    from archive.schema import IslandMember

    return session.exec(select(IslandMember).where(IslandMember.campaign_id == campaign_id)).all()


# -- stand-in sandbox: selection decisions as they are made ---------------------------------------


def stand_in_evaluate(task, sources, budget, *, claims, seed, fidelity=Fidelity.FULL, **options):
    """Scores from the code and the seed (no training): enough spread for elites to change.
    A screened candidate has no meta-test score, as the cascade's."""

    def one(code, claim):
        digest = hashlib.sha256(f"{code}{seed}".encode()).digest()
        if claim is not None and claim(f"behaviour {hashlib.sha256(code.encode()).hexdigest()}"):
            return Evaluation(Status.DUPLICATE, None, backend="stand-in")
        meta_test = None if fidelity == Fidelity.SCREEN else 0.5
        return Evaluation(
            Status.OK,
            0.5 + digest[0] / 255,
            meta_test_fitness=meta_test,
            backend="stand-in",
            fidelity=fidelity,
        )

    return [one(code, claim) for code, claim in zip(sources, claims, strict=True)]


class Watching(MutationProposer):
    """The mutation proposer, asserting at each proposal that no parent or inspiration is a
    candidate still waiting for its re-evaluation; it records what it was offered."""

    def __init__(self, engine):
        super().__init__(load_task("mirror_drift"))
        self.engine, self.offered = engine, []

    def propose(self, request: ProposalRequest) -> Proposal:
        ids = [p.id for p in request.parents + request.inspirations]
        with transaction(self.engine) as session:
            rows = reads.candidates_by_id(session, ids)
        assert all(rows[i].review != Review.HELD for i in ids), "a held candidate was offered"
        self.offered.append((ids, [p.id for p in request.failures]))
        return super().propose(request)


def run_stand_in(tmp_path, **settings):
    engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    config = CampaignConfig(
        name="stand-in",
        task="mirror_drift",
        generations=3,
        islands=2,
        population=3,
        workers=2,
        migration_interval=1,
        **settings,
    )
    proposer = Watching(engine)
    campaign = CampaignLoop(engine, config, proposer, executor=blockwise(stand_in_evaluate)).run()
    assert campaign.status == "finished", campaign.message
    return engine, campaign.id, proposer


def test_held_elites_are_never_offered_and_all_are_reviewed_by_the_end(tmp_path):
    engine, campaign_id, proposer = run_stand_in(tmp_path, reevaluate_top=2, reevaluation_blocks=2)
    with transaction(engine) as session:
        rows = reads.candidates(session, campaign_id)
        reviewed = [c for c in rows if c.review is not None]
        assert reviewed and all(c.review == Review.DONE for c in reviewed)
        rounds = reads.rounds_of(session, [c.id for c in reviewed])
    assert all(sorted(r.block for r in rounds[c.id]) == [0, 1, 2] for c in reviewed)
    assert proposer.offered  # the assertion ran at every proposal


@pytest.mark.parametrize("screening", [True, False])
def test_only_promoted_candidates_train_the_meta_test_when_screening(tmp_path, screening):
    """Screening: every proposal's row says it was screened (meta-train only) unless it was
    promoted to re-evaluation, which trains every environment; baselines train them all.
    Without screening every scored row rests on every environment."""
    engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    config = CampaignConfig(
        name="screening",
        task="mirror_drift",
        generations=3,
        islands=1,
        population=4,
        workers=1,
        batch=1,  # one candidate at a time: the same campaign every run
        reevaluate_top=2,
        screening=screening,
    )
    executor = blockwise(stand_in_evaluate)
    campaign_id = CampaignLoop(engine, config, Watching(engine), executor=executor).run().id
    with transaction(engine) as session:
        scored = [c for c in reads.candidates(session, campaign_id) if c.status == Status.OK]
    promoted = [c for c in scored if c.review == Review.DONE]
    screened = [c for c in scored if c.fidelity == Fidelity.SCREEN]
    assert promoted and all(c.fidelity == Fidelity.FULL for c in promoted)
    assert all(c.fidelity == Fidelity.FULL for c in scored if c.origin == Origin.BASELINE)
    if screening:
        assert screened and all(c.meta_test_fitness is None for c in screened)
        assert all(c.origin != Origin.BASELINE and c.review is None for c in screened)
    else:
        # (rows given fresh rounds pool per-seed scores, which this stand-in has none of)
        unpromoted = [c for c in scored if c.review is None and c.origin != Origin.BASELINE]
        assert not screened and all(c.meta_test_fitness is not None for c in unpromoted)


def test_best_of_n_control_offers_only_the_baselines(tmp_path):
    engine, campaign_id, proposer = run_stand_in(tmp_path, selection=Selection.NONE)
    with transaction(engine) as session:
        rows = {c.id: c for c in reads.candidates(session, campaign_id)}
        migrated = reads.has_event(session, campaign_id, "migration:2")
    baselines = {i for i, c in rows.items() if c.origin == Origin.BASELINE}
    assert all(set(ids) <= baselines and not failures for ids, failures in proposer.offered)
    assert all(c.parent_id is None or c.parent_id in baselines for c in rows.values())
    assert not migrated
    # The control arm's elites are re-evaluated too, so its discoveries are as trustworthy.
    assert any(c.review == Review.DONE for c in rows.values())


def test_a_round_that_fails_on_fresh_seeds_ends_the_candidate_as_a_parent(tmp_path):
    """A candidate that scored on the search's seeds but breaks on fresh ones takes the failed
    round's status and leaves its islands; the round stays in the archive. Here every
    proposed candidate breaks on fresh seeds (the baselines do not)."""
    engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    task = load_task("mirror_drift")
    trusted = {task.baseline_source(name) for name in task.baseline_names}

    def evaluate(task_name, sources, budget, *, claims, seed, **options):
        evaluations = stand_in_evaluate(task_name, sources, budget, claims=claims, seed=seed)
        fresh = seed != 0  # the campaign's search block trains from seed 0
        return [
            Evaluation(Status.NONFINITE, None, backend="stand-in")
            if fresh and source not in trusted
            else e
            for source, e in zip(sources, evaluations, strict=True)
        ]

    config = CampaignConfig(
        name="fragile", task="mirror_drift", generations=2, islands=1, population=4, workers=1
    )
    campaign = CampaignLoop(engine, config, Watching(engine), executor=blockwise(evaluate)).run()
    assert campaign.status == "finished", campaign.message
    with transaction(engine) as session:
        rows = reads.candidates(session, campaign.id)
        failed = [c for c in rows if c.review == Review.DONE]
        members = {m.candidate_id for m in _members(session, campaign.id)}
        rounds = reads.rounds_of(session, [c.id for c in failed])
    assert failed
    for c in failed:
        assert c.status == Status.NONFINITE and c.fitness is None and c.id not in members
        assert [r.status for r in rounds[c.id]][:2] == [Status.OK, Status.NONFINITE]


class Holding:
    """An executor that only records what it is handed (nothing runs)."""

    def __init__(self):
        self.jobs = []

    def submit(self, function, *args):
        self.jobs.append(function.__name__)
        return Future()


def test_collecting_a_batch_never_starts_a_second_review_of_its_held_members(tmp_path):
    """A batch's verdicts are recorded (and its elites held) in the evaluator's thread,
    before its future is collected: a re-evaluation may already have taken them. Collecting
    the batch then must not start another (each fresh block would be trained and written
    twice: the duplicate-round failure seen once in CI)."""
    engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    config = CampaignConfig(name="race", task="mirror_drift", generations=1, workers=1)
    loop = CampaignLoop(engine, config, Fixed(PPO_VARIANTS))
    loop.strategy.promotions = lambda: [(5, "code")]  # #5: held by its batch's recording
    pool, batch = Holding(), Future()
    loop._pool, loop.in_flight, loop.gathering = pool, {batch: [4, 5]}, []
    batch.set_result([])
    loop._review(pool)  # another future collected first: #5 goes out for review
    loop._collect([batch])  # then its own batch
    assert pool.jobs == ["_reevaluate"]


def test_resuming_an_older_campaign_with_new_review_settings_is_refused_not_dropped():
    """An archive from before re-evaluation stores none of its settings, so the campaign runs
    at their defaults; a different value given on resume must clash, never vanish."""
    older = CampaignConfig(name="old", task="mirror_drift").model_dump(mode="json")
    for key in ("selection", "reevaluate_top", "reevaluation_blocks", "rank_by"):
        older.pop(key)
    for change in (
        {"reevaluate_top": 0},
        {"rank_by": "mean"},
        {"selection": "none"},
        {"reevaluation_blocks": 5},
    ):
        given = CampaignConfig(name="old", task="mirror_drift", **change)
        with pytest.raises(ValueError, match=f"{next(iter(change))} .*only generations"):
            given.resumed_with(older)
    same = CampaignConfig(name="old", task="mirror_drift", reevaluate_top=2, generations=9)
    resumed = same.resumed_with(older)
    assert (resumed.reevaluate_top, resumed.generations) == (2, 9)


def test_reevaluation_blocks_default_to_the_budgets_and_reach_an_interval():
    """A label rests on the fresh blocks alone, so each budget's default must give them at
    least the seeds an interval needs on one meta-train environment."""
    from sandbox.budgets import BUDGETS
    from sandbox.fitness import too_few_for_interval

    for name, budget in BUDGETS.items():
        config = CampaignConfig(name="c", task="mirror_drift", budget=name)
        assert config.review_blocks == budget.reevaluation_blocks
        assert not too_few_for_interval([config.review_blocks * budget.seeds]), name
    assert CampaignConfig(name="c", task="mirror_drift", reevaluation_blocks=2).review_blocks == 2


def test_leaving_the_search_block_out_of_labels_cuts_false_labels():
    """Simulated campaigns with no real improvement, on recorded CartPole seed noise
    (benchmarks.label_precision): the search block picked the 10 re-evaluated candidates, so
    counting it in the label's interval gives false labels well above the one-sided 2.5 % the
    interval promises; the fresh blocks alone stay near it."""
    import numpy as np

    from benchmarks.label_precision import campaign, recorded_noise

    ppo, residuals = recorded_noise()
    rng = np.random.default_rng(0)
    false = {"pooled": 0, "fresh": 0}
    campaigns, tested = 200, 10
    for _ in range(campaigns):
        counts, real = campaign(rng, ppo, residuals, 40, tested, base_rate=0.0, effect=0.0)
        assert real == 0
        for rule in false:
            false[rule] += counts[rule][0]
    rate = {rule: n / (campaigns * tested) for rule, n in false.items()}
    assert rate["fresh"] <= 0.05, rate
    assert rate["pooled"] >= 1.5 * rate["fresh"], rate


def test_labels_are_controlled_over_the_campaign_not_per_candidate():
    """Simulated campaigns with nothing to find, 10 candidates re-evaluated each, on recorded
    CartPole seed noise (benchmarks.label_precision): with a 95 % interval per candidate a
    campaign prints some false "beats" label in about a third of campaigns; with the
    campaign-wide bound (`Paired.beats`) in at most 5 % of them."""
    import numpy as np

    from benchmarks.label_precision import campaign, recorded_noise

    ppo, residuals = recorded_noise()
    rng = np.random.default_rng(1)
    campaigns = 400
    any_false = {"fresh": 0, "family": 0}
    for _ in range(campaigns):
        counts, _ = campaign(rng, ppo, residuals, 40, 10, base_rate=0.0, effect=0.0)
        for rule in any_false:
            any_false[rule] += counts[rule][0] > 0
    share = {rule: n / campaigns for rule, n in any_false.items()}
    assert share["family"] <= 0.05, share
    assert share["fresh"] >= 0.15, share


def test_search_from_the_zero_drift_alone_keeps_ppo_and_dpo_as_references(tmp_path):
    """`seed_baselines`: PPO and DPO are trained and scored (normalisers, paired comparators)
    but live on no island, so they are never parents, inspirations or migrants; in both
    selection modes. The time cap stops proposing; what was proposed is still evaluated."""
    for selection in (Selection.EVOLUTION, Selection.NONE):
        engine = open_engine(f"sqlite:///{tmp_path / f'{selection}.db'}")
        config = CampaignConfig(
            name=f"from-zero-{selection}",
            task="mirror_drift",
            generations=1000,
            islands=2,
            population=2,
            workers=1,
            migration_interval=1,
            selection=selection,
            seed_baselines=["zero"],
            max_seconds=3.0,
        )
        proposer = Watching(engine)
        executor = blockwise(stand_in_evaluate)
        campaign = CampaignLoop(engine, config, proposer, executor=executor).run()
        assert campaign.status == "time_cap", campaign.message
        with transaction(engine) as session:
            rows = reads.candidates(session, campaign.id)
            members = {m.candidate_id for m in _members(session, campaign.id)}
        baselines = {c.baseline_name: c for c in rows if c.origin == Origin.BASELINE}
        references = {baselines["ppo"].id, baselines["dpo"].id}
        assert all(c.status == Status.OK for c in baselines.values())
        assert not references & members and baselines["zero"].id in members
        offered = {i for ids, failures in proposer.offered for i in ids + failures}
        assert proposer.offered and not offered & references
        assert not {c.parent_id for c in rows} & references
        assert all(c.status != Status.PENDING for c in rows)
        assert len(rows) < 1000  # the cap, not the generations, ended it


def test_an_unknown_seed_baseline_is_refused_before_anything_runs(tmp_path):
    from scientist.campaign.loop import CampaignError

    engine = open_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    config = CampaignConfig(name="typo", task="mirror_drift", seed_baselines=["zro"])
    with pytest.raises(CampaignError, match="no baseline zro in task mirror_drift"):
        CampaignLoop(engine, config, Watching(engine), executor=blockwise(stand_in_evaluate))
    with transaction(engine) as session:
        assert reads.find_campaign(session, "typo") is None  # nothing written
