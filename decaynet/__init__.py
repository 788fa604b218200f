"""DecayNet: A Study on the Cell States of LSTMs (ICLR 2019 submission), in JAX."""
