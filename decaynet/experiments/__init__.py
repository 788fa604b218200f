"""The paper's tables and figures, one module each; every one is an `memdyn.Experiment`."""

from decaynet.experiments import addition, cobweb

EXPERIMENTS = [cobweb.EXPERIMENT, addition.EXPERIMENT]
