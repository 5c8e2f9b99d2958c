"""Evaluation of trained policies: a fixed number of full episodes, one jitted call.

Kept apart from training so that a trusted scorer can run it on parameters alone, with
evaluation seeds the training code never saw.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sandbox.families import make_env
from sandbox.training.config import PPOConfig
from sandbox.training.networks import ActorCritic
from sandbox.training.ppo import make_network


def make_evaluate(config: PPOConfig):
    """Returns evaluate(params, rng) -> [eval_episodes] undiscounted episode returns."""
    spec = make_env(config.env_id)
    env, env_params, distribution = spec.env, spec.params, spec.distribution
    network = make_network(config, spec)
    episodes = config.eval_episodes

    def evaluate(params, rng):
        rng, reset_rng = jax.random.split(rng)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_rng, episodes), env_params
        )

        def still_running(carry):
            t, _, _, done, _, _ = carry
            return jnp.logical_and(t < spec.max_episode_steps, ~jnp.all(done))

        def step(carry):
            t, obs, state, done, returns, rng = carry
            rng, action_rng, step_rng = jax.random.split(rng, 3)
            head = network.apply(params, obs, method=ActorCritic.policy)
            if config.eval_greedy:
                action = distribution.mode(head)
            else:
                action = distribution.sample(action_rng, head)
            obs, state, reward, terminated, truncated, _ = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(step_rng, episodes), state, action, env_params)
            returns = returns + jnp.where(done, 0.0, reward)
            done = done | terminated | truncated
            return t + 1, obs, state, done, returns, rng

        init = (0, obs, state, jnp.zeros(episodes, bool), jnp.zeros(episodes), rng)
        return lax.while_loop(still_running, step, init)[4]

    return evaluate


def evaluate_params(config: PPOConfig, params, eval_seed: int, batch_shape: tuple[int, ...]):
    """Mean return over `eval_episodes` for a batch of trained policies (`params` leaves have
    leading axes `batch_shape`), each on its own evaluation key: array of `batch_shape`."""
    count = 1
    for size in batch_shape:
        count *= size
    keys = jax.random.split(jax.random.key(eval_seed), count).reshape(batch_shape)
    return _batched_evaluate(config, len(batch_shape))(params, keys)


def evaluate_runs(config: PPOConfig, params, eval_seeds: list[int], runs: int):
    """Mean returns [len(eval_seeds), runs] of several trained batches at once (`params`
    leaves lead with those two axes): batch i on the keys `evaluate_params` gives its seed
    alone, so each gets the numbers it would get evaluated by itself, in one call."""
    keys = jnp.stack([jax.random.split(jax.random.key(seed), runs) for seed in eval_seeds])
    return _batched_evaluate(config, 2)(params, keys)


@functools.cache
def _batched_evaluate(config: PPOConfig, axes: int):
    """The jitted evaluation over `axes` leading batch axes, traced once per configuration."""
    evaluate = make_evaluate(config)
    for _ in range(axes):
        evaluate = jax.vmap(evaluate)
    return jax.jit(lambda params, keys: jnp.mean(evaluate(params, keys), axis=-1))


def random_policy_return(config: PPOConfig, eval_seed: int) -> float:
    """Mean return of the untrained policy with its actor's output zeroed (uniform over
    discrete actions, standard-normal for continuous ones) over `config.eval_episodes`."""
    evaluate = jax.jit(make_evaluate(config))
    returns = evaluate(uniform_policy_params(config, jax.random.key(0)), jax.random.key(eval_seed))
    return float(np.mean(np.asarray(returns)))


def uniform_policy_params(config: PPOConfig, rng):
    """Network parameters whose actor outputs zeros (its weights zeroed: uniform over discrete
    actions, standard-normal continuous ones), for measuring the random-policy return with
    the same evaluation code."""
    spec = make_env(config.env_id)
    params = make_network(config, spec).init(rng, jnp.zeros((1, *spec.obs_shape)))
    return jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.zeros_like(x) if "actor" in jax.tree_util.keystr(path) else x, params
    )
