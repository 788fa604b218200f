"""memdyn's figure style: the rc settings hold while a plot is built, one colour per model kind,
legends for styles, and `stamp_figure`'s footer with the quick-run mark only when quick."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import memlab


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.texts]


@pytest.fixture
def fig():
    with memlab.figure_style():
        figure, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
    yield figure
    plt.close(figure)


@pytest.mark.parametrize("quick", [False, True])
def test_stamp_figure_marks_quick_runs_only(fig, quick):
    memlab.stamp_figure(fig, source="Li et al. 2021, Fig. 3", quick=quick)
    texts = _texts(fig)
    assert "Source: Li et al. 2021, Fig. 3" in texts
    quick_marks = [t for t in texts if "quick run" in t.lower()]
    assert len(quick_marks) == (1 if quick else 0)
    if quick:
        assert "not the paper's setting" in quick_marks[0]


def test_stamp_figure_replaces_an_earlier_stamp(fig):
    memlab.stamp_figure(fig, source="first", quick=True)
    memlab.stamp_figure(fig, source="second", quick=False)
    texts = _texts(fig)
    assert "Source: second" in texts and "Source: first" not in texts
    assert not [t for t in texts if "quick run" in t.lower()]


def test_stamp_survives_a_tight_save(fig, tmp_path):
    memlab.stamp_figure(fig, source="DecayNet, Table 2 / Fig. 7", quick=True)
    path = memlab.save_figure(fig, tmp_path / "figure.png")
    unstamped = tmp_path / "plain.png"
    with memlab.figure_style():
        plain, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
    memlab.save_figure(plain, unstamped)
    # The footer lies below the canvas: the tight bounding box grows to keep it.
    height = plt.imread(path).shape[0]
    assert height > plt.imread(unstamped).shape[0]


def test_style_is_applied_inside_and_restored_outside():
    default = matplotlib.rcParams["axes.spines.top"]
    with memlab.figure_style():
        assert matplotlib.rcParams["axes.spines.top"] is False
        assert matplotlib.rcParams["figure.constrained_layout.use"] is True
    assert matplotlib.rcParams["axes.spines.top"] == default


def test_model_colours_are_fixed_per_kind():
    assert memlab.model_colour("LSTM") == memlab.MODEL_COLOURS["LSTM"]
    assert memlab.model_colour("DecayNet") == memlab.MODEL_COLOURS["DecayNet"]
    assert memlab.model_colour("LSTM") != memlab.model_colour("DecayNet")
    assert memlab.model_colour("something else") not in memlab.MODEL_COLOURS.values()


def test_key_legend_has_one_entry_per_style(fig):
    entries = [("GD", {"ls": "-"}), ("heavy ball", {"ls": "--"}), ("start", {"marker": "D"})]
    legend = memlab.key_legend(fig.axes[0], entries)
    assert [t.get_text() for t in legend.get_texts()] == ["GD", "heavy ball", "start"]
    assert [h.get_linestyle() for h in legend.legend_handles][:2] == ["-", "--"]
