"""PPO-family training in JAX: one jitted function of an RNG key per run, vmapped over seeds."""
