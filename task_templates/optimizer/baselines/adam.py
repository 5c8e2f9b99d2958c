import optax


def make_optimizer(learning_rate, max_grad_norm):
    """PPO's optimizer: global-norm gradient clipping, then Adam with eps 1e-5."""
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5)
    )
