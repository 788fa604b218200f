"""On the Curse of Memory in RNNs (Li, Han, E, Li, ICLR 2021), in JAX.

Analyses run in float64: wrap calls in `with jax.enable_x64(True):` (the CLI does this).
"""
