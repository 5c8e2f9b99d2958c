"""PPO with a pluggable Mirror Learning objective, in the PureJaxRL style.

`make_train(config, components)` returns a pure `train(rng, learning_rate)` that runs a whole
training run (rollouts, GAE, minibatch updates) inside `jax.lax.scan`, so it jits into one
XLA computation with no host round trips. `batched(train)` vmaps it over seeds and over a
learning-rate sweep in the same compiled call.

Departures from PureJaxRL, on purpose:
- the policy loss is -mean(r*A - drift(r, A)); PPO's clipping is the `ppo` drift;
- truncated episodes bootstrap from the critic's value of the final observation (gymnax 1.x
  reports it), so time limits are not mistaken for terminal states;
- the plugged-in pieces run under their kind's runtime monitor (training/monitor.py): their
  conditions are checked on the values training computes, worst case per update in
  `TrainOutput.watch` (off with `config.monitor = ()`, for trusted code only).
"""

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from sandbox.families import EnvSpec, make_env
from sandbox.training.components import (
    AdvantageTransform,
    Drift,
    OptimizerFactory,
    PlugPoint,
    TemporalDrift,
    ValueLoss,
)
from sandbox.training.config import PPOConfig
from sandbox.training.monitor import keep_worst, unseen, watched_call
from sandbox.training.networks import ActorCritic


# -- PPO's own pieces: the default at every plug point ---------------------------------------
def clipped_drift(ratio, advantage):
    """PPO's clipped surrogate as a drift: zero inside the clip range [0.8, 1.2]."""
    clipped = jnp.clip(ratio, 0.8, 1.2)
    return jnp.maximum((ratio - clipped) * advantage, 0.0)


def squared_error(prediction, target):
    return 0.5 * jnp.square(prediction - target)


def adam(learning_rate, max_grad_norm):
    """Global-norm gradient clipping, then Adam with eps 1e-5."""
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5)
    )


def unchanged(advantage):
    return advantage


@dataclass(frozen=True)
class Components:
    """What fills each plug point (training/components.py); PPO's own by default."""

    drift: Drift = clipped_drift
    value_loss: ValueLoss = squared_error
    make_optimizer: OptimizerFactory = adam
    advantage: AdvantageTransform = unchanged
    temporal_drift: TemporalDrift | None = None  # TA-LPO: drift(r, A, n/N) in place of drift


class CandidateContractError(ValueError):
    """A plugged-in component broke its contract (shape, dtype) while being traced."""


class Transition(NamedTuple):
    obs: jnp.ndarray
    action: jnp.ndarray
    log_prob: jnp.ndarray
    value: jnp.ndarray
    reward: jnp.ndarray
    terminated: jnp.ndarray
    done: jnp.ndarray
    final_obs: jnp.ndarray  # observation before the automatic reset


class TrainOutput(NamedTuple):
    params: Any  # final actor-critic parameters
    episode_return_sum: jnp.ndarray  # [num_updates] sum of returns of episodes ended in the update
    episode_count: jnp.ndarray  # [num_updates] number of such episodes
    entropy: jnp.ndarray  # [num_updates] mean policy entropy over the update's minibatches
    approx_kl: jnp.ndarray  # [num_updates] mean KL(old || new) estimate
    watch: Any  # {plug point: {condition: {"score": [num_updates], ...}}}: the monitor's worst


def generalized_advantages(reward, value, next_value, terminated, done, *, gamma, gae_lambda):
    """GAE over time-major arrays [T, envs].

    `next_value[t]` is V of the observation that followed step t *before* any automatic
    reset, so a truncated episode bootstraps from its true final state while a terminated
    one does not bootstrap at all; `done` (terminated or truncated) cuts the recursion.
    """
    terminated = terminated.astype(jnp.float32)
    done = done.astype(jnp.float32)

    def backward(gae, t):
        reward, value, next_value, terminated, done = t
        delta = reward + gamma * next_value * (1.0 - terminated) - value
        gae = delta + gamma * gae_lambda * (1.0 - done) * gae
        return gae, gae

    _, advantages = lax.scan(
        backward,
        jnp.zeros_like(reward[0]),
        (reward, value, next_value, terminated, done),
        reverse=True,
        unroll=16,
    )
    return advantages


