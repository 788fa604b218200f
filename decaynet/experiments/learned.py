"""`decaynet learned`: §6.2 / Fig. 4 — LSTM and DecayNet optimisers for MNIST MLPs (App. D–E).

For each seed, an LSTM and a DecayNet optimiser (`OPTIMISER_CELLS`: the LSTM takes one step per
update; DecayNet restarts its forget polar and takes `internal_steps`, its decrement clipped
because layer-normalised pre-activations leave the paper's [−3, 3]) are meta-trained
(`decaynet.meta_train`)
on MLP 784-20-10 optimisees; then all five optimisers (the two learned ones, SGD 0.05, Adam 0.002,
RMSProp 0.001) run 100 updates on the same `eval_optimisees` fresh optimisees and minibatches.
Reported per optimiser: the loss curve `L(θ_t; b_{t+1})`, t = 0..100 (mean and sd over
optimisees), the mean loss per block of 20 updates (Fig. 4b), and a Welch t-test of DecayNet
against LSTM on each optimisee's mean loss over updates 80–100 (the paper: DecayNet lower by 0.13,
p < 0.001). Losses are training-minibatch losses, as in Andrychowicz et al. (2016).

The paper does not state how long the optimisers are meta-trained; `meta_iterations` is ours.

Learning rates: the paper's `α_t = W_up q_t` (`rates="linear"`, the default, resolved once by
`RATES` to `decaynet.LinearRates()`) takes either sign. At initialisation about half its entries
are negative — gradient *ascent* on those weights — and after 3 meta-iterations the DecayNet
optimiser still had 44–51 % negative rates over all 100 updates (the LSTM optimiser's fell from
61 % to 24 %), so once descent on the other half had done its work the loss rose without bound
(8.5 at update 100 of a 3-iteration run, from 2.3): the divergence seen before. The default 200
meta-iterations cure it (none of 300 evaluation optimisees diverged, 3 meta-training seeds).
`rates="softplus"` (`decaynet.SoftplusRates()`) makes every rate positive, so each update is a
descent step whatever the training; `quick()` uses it, since its 3 meta-iterations are too few
for the linear rates.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats

from decaynet import _data as data
from decaynet import _learned as learned
from decaynet._cells import DecayCell, LSTMCell
from decaynet.plots import learned_figure
from memdyn import ConfigError
from memdyn.internal import AtLeast, MinLength, NonNegative, OneOf, Positive, check_fields
from memlab import Experiment

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
BLOCK = 20
# The paper's pair of optimiser cells: (class, its own keywords, whether `internal_steps` applies).
OPTIMISER_CELLS = ((LSTMCell, {}, False), (DecayCell, {"clip_decrement": True}, True))
# The command line's names of the learning-rate maps (`--rates softplus`), resolved once, in `run`.
RATES: dict[str, learned.AbstractRates] = {
    "linear": learned.LinearRates(),
    "softplus": learned.SoftplusRates(),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Learned optimisers (§6.2, App. D–E, Fig. 4) against SGD, Adam and RMSProp.

    Attributes:
        meta_iterations: meta-training iterations per learned optimiser, each on fresh
            optimisees (not stated in the paper; ours).
        optimisees: fresh MLP 784-20-10 optimisees per meta-iteration (paper: 5).
        updates: optimisee updates per meta-training unroll and per evaluation curve
            (paper: 100); a multiple of `truncation` and ≥ 40 (Fig. 4b's blocks of 20).
        truncation: updates per truncation; the meta-loss sums the loss improvements over a
            truncation and each truncation takes one Adam step (paper: 20).
        batch_size: MNIST images per optimisee minibatch (paper: 32).
        meta_learning_rate: Adam step size of meta-training (paper: 1e-3).
        hidden: hidden units of the optimiser's LSTM or DecayNet cell (paper: 64).
        projection: size of the input projection r_H → projection (paper: 28).
        internal_steps: steps the DecayNet optimiser takes per update before emitting α_t
            (the polar's D; paper: 2, up to 20); the LSTM optimiser always takes 1.
        rates: how both optimisers turn the up-projection u into learning rates (`RATES`):
            `linear` (the paper's α = u, of either sign; a negative rate is gradient ascent on
            its weight, and an under-trained DecayNet optimiser diverged that way) or
            `softplus` (α = log(1 + e^u) > 0, always a descent step).
        seeds: PRNG seeds, distinct; per seed both optimisers are meta-trained afresh and
            all five optimisers evaluated, and the curves are pooled over seeds.
        eval_optimisees: fresh optimisees per seed on which every optimiser runs `updates`
            updates (the same optimisees and minibatches for all); ≥ 2 for the t-test.
        sgd_learning_rate: step size of the SGD baseline (paper: 0.05).
        adam_learning_rate: step size of the Adam baseline (paper: 0.002).
        rmsprop_learning_rate: step size of the RMSProp baseline, Optax's `rmsprop`
            (paper: 0.001).
        train_subset: use the first N MNIST training images for meta-training and evaluation;
            0 means the whole training set (60,000).
        data_dir: folder holding `mnist/` with the idx files; empty means look in
            $MEMDYN_DATA, then a `shared/data` beside the repository, then download into the
            cache (~/.cache/memdyn or $MEMDYN_CACHE).
    """

    meta_iterations: Annotated[int, AtLeast(1)] = 200
    optimisees: Annotated[int, AtLeast(1)] = 5
    updates: Annotated[int, AtLeast(2 * BLOCK)] = 100
    truncation: Annotated[int, AtLeast(1)] = 20
    batch_size: Annotated[int, AtLeast(1)] = 32
    meta_learning_rate: Annotated[float, Positive] = 1e-3
    hidden: Annotated[int, AtLeast(1)] = 64
    projection: Annotated[int, AtLeast(1)] = 28
    internal_steps: Annotated[int, AtLeast(1)] = 2
    rates: Annotated[str, OneOf(RATES)] = "linear"
    seeds: Annotated[tuple[int, ...], MinLength(1)] = (0,)
    eval_optimisees: Annotated[int, AtLeast(2)] = 100
    sgd_learning_rate: Annotated[float, Positive] = 0.05
    adam_learning_rate: Annotated[float, Positive] = 0.002
    rmsprop_learning_rate: Annotated[float, Positive] = 0.001
    train_subset: Annotated[int, NonNegative] = 0
    data_dir: str = ""

    def __post_init__(self):
        check_fields(self)
        if self.updates % self.truncation:
            raise ConfigError(
                f"updates must be a multiple of truncation; got {self.updates}, {self.truncation}"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct; got {self.seeds}")

    def quick(self) -> Config:
        """3 meta-iterations, 10 evaluation optimisees, the first 10,000 training images, softplus
        rates (with 3 meta-iterations the paper's linear rates let the DecayNet optimiser
        diverge)."""
        return dataclasses.replace(
            self, meta_iterations=3, eval_optimisees=10, train_subset=10_000, rates="softplus"
        )


def _images(split: data.Split, size: int) -> tuple[jax.Array, jax.Array]:
    """Flattened `(x/255 − 0.1307)/0.3081` images and labels, on device."""
    images, labels = (split.images, split.labels) if size == 0 else (
        split.images[:size], split.labels[:size])  # fmt: skip
    x = (images.reshape(len(images), -1).astype(np.float32) / 255 - MNIST_MEAN) / MNIST_STD
    return jnp.asarray(x), jnp.asarray(labels.astype(np.int32))


def run(config: Config, out_dir: Path) -> dict:
    del out_dir
    train_split, _ = data.load("mnist", config.data_dir or None)
    images, labels = _images(train_split, config.train_subset)
    num_parameters = learned.mlp_parameter_count()
    rates = RATES[config.rates]
    baselines = {
        "SGD": optax.sgd(config.sgd_learning_rate),
        "Adam": optax.adam(config.adam_learning_rate),
        "RMSProp": optax.rmsprop(config.rmsprop_learning_rate),
    }
    learned_names = [cell.label for cell, _, _ in OPTIMISER_CELLS]
    curves = {name: [] for name in (*learned_names, *baselines)}
    meta_losses = {name: [] for name in learned_names}
    seconds = {
        "meta_train": dict.fromkeys(learned_names, 0.0),
        "evaluate": dict.fromkeys(curves, 0.0),
    }
    for seed in config.seeds:
        net_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(seed), 3)
        optimizers = dict(baselines)
        for cell, options, internal in OPTIMISER_CELLS:
            name = cell.label
            start = time.perf_counter()
            net = learned.LearnedOptimizer(
                cell, num_parameters, projection=config.projection, hidden=config.hidden,
                internal_steps=config.internal_steps if internal else 1, rates=rates,
                key=net_key, **options,
            )  # fmt: skip
            net, history = learned.meta_train(
                net, images, labels, key=train_key, meta_iterations=config.meta_iterations,
                optimisees=config.optimisees, updates=config.updates,
                truncation=config.truncation, batch_size=config.batch_size,
                optimizer=optax.adam(config.meta_learning_rate),
            )  # fmt: skip
            meta_losses[name].append(np.asarray(history))
            seconds["meta_train"][name] += time.perf_counter() - start
            optimizers[name] = learned.learned_optimizer(net)
        for name in curves:
            start = time.perf_counter()
            losses = learned.loss_curves(
                optimizers[name], images, labels, key=eval_key,
                optimisees=config.eval_optimisees, updates=config.updates,
                batch_size=config.batch_size,
            )  # fmt: skip
            curves[name].append(np.asarray(losses))
            seconds["evaluate"][name] += time.perf_counter() - start
    optimizers_out = {}
    for name, parts in curves.items():
        losses = np.concatenate(parts)  # (seeds · eval_optimisees, updates + 1)
        blocks = losses[:, 1:].reshape(len(losses), -1, BLOCK).mean(axis=2)
        optimizers_out[name] = {
            "mean": losses.mean(axis=0),
            "std": losses.std(axis=0, ddof=1),
            "final": float(losses[:, -1].mean()),
            "block_means": blocks,
            "late_means": losses[:, -(BLOCK + 1) :].mean(axis=1),
        }
    lstm = optimizers_out[LSTMCell.label]["late_means"]
    decay = optimizers_out[DecayCell.label]["late_means"]
    welch = scipy.stats.ttest_ind(decay, lstm, equal_var=False)
    return {
        "optimizers": optimizers_out,
        "updates": np.arange(config.updates + 1),
        "block": BLOCK,
        "meta_losses": {name: np.stack(v) for name, v in meta_losses.items()},
        "late_test": {
            "updates": [config.updates - BLOCK, config.updates],
            "decaynet_minus_lstm": float(decay.mean() - lstm.mean()),
            "welch_t": float(welch.statistic),
            "p_value": float(welch.pvalue),
        },
        "num_parameters": num_parameters,
        "train_examples": int(len(images)),
        "seconds": seconds,
    }


EXPERIMENT = Experiment(
    name="learned",
    help="§6.2 / Fig. 4: LSTM and DecayNet optimisers vs SGD, Adam, RMSProp on MNIST MLPs",
    config=Config,
    run=run,
    plot=learned_figure,
)
