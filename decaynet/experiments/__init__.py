"""The paper's tables and figures, one module each; every one is an `memdyn.Experiment`."""

from decaynet.experiments import cobweb

EXPERIMENTS = [cobweb.EXPERIMENT]