def make_network(config: PPOConfig, spec: EnvSpec) -> ActorCritic:
    return ActorCritic(spec.head_size, tuple(config.hidden_sizes), config.activation)


def checked_call(name: str, fn, *args):
    """Call a plugged-in elementwise component and enforce its output shape at trace time."""
    out = fn(*args)
    expected = jnp.shape(args[0])
    if jnp.shape(out) != expected:
        raise CandidateContractError(
            f"{name} must be elementwise: inputs of shape {expected} gave output of shape "
            f"{jnp.shape(out)}"
        )
    if not jnp.issubdtype(jnp.result_type(out), jnp.floating):
        raise CandidateContractError(f"{name} must return floats, got {jnp.result_type(out)}")
    return out.astype(jnp.float32)


def policy_loss(
    components: Components, ratio, advantage, progress=0.0, *, watching=None, noise=None
):
    """Mirror Learning policy loss, the negated surrogate r*A minus the drift penalty, and
    (plug point, the drift monitor's watch of the call, {} without a monitor). A temporal
    drift also sees the training progress, the same for every entry of the call."""
    point, drift, inputs = PlugPoint.DRIFT, components.drift, (ratio, advantage)
    if components.temporal_drift is not None:
        point, drift = PlugPoint.TEMPORAL_DRIFT, components.temporal_drift
        inputs = (ratio, advantage, jnp.full_like(ratio, progress))
    checked = functools.partial(checked_call, point.value, drift)
    monitor, noise = (watching or {}).get(point), (noise or {}).get(point)
    values, watch = watched_call(checked, monitor, noise, *inputs)
    return -jnp.mean(ratio * advantage - values), (point, watch)


def monitors(config: PPOConfig) -> dict[str, Any]:
    """The runtime monitor of the kind of piece at each watched plug point."""
    if not config.monitor:
        return {}
    from sandbox.pieces import piece_at  # pieces describe the trainer, not the other way round

    found = {point: piece_at(point) for point in PlugPoint if point.value in config.monitor}
    return {point: piece.monitor for point, piece in found.items() if piece and piece.monitor}


def make_loss(
    config: PPOConfig, components: Components, network: ActorCritic, distribution, watching
):
    """The minibatch loss: the Mirror Learning policy loss, the value loss (clipped around the
    old values where the config asks) and the entropy bonus; its aux carries the entropy, the
    approximate KL and the monitors' watch of the plugged-in pieces."""

    def loss_fn(params, minibatch, noise, progress):
        traj, advantages, targets = minibatch
        head, value = network.apply(params, traj.obs)
        log_prob, entropy = distribution.log_prob_and_entropy(head, traj.action)

        value_error, value_watch = watched_call(
            functools.partial(checked_call, PlugPoint.VALUE_LOSS.value, components.value_loss),
            watching.get(PlugPoint.VALUE_LOSS),
            noise.get(PlugPoint.VALUE_LOSS),
            value,
            targets,
        )
        if config.clip_value:
            clipped = traj.value + jnp.clip(value - traj.value, -config.clip_eps, config.clip_eps)
            value_error = jnp.maximum(value_error, components.value_loss(clipped, targets))
        value_loss = jnp.mean(value_error)

        log_ratio = log_prob - traj.log_prob
        ratio = jnp.exp(log_ratio)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        advantages = checked_call("advantage", components.advantage, advantages)
        actor_loss, (drift_point, drift_watch) = policy_loss(
            components, ratio, advantages, progress, watching=watching, noise=noise
        )

        entropy = entropy.mean()
        total = actor_loss + config.vf_coef * value_loss - config.ent_coef * entropy
        approx_kl = jnp.mean((ratio - 1.0) - log_ratio)
        watch = {drift_point.value: drift_watch, PlugPoint.VALUE_LOSS.value: value_watch}
        return total, (entropy, approx_kl, {k: v for k, v in watch.items() if v})

    return loss_fn


