"""Action distributions of the policy head (sandbox/families/base.py's ActionDistribution)."""

import jax
import jax.numpy as jnp


class Categorical:
    """Discrete actions: the head is one logit per action."""

    def head_size(self, action_size: int) -> int:
        return action_size

    def sample(self, rng, logits):
        return jax.random.categorical(rng, logits)

    def log_prob_and_entropy(self, logits, action):
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, action[..., None], axis=-1)[..., 0]
        entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
        return log_prob, entropy

    def mode(self, logits):
        return jnp.argmax(logits, axis=-1)


class DiagonalGaussian:
    """Continuous actions: the head is a mean and a log standard deviation per action
    dimension (the std depends on the state, as in Brax's PPO); the environment clips what
    falls outside its bounds. Log-probability and entropy are the unclipped Gaussian's."""

    LOG_STD_RANGE = (-5.0, 2.0)  # keeps the std in [0.007, 7.4]: no collapse, no blow-up

    def head_size(self, action_size: int) -> int:
        return 2 * action_size

    def _split(self, head):
        mean, log_std = jnp.split(head, 2, axis=-1)
        return mean, jnp.clip(log_std, *self.LOG_STD_RANGE)

    def sample(self, rng, head):
        mean, log_std = self._split(head)
        return mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape)

    def log_prob_and_entropy(self, head, action):
        mean, log_std = self._split(head)
        z = (action - mean) * jnp.exp(-log_std)
        half_log_2pi = 0.5 * jnp.log(2.0 * jnp.pi)
        log_prob = jnp.sum(-0.5 * jnp.square(z) - log_std - half_log_2pi, axis=-1)
        entropy = jnp.sum(log_std + 0.5 + half_log_2pi, axis=-1)
        return log_prob, entropy

    def mode(self, head):
        return self._split(head)[0]


CATEGORICAL = Categorical()
DIAGONAL_GAUSSIAN = DiagonalGaussian()
