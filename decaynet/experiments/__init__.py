"""The paper's tables and figures, one module each; every one is an `memlab.Experiment`."""

from decaynet.experiments import addition, cobweb, learned, memory, permuted, spectrum, table2

EXPERIMENTS = [
    cobweb.EXPERIMENT,
    addition.EXPERIMENT,
    table2.EXPERIMENT,
    permuted.EXPERIMENT,
    learned.EXPERIMENT,
    spectrum.EXPERIMENT,
    memory.EXPERIMENT,
]
