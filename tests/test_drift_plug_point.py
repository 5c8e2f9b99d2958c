"""The policy objective plug point: drifts enter the loss as -mean(r*A - drift(r, A))."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox.tasks import load_baseline
from sandbox.training.ppo import CandidateContractError, Components, policy_loss


def clipped_surrogate_loss(ratio, advantage, eps=0.2):
    """PPO's clipped surrogate as written in the PPO paper."""
    return -jnp.mean(jnp.minimum(ratio * advantage, jnp.clip(ratio, 1 - eps, 1 + eps) * advantage))


def _policy_batch(seed=0, n=256, actions=4):
    """Random old/new policy logits, sampled actions and normalised advantages."""
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    old_logits = jax.random.normal(k1, (n, actions))
    new_logits = old_logits + 0.5 * jax.random.normal(
        k2, (n, actions)
    )  # ratios well outside 1 +- 0.2
    action = jax.random.categorical(k3, old_logits)
    advantage = jax.random.normal(k4, (n,))
    advantage = (advantage - advantage.mean()) / advantage.std()
    return old_logits, new_logits, action, advantage


def _ratio(new_logits, old_logits, action):
    logp = lambda logits: jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]  # noqa: E731
    return jnp.exp(logp(new_logits) - jax.lax.stop_gradient(logp(old_logits)))


def test_ppo_drift_reproduces_clipped_surrogate_loss_and_gradients():
    old_logits, new_logits, action, advantage = _policy_batch()
    ratio = _ratio(new_logits, old_logits, action)
    assert float(jnp.mean((ratio < 0.8) | (ratio > 1.2))) > 0.2  # the clip is really exercised

    def drift_loss(logits):
        return policy_loss(
            Components(drift=load_baseline("mirror_drift", "ppo")),
            _ratio(logits, old_logits, action),
            advantage,
        )[0]

    def ppo_loss(logits):
        return clipped_surrogate_loss(_ratio(logits, old_logits, action), advantage)

    np.testing.assert_allclose(drift_loss(new_logits), ppo_loss(new_logits), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        jax.grad(drift_loss)(new_logits), jax.grad(ppo_loss)(new_logits), rtol=1e-5, atol=1e-7
    )


def test_zero_drift_is_the_importance_weighted_policy_gradient():
    old_logits, new_logits, action, advantage = _policy_batch(seed=1)
    ratio = _ratio(new_logits, old_logits, action)
    loss, _ = policy_loss(Components(drift=load_baseline("mirror_drift", "zero")), ratio, advantage)
    np.testing.assert_allclose(loss, -jnp.mean(ratio * advantage), rtol=1e-6)


@pytest.mark.parametrize("name", ["ppo", "dpo", "zero"])
def test_builtin_drifts_are_zero_at_ratio_one_and_nonnegative(name):
    drift = load_baseline("mirror_drift", name)
    r = jnp.exp(jnp.linspace(-5, 5, 201))[:, None]
    a = jnp.linspace(-10, 10, 81)[None, :]
    values = drift(r * jnp.ones_like(a), a * jnp.ones_like(r))
    assert values.shape == (201, 81)
    assert bool(jnp.all(values >= 0))
    np.testing.assert_allclose(drift(jnp.ones(81), a[0]), 0.0, atol=1e-7)


def test_dpo_matches_paper_formula_by_advantage_sign():
    r = jnp.array([0.5, 0.5, 2.0, 2.0])
    a = jnp.array([1.5, -1.5, 1.5, -1.5])
    expected = []
    for ri, ai in zip(np.asarray(r), np.asarray(a)):
        if ai >= 0:
            x = (ri - 1) * ai
            expected.append(max(x - 2.0 * np.tanh(x / 2.0), 0.0))
        else:
            x = np.log(ri) * ai
            expected.append(max(x - 0.6 * np.tanh(x / 0.6), 0.0))
    np.testing.assert_allclose(load_baseline("mirror_drift", "dpo")(r, a), expected, rtol=1e-5)
    assert (
        float(load_baseline("mirror_drift", "dpo")(r, a)[1]) > 0
    )  # rollback: penalises pushing down a bad action's probability


def test_reduced_drift_is_rejected_with_a_clear_error():
    ratio, advantage = jnp.ones(8), jnp.ones(8)
    with pytest.raises(CandidateContractError, match="elementwise"):
        policy_loss(Components(drift=lambda r, a: jnp.sum(r * a)), ratio, advantage)
    with pytest.raises(CandidateContractError, match="floats"):
        policy_loss(Components(drift=lambda r, a: (r > 1).astype(jnp.int32)), ratio, advantage)