def make_train(config: PPOConfig, components: Components | None = None, on_update=None):
    """`on_update(update_index)`, if given, is called on the host after every update (one
    callback per update, for progress displays; leave it out when timing)."""
    config.validate()
    components = components or Components()
    spec = make_env(config.env_id)
    env, env_params, distribution = spec.env, spec.params, spec.distribution
    network = make_network(config, spec)
    num_updates, num_envs, num_steps = config.num_updates, config.num_envs, config.num_steps
    steps_per_update = config.update_epochs * config.num_minibatches
    watching = monitors(config)

    loss_fn = make_loss(config, components, network, distribution, watching)

    def train(rng, learning_rate=config.learning_rate):
        def schedule(count):
            if not config.anneal_lr:
                return learning_rate
            return learning_rate * (1.0 - (count // steps_per_update) / num_updates)

        tx = components.make_optimizer(schedule, config.max_grad_norm)
        rng, init_rng, reset_rng = jax.random.split(rng, 3)
        params = network.init(init_rng, jnp.zeros((1, *spec.obs_shape)))
        opt_state = tx.init(params)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_rng, num_envs), env_params
        )

        def env_step(carry, _):
            params, env_state, obs, episode_return, ended, rng = carry
            rng, action_rng, step_rng = jax.random.split(rng, 3)
            head = network.apply(params, obs, method=ActorCritic.policy)
            action = distribution.sample(action_rng, head)
            log_prob, _ = distribution.log_prob_and_entropy(head, action)
            next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(step_rng, num_envs), env_state, action, env_params)
            done = jnp.logical_or(terminated, truncated)
            episode_return = episode_return + reward
            # Episode statistics accumulate in the carry: cheaper than stacking them per step.
            ended = (
                ended[0] + jnp.sum(jnp.where(done, episode_return, 0.0)),
                ended[1] + jnp.sum(done),
            )
            transition = Transition(
                obs, action, log_prob, None, reward, terminated, done, info["final_observation"]
            )
            episode_return = jnp.where(done, 0.0, episode_return)
            return (params, env_state, next_obs, episode_return, ended, rng), transition

        def critic_values(params, traj: Transition):
            # The rollout runs the actor only; batched critic passes afterwards give V(s_t) and
            # V(s_{t+1}) for every step (the latter from the final observation, so truncated
            # episodes bootstrap correctly). Batched, they beat a critic call per step.
            value = network.apply(params, traj.obs, method=ActorCritic.value)
            next_value = network.apply(params, traj.final_obs, method=ActorCritic.value)
            return traj._replace(value=value), next_value

        def update_step(carry, update_index):
            params, opt_state, env_state, obs, episode_return, rng = carry
            (params, env_state, obs, episode_return, ended, rng), traj = lax.scan(
                env_step, (params, env_state, obs, episode_return, (0.0, 0), rng), None, num_steps
            )
            traj, next_value = critic_values(params, traj)
            advantages = generalized_advantages(
                traj.reward,
                traj.value,
                next_value,
                traj.terminated,
                traj.done,
                gamma=config.gamma,
                gae_lambda=config.gae_lambda,
            )
            targets = advantages + traj.value
            batch = jax.tree.map(
                lambda x: x.reshape((config.batch_size, *x.shape[2:])),
                (traj._replace(final_obs=None), advantages, targets),
            )
            # What a minibatch's watch looks like, scored below anything a call can see.
            first = jax.tree.map(lambda x: x[: config.minibatch_size], batch)
            silence = {
                point: jnp.zeros(monitor.noise_size(config.minibatch_size))
                for point, monitor in watching.items()
                if monitor.noise_size(config.minibatch_size)
            }
            progress = update_index / num_updates  # n/N, for a temporal drift (TA-LPO)
            watch_start = unseen(jax.eval_shape(loss_fn, params, first, silence, progress)[1][-1])

            def update_epoch(carry, _):
                params, opt_state, rng, watch = carry
                rng, perm_rng = jax.random.split(rng)
                permutation = jax.random.permutation(perm_rng, config.batch_size)
                minibatches = jax.tree.map(
                    lambda x: x[permutation].reshape(
                        (config.num_minibatches, config.minibatch_size, *x.shape[1:])
                    ),
                    batch,
                )
                # The monitors' probes draw their randomness once per epoch, off a key that
                # branches from the training stream without changing it.
                noise = {
                    point: jax.random.uniform(
                        jax.random.fold_in(perm_rng, 1 + i),
                        (config.num_minibatches, monitor.noise_size(config.minibatch_size)),
                    )
                    for i, (point, monitor) in enumerate(watching.items())
                    if monitor.noise_size(config.minibatch_size)
                }

                def update_minibatch(carry, minibatch_and_noise):
                    params, opt_state, watch = carry
                    grads, (*aux, seen) = jax.grad(loss_fn, has_aux=True)(
                        params, *minibatch_and_noise, progress
                    )
                    updates, opt_state = tx.update(grads, opt_state, params)
                    params = jax.tree.map(lambda p, u: p + u, params, updates)
                    # The update's worst case so far rides in the carry: nothing is stacked.
                    return (params, opt_state, keep_worst(watch, seen)), aux

                (params, opt_state, watch), aux = lax.scan(
                    update_minibatch, (params, opt_state, watch), (minibatches, noise)
                )
                return (params, opt_state, rng, watch), aux

            before = params
            (params, opt_state, rng, watch), (entropy, approx_kl) = lax.scan(
                update_epoch, (params, opt_state, rng, watch_start), None, config.update_epochs
            )
            if on_update is not None:
                jax.debug.callback(on_update, update_index)
            if PlugPoint.OPTIMIZER in watching:  # once per update: what its steps added up to
                moved = jax.tree.map(lambda new, old: new - old, params, before)
                watch[PlugPoint.OPTIMIZER.value] = watching[PlugPoint.OPTIMIZER].inspect_updates(
                    moved
                )
            stats = (*ended, entropy.mean(), approx_kl.mean(), watch)
            return (params, opt_state, env_state, obs, episode_return, rng), stats

        carry = (params, opt_state, env_state, obs, jnp.zeros(num_envs), rng)
        (params, *_), (return_sum, count, entropy, approx_kl, watch) = lax.scan(
            update_step, carry, jnp.arange(num_updates)
        )
        return TrainOutput(params, return_sum, count, entropy, approx_kl, watch)

    return train


