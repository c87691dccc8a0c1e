"""L0: pure, batched ``jax.numpy`` kernels. No dates, objects, I/O or Python branching on values."""
