"""decaynet.plots on small synthetic results: each figure draws and names its paper figure; the
Table 2 figure shows n per violin and Welch's p-value of each pair, equal to SciPy's; the cobweb
figure has one legend for all its line styles and markers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.stats

import memlab
from decaynet import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _all_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def _table2_result():
    rng = np.random.default_rng(0)
    rows = []
    for dataset, model, hidden, centre, seeds in (
        ("mnist", "LSTM", 32, 95.0, 4),
        ("mnist", "DecayNet", 32, 95.5, 3),
        ("fashion_mnist", "LSTM", 64, 82.0, 3),
        ("fashion_mnist", "DecayNet", 48, 82.4, 3),
    ):
        accuracies = centre + rng.normal(0, 0.3, seeds)
        rows.append({"dataset": dataset, "model": model, "hidden": hidden,
                     "accuracies": accuracies, "paper": (centre, 0.2, centre + 1)})  # fmt: skip
    return {"rows": rows}


def test_table2_shows_n_and_welch_p_values_equal_to_scipy():
    result = _table2_result()
    fig = plots.table2_figure(result)
    fig.canvas.draw()
    texts = _all_texts(fig)
    rows = result["rows"]
    for first, second in ((rows[0], rows[1]), (rows[2], rows[3])):
        p = scipy.stats.ttest_ind(first["accuracies"], second["accuracies"], equal_var=False)
        assert f"Welch p = {p.pvalue:.2g}" in texts
    ticks = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    assert ticks == ["LSTM-32\nn = 4", "DecayNet-32\nn = 3", "LSTM-64\nn = 3", "DecayNet-48\nn = 3"]
    assert {"LSTM", "DecayNet", "paper's mean ± sd"} <= set(texts)
    assert fig._suptitle.get_text().startswith("DecayNet, Table 2 / Fig. 7")


def test_table2_colours_each_model_kind_as_everywhere():
    fig = plots.table2_figure(_table2_result())
    bodies = [c for ax in fig.axes for c in ax.collections if len(c.get_facecolor())]
    colours = {matplotlib.colors.to_hex(b.get_facecolor()[0], keep_alpha=False) for b in bodies}
    expected = {memlab.model_colour("LSTM"), memlab.model_colour("DecayNet")}
    assert {c.lower() for c in expected} <= colours


def _panel(title, previous=True):
    x = np.linspace(-0.2, 1.8, 5)
    return {"title": title, "x": x, "curve": 0.5 * x, "previous_curve": x if previous else None,
            "path": np.array([[0.5, 0.5], [0.5, 0.25], [0.25, 0.25]])}  # fmt: skip


def test_cobweb_has_one_legend_for_every_style_and_row_titles_apart_from_axis_labels():
    result = {
        "figure1": [_panel("a", False), _panel("b", False)],
        "figure5": [_panel("c", False), _panel("d", False)],
        "figure2": [{"label": f"Row {r}: case", "panels": [_panel("t = 1", False), _panel("t = 2")]}
                    for r in (1, 2)],
    }  # fmt: skip
    fig = plots.cobweb_figure(result)
    fig.canvas.draw()
    legends = [leg for sub in fig.subfigs for leg in sub.legends]
    assert len(legends) == 1
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert labels == [label for label, _ in plots._COBWEB_LEGEND]
    assert {"start x₀", "end xₙ", "y = x", "cobweb trajectory"} <= set(labels)
    # Row titles are subfigure labels, not prepended to the axis label "y".
    assert all(ax.get_ylabel() == "y" for ax in fig.axes)
    assert "Row 1:\ncase" in _all_texts(fig)


def test_permuted_and_learned_name_their_figures():
    permuted = {
        "epochs": [1, 2],
        "train_examples": 1000,
        "models": [
            {"model": "LSTM", "test_accuracy": [[10.0, 12.0], [11.0, 13.0]], "best": 13.0},
            {"model": "DecayNet", "test_accuracy": [[14.0, 15.0], [16.0, 17.0]], "best": 17.0},
        ],
    }
    fig = plots.permuted_figure(permuted)
    assert fig._suptitle.get_text().startswith("DecayNet, §6.1 / Fig. 3")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "worst to best seed" in labels and labels[0].startswith("LSTM: mean of 2 seeds")
    block = {"mean": np.ones(5), "std": np.zeros(5), "block_means": np.ones((3, 2))}
    learned = {"optimizers": {"LSTM": block, "DecayNet": block}, "updates": np.arange(5),
               "block": 2, "late_test": {"updates": [2, 4], "decaynet_minus_lstm": 0.1,
                                         "p_value": 0.25}}  # fmt: skip
    fig = plots.learned_figure(learned)
    assert fig._suptitle.get_text().startswith("DecayNet, §6.2 / Fig. 4")
    assert any("Welch p = 0.25" in t for t in _all_texts(fig))
