"""An independent reference for the reported test accuracies: record every `evaluate` call of an
experiment, then count each seed's correct predictions with NumPy (argmax of the logits of every
test example, one example at a time, against the labels)."""

from __future__ import annotations

import jax
import numpy as np

import memdyn
from decaynet import _train as train


def record_evaluations(monkeypatch) -> list[tuple]:
    """Wrap `decaynet._train.evaluate`; the list fills with `(run, static, xs, ys, result)`."""
    calls = []
    real = train.evaluate

    def recording(run, static, xs, ys, **kwargs):
        result = real(run, static, xs, ys, **kwargs)
        calls.append((run, static, np.asarray(xs), np.asarray(ys), np.asarray(result)))
        return result

    monkeypatch.setattr(train, "evaluate", recording)
    return calls


def percent_correct(run, static, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Per seed: 100 × (number of examples whose largest logit is at the label) / n."""
    models = memdyn.stacked_models(run, static)
    seeds = jax.tree.leaves(run.params)[0].shape[0]
    out = []
    for i in range(seeds):
        model, state = jax.tree.map(lambda a, i=i: a[i], (models, run.model_state))
        logits = model(xs, state, inference=True)[0]
        predictions = np.argmax(np.asarray(logits), axis=-1)
        out.append(100.0 * np.count_nonzero(predictions == ys) / len(ys))
    return np.asarray(out)
