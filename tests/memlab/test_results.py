"""`memdyn list/show/compare/replot/csv/rerun`: results on disk, looked at without recomputing."""

import csv
import dataclasses
import io
import json

import matplotlib
import numpy as np
import pytest

import curse.experiments
import decaynet.experiments
from decaynet.experiments import cobweb, permuted, table2
from memdyn import MemdynError
from memlab import _results as results
from memlab import execute
from memlab._experiment import is_quick
from memlab._registry import experiments_of, find_experiment, registered_packages
from memlab.cli import main

matplotlib.use("Agg")


def _figure_data(fig) -> list[np.ndarray]:
    """Every line's and scatter's points of a figure, in drawing order."""
    data = []
    for ax in fig.axes:
        data += [np.asarray(line.get_xydata(), dtype=float) for line in ax.lines]
        data += [np.asarray(c.get_offsets(), dtype=float) for c in ax.collections]
    return data


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two cobweb runs (seconds) whose configs differ in two fields."""
    root = tmp_path_factory.mktemp("results")
    base = cobweb.Config(curve_points=41)
    other = dataclasses.replace(base, curve_points=61, fig1_steps=base.fig1_steps + 3)
    figures = []
    for name, config in (("a", base), ("b", other)):
        execute(cobweb.EXPERIMENT, config, root / name)
        figures.append(cobweb.EXPERIMENT.plot(cobweb.EXPERIMENT.run(config, root / name)))
    return root, base, other, figures


def test_replot_draws_the_same_figure_data_as_the_run(two_runs):
    root, _, _, figures = two_runs
    replotted = results.replot(results.read_record(root / "a"))
    ran, again = _figure_data(figures[0]), _figure_data(replotted)
    assert len(ran) == len(again) > 5
    for x, y in zip(ran, again, strict=True):
        np.testing.assert_array_equal(x, y)


def test_rerun_rebuilds_the_config_exactly(two_runs):
    root, base, other, _ = two_runs
    assert results.config_of(results.read_record(root / "a")) == base
    assert results.config_of(results.read_record(root / "b")) == other
    # tuples of floats survive the JSON round trip as the same tuples
    config = permuted.PermutedConfig().quick()
    record = {"path": "x", "package": "decaynet", "experiment": "permuted"}
    record["config"] = json.loads(json.dumps(dataclasses.asdict(config)))
    assert results.config_of(record) == config


# The config of a `decaynet table2 --quick` record written before configs nested their parts
# (config schema 1): its training settings are flat fields, where `train` now holds them.
FLAT_TABLE2 = {
    "models": ["mnist/lstm/32", "mnist/decay/32"],
    "seeds": 3,
    "first_seed": 0,
    "batch_size": 64,
    "learning_rate": 0.01,
    "epochs": 1,
    "train_subset": 6400,
    "test_subset": 1000,
    "chunk_steps": 100,
    "checkpoint_every": 100,
    "init": "pytorch",
    "data_dir": "",
}


def test_a_flat_record_is_refused_naming_the_record_and_its_schema_version(tmp_path, capsys):
    """Never read with the part's defaults filled in: the record, its schema version and the
    fields that do not fit are named; `list` and `show` still read it (they need no config)."""
    record = {"experiment": "table2", "package": "decaynet", "config": FLAT_TABLE2, "result": {}}
    path = tmp_path / "old" / "table2.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    with pytest.raises(MemdynError) as error:
        results.config_of(results.read_record(path))
    message = str(error.value)
    assert message.startswith(f"{path}: its config, schema version 1 (flat fields, before ")
    assert "cannot be read as Config (config schema version 2)" in message
    assert "no field config.train" in message and "unknown field config.batch_size" in message
    assert main(["rerun", str(path), "--out", str(tmp_path / "again")]) == 2
    assert "schema version 1" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()
    assert main(["list", str(tmp_path)]) == 0 and "decaynet table2" in capsys.readouterr().out
    assert main(["show", str(path)]) == 0
    nested = dict(record, config_schema=2, config={**FLAT_TABLE2, "batch_size": 32})
    assert "(config schema versions 1 and 2: fields moved)" in results.compare(
        results.read_record(path), {**nested, "path": "new.json"}
    )
    current = json.loads(json.dumps(dataclasses.asdict(table2.Config().quick())))
    path.write_text(json.dumps(dict(record, config_schema=3, config=current)))
    with pytest.raises(MemdynError, match="schema version 3, cannot be read as Config .* at most"):
        results.config_of(results.read_record(path))


def test_a_record_holds_its_nested_config_and_its_schema_version(tmp_path):
    """What `execute` writes: the config with its part as a JSON object, `config_schema` 2, read
    back by `rerun` as the same config; `compare` lists a part's fields by dotted path."""
    config = table2.Config().quick()

    def run(config, out_dir):
        return {"steps": 1}

    experiment = dataclasses.replace(table2.EXPERIMENT, run=run, plot=None)
    execute(experiment, config, tmp_path / "a")
    record = results.read_record(tmp_path / "a")
    assert record["config_schema"] == 2
    assert record["config"]["train"]["learning_rate"] == 0.01
    assert "learning_rate" not in record["config"]
    assert results.config_of(record, experiment) == config
    changed = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=32))
    other = dict(record, config=json.loads(json.dumps(dataclasses.asdict(changed))))
    assert results.config_diff(record, other) == [("train.batch_size", 64, 32)]


