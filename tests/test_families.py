"""Environment families (sandbox/families/): the continuous one's Gaussian policy head is
the textbook distribution, and PPO learns Pendulum through it; the family registry is
tests/test_registries.py's, the size table tests/test_batch_sizing.py's."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from sandbox.families import family_of, make_env
from sandbox.families.distributions import DIAGONAL_GAUSSIAN
from sandbox.training.config import preset
from sandbox.training.evaluate import random_policy_return
from sandbox.training.run import evaluate_batch, train_batch


def test_the_gaussian_head_is_a_diagonal_normal():
    rng = np.random.default_rng(0)
    mean, log_std = rng.normal(size=(5, 3)), rng.uniform(-2, 1, size=(5, 3))
    head = jnp.asarray(np.concatenate([mean, log_std], axis=-1), jnp.float32)
    action = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    log_prob, entropy = DIAGONAL_GAUSSIAN.log_prob_and_entropy(head, action)
    std = np.exp(log_std)
    np.testing.assert_allclose(
        log_prob, stats.norm.logpdf(action, mean, std).sum(-1), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(entropy, stats.norm.entropy(mean, std).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(DIAGONAL_GAUSSIAN.mode(head), mean, rtol=1e-6)
    draws = jax.vmap(lambda k: DIAGONAL_GAUSSIAN.sample(k, head))(
        jax.random.split(jax.random.key(1), 4000)
    )
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.15)
    np.testing.assert_allclose(draws.std(0), std, rtol=0.1)
    assert DIAGONAL_GAUSSIAN.head_size(3) == 6 == 2 * 3


def test_ppo_learns_pendulum_through_the_gaussian_head():
    """4 seeds, 1e5 steps: every trained policy beats a policy of standard-normal torques
    by far (measured: about -200 against -1400)."""
    spec = make_env("Pendulum-v1")
    assert spec.head_size == family_of("Pendulum-v1").head_size("Pendulum-v1") == 2
    config = preset("Pendulum-v1", total_timesteps=100_000, learning_rate=3e-3, eval_episodes=8)
    batch = train_batch(config, seeds=4)
    final = evaluate_batch(batch, eval_seed=3)
    assert final.shape == (1, 4) and np.isfinite(final).all()
    random = random_policy_return(config, eval_seed=1)
    assert (final > random + 600).all(), (final, random)
