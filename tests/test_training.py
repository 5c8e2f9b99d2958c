"""Seconds-long CPU training runs, one per environment family, plus GAE's truncation rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox.budgets import get_budget
from sandbox.pieces import all_pieces
from sandbox.tasks import load_baseline
from sandbox.training.components import PlugPoint
from sandbox.training.config import preset
from sandbox.training.evaluate import random_policy_return
from sandbox.training.ppo import Components, generalized_advantages
from sandbox.training.run import evaluate_batch, summarise, train_batch


@pytest.mark.parametrize(
    "piece", [p for p in all_pieces().values() if p.default], ids=lambda p: p.kind
)
def test_the_trainers_defaults_are_each_kinds_default_baseline(piece):
    """PPO's pieces are written out in ppo.py; each kind's default baseline (its task folder,
    what campaigns start from) must compute the same thing, value for value."""
    built_in = getattr(Components(), piece.plug_point.value)
    baseline = load_baseline(*piece.default)
    rng = np.random.default_rng(0)
    if piece.plug_point == PlugPoint.OPTIMIZER:
        params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
        grads = [jax.tree.map(lambda p: p * float(s), params) for s in (0.3, -2.0, 50.0)]

        def steps(make):
            tx = make(3e-3, 0.5)
            state, out = tx.init(params), []
            for g in grads:
                update, state = tx.update(g, state, params)
                out.append(update["w"])
            return np.stack(out)

        np.testing.assert_array_equal(steps(built_in), steps(baseline))
        return
    inputs = [jnp.asarray(rng.lognormal(0, 1, 256), jnp.float32)]
    inputs += [jnp.asarray(rng.normal(0, 3, 256), jnp.float32)] * (piece.arity - 1)
    np.testing.assert_array_equal(built_in(*inputs), baseline(*inputs))


def test_gae_bootstraps_truncated_but_not_terminated_episodes():
    gamma, lam = 0.9, 0.5
    reward = jnp.array([[1.0], [1.0], [1.0]])
    value = jnp.array([[0.5], [0.5], [0.5]])
    next_value = jnp.array(
        [[0.5], [2.0], [0.5]]
    )  # step 1 ends an episode whose final state is worth 2
    no = jnp.zeros((3, 1), bool)
    done_at_1 = jnp.array([[False], [True], [False]])

    truncated = generalized_advantages(
        reward, value, next_value, no, done_at_1, gamma=gamma, gae_lambda=lam
    )
    terminated = generalized_advantages(
        reward, value, next_value, done_at_1, done_at_1, gamma=gamma, gae_lambda=lam
    )

    delta2 = 1.0 + gamma * 0.5 - 0.5
    np.testing.assert_allclose(truncated[2, 0], delta2, rtol=1e-6)
    np.testing.assert_allclose(
        truncated[1, 0], 1.0 + gamma * 2.0 - 0.5, rtol=1e-6
    )  # bootstraps, no carry-over
    np.testing.assert_allclose(terminated[1, 0], 1.0 - 0.5, rtol=1e-6)  # terminal: no bootstrap
    delta0 = 1.0 + gamma * 0.5 - 0.5
    np.testing.assert_allclose(truncated[0, 0], delta0 + gamma * lam * truncated[1, 0], rtol=1e-6)


def test_cartpole_learns_in_seconds_with_a_learning_rate_sweep():
    config = preset("CartPole-v1", total_timesteps=50_000, eval_episodes=8)
    batch = train_batch(
        config,
        Components(drift=load_baseline("mirror_drift", "dpo")),
        seeds=2,
        learning_rates=[2.5e-4, 2.5e-3],
    )
    assert batch.output.episode_count.shape == (2, 2, config.num_updates)
    assert batch.env_steps == 2 * 2 * config.env_steps

    final = evaluate_batch(batch, eval_seed=7)
    assert final.shape == (2, 2) and np.isfinite(final).all()
    random = random_policy_return(config, eval_seed=1)
    assert final.mean() > 2 * random, (final, random)  # trained policies beat the uniform one

    summaries = summarise(batch, final, get_budget("smoke").env("CartPole-v1"))
    assert [s.learning_rate for s in summaries] == [2.5e-4, 2.5e-3]
    curve = [x for x in summaries[1].learning_curve if x is not None]
    assert len(summaries[1].learning_curve) == config.num_updates
    assert np.mean(curve[-5:]) > np.mean(curve[:5])  # the learning curve rises
    assert summaries[0].normalised is not None


@pytest.mark.parametrize("env_id", ["Breakout-MinAtar", "Acrobot-v1"])
def test_other_env_families_train_and_evaluate(env_id):
    config = preset(env_id, total_timesteps=5 * preset(env_id).batch_size, eval_episodes=4)
    batch = train_batch(config, seeds=2)
    final = evaluate_batch(batch, eval_seed=3)
    assert final.shape == (1, 2) and np.isfinite(final).all()
    leaves = jax.tree.leaves(batch.output.params)
    assert all(leaf.shape[:2] == (1, 2) and bool(jnp.isfinite(leaf).all()) for leaf in leaves)
    # The two seeds are independent runs, not copies.
    assert not np.allclose(np.asarray(leaves[0][0, 0]), np.asarray(leaves[0][0, 1]))