def test_list_show_compare(two_runs, capsys):
    root, _, _, _ = two_runs
    assert main(["list", str(root)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("decaynet cobweb" in line for line in lines)
    assert lines[0].endswith("a/cobweb.json") and lines[1].endswith("b/cobweb.json")
    assert main(["compare", str(root / "a"), str(root / "b")]) == 0
    table = capsys.readouterr().out
    diff = [line.split() for line in table.splitlines() if line.startswith("config.")]
    assert diff == [["config.curve_points", "41", "61"], ["config.fig1_steps", "6", "9"]]
    assert main(["show", str(root / "a" / "cobweb.json")]) == 0
    assert "decaynet cobweb" in capsys.readouterr().out


def test_compare_refuses_different_experiments(two_runs, tmp_path, capsys):
    root, _, _, _ = two_runs
    record = json.loads((root / "a" / "cobweb.json").read_text())
    record["experiment"] = "table2"
    (tmp_path / "t.json").write_text(json.dumps(record))
    assert main(["compare", str(root / "a"), str(tmp_path / "t.json")]) == 2
    assert "cannot compare a cobweb record with a table2 record" in capsys.readouterr().err


def test_bad_records_name_the_file(tmp_path):
    (tmp_path / "cut.json").write_text('{"experiment": "fig3", "con')
    with pytest.raises(MemdynError, match="cut.json: not a JSON record"):
        results.read_record(tmp_path / "cut.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(MemdynError, match="other.json: not a memdyn record"):
        results.read_record(tmp_path / "other.json")
    with pytest.raises(MemdynError, match="no such record"):
        results.read_record(tmp_path / "missing.json")


def test_curves_as_csv():
    record = {
        "path": "x",
        "result": {
            "models": [{"cell": "lstm", "train_loss": [[1.0, 2.0], [0.5, None]], "params": 3}],
            "steps": [1, 2],
        },
    }
    tables = results.curves(record)
    assert list(tables) == ["models.lstm.train_loss"]  # labelled by cell
    rows = list(csv.reader(io.StringIO(tables["models.lstm.train_loss"])))
    assert rows == [
        ["index", "train_loss_0", "train_loss_1"],
        ["0", "1.0", "2.0"],
        ["1", "0.5", "nan"],
    ]


def test_only_a_quick_configuration_is_marked_quick():
    assert is_quick(permuted.PermutedConfig().quick())
    assert not is_quick(permuted.PermutedConfig())
    # cobweb's quick() is its full figure: neither it nor a changed config is a quick run
    assert not is_quick(cobweb.Config())
    assert not is_quick(dataclasses.replace(cobweb.Config(), fig1_steps=9))
    assert not is_quick(dataclasses.replace(permuted.PermutedConfig().quick(), seeds=3))


def test_the_registry_finds_each_papers_experiments_and_names_what_it_lacks():
    """The lab finds experiments through the `memlab.experiments` entry points, never by
    importing a package by name: both papers are registered with every experiment their command
    line offers, and an unknown package or experiment is an error naming it."""
    assert {"curse", "decaynet"} <= set(registered_packages())
    assert experiments_of("curse") == curse.experiments.EXPERIMENTS
    assert experiments_of("decaynet") == decaynet.experiments.EXPERIMENTS
    assert find_experiment("curse", "fig3") is curse.experiments.fig3.EXPERIMENT
    with pytest.raises(MemdynError, match="'nosuch'.*registered: .*curse"):
        experiments_of("nosuch")
    with pytest.raises(MemdynError, match="curse has no experiment 'fig99'"):
        find_experiment("curse", "fig99")
