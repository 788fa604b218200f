"""The paper's figures and analyses, one module each; every one is an `memlab.Experiment`."""

from curse.experiments import (
    approx,
    fig1,
    fig2,
    fig3,
    fig4,
    landscape_exp,
    memory,
    momentum,
    spectrum,
    stability,
)

EXPERIMENTS = [
    fig1.EXPERIMENT,
    fig2.EXPERIMENT,
    fig3.EXPERIMENT,
    fig4.EXPERIMENT,
    spectrum.EXPERIMENT,
    approx.EXPERIMENT,
    landscape_exp.EXPERIMENT,
    momentum.EXPERIMENT,
    stability.EXPERIMENT,
    memory.EXPERIMENT,
]
