"""The paper's figures and analyses, one module each; every one is an `memdyn.Experiment`."""

EXPERIMENTS = []