def batched(train):
    """vmap a `train` over seeds and learning rates: (keys [S], lrs [L]) -> outputs [L, S, ...]."""
    over_seeds = jax.vmap(train, in_axes=(0, None))
    over_lrs = jax.vmap(over_seeds, in_axes=(None, 0))

    def run(keys, lrs):
        if lrs.shape[0] == 1:  # a size-1 batch axis through every op costs ~8 % on CPU
            return jax.tree.map(lambda x: x[None], over_seeds(keys, lrs[0]))
        return over_lrs(keys, lrs)

    return run


def batched_members(config: PPOConfig, plug_point: str, branches, on_update=None):
    """Every member's training runs in one function: (keys [S], lrs [L], members) -> outputs
    [K, L, S, ...], where members = (branch index [K], program [K, ...], count) and member
    k < count trains with branches[index[k]](program[k], *inputs) at `plug_point`; the slots
    from `count` on stay zero, untrained, so one program serves every batch of up to K.

    Members are a loop around the seed-vectorised trainer, and the plug point is a real
    conditional on the branch index, so each member runs only its own code, the same program
    body for any batch. Vmapping members instead makes the switch a select that runs every
    branch on every lane (one candidate's NaN derivative would reach the others' through the
    zero cotangent), and its numerics change with the batch size."""

    def checked(branch):
        return lambda program, *args: checked_call(
            plug_point, functools.partial(branch, program), *args
        )

    wrapped = [checked(branch) for branch in branches]
    if len(wrapped) == 1:  # a conditional alone too: the same numerics as in any batch
        wrapped = wrapped * 2

    def for_member(keys, lrs, member):
        index, program = member
        piece = functools.partial(lax.switch, index, wrapped, program)
        components = Components(**{plug_point: piece})
        return batched(make_train(config, components, on_update))(keys, lrs)

    def train(keys, lrs, members):
        index, program, count = members
        slots = jax.tree.map(lambda x: x[0], (index, program))
        shape = jax.eval_shape(for_member, keys, lrs, slots)
        outputs = jax.tree.map(lambda x: jnp.zeros((index.shape[0], *x.shape), x.dtype), shape)

        def one(k, outputs):
            member = jax.tree.map(lambda x: x[k], (index, program))
            trained = for_member(keys, lrs, member)
            return jax.tree.map(
                lambda all_, x: lax.dynamic_update_index_in_dim(all_, x, k, 0), outputs, trained
            )

        return lax.fori_loop(0, count, one, outputs)

    return train
