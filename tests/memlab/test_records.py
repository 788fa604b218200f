import dataclasses
import datetime
import json
import os
import shutil
import socket
import stat
import subprocess
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memlab._records
from memdyn import (
    CheckpointError,
    ConfigError,
    check_finite,
    load_checkpoint,
    save_checkpoint,
)
from memdyn.internal import (
    Positive,
    check_fields,
    check_in,
    check_positive,
    check_shape,
    replace_fields,
    write_json,
)
from memlab import Experiment, environment, execute
from memlab._cli import build_parser, config_from_args
from memlab._records import SOURCE_DIR, float_dtypes


def test_write_json_converts_arrays_and_non_finite(tmp_path):
    path = write_json(tmp_path / "a" / "r.json", {"x": jnp.arange(3.0), "t": np.inf, "n": 2})
    assert json.loads(path.read_text()) == {"x": [0.0, 1.0, 2.0], "t": None, "n": 2}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left behind


def test_checkpoint_roundtrip_loads_the_file_not_the_template(tmp_path):
    tree = {"w": jnp.arange(4.0), "step": jnp.asarray(7), "b": np.array([[1.5, -2.0]], np.float32)}
    save_checkpoint(tmp_path / "ck.eqx", tree, {"step": 7})
    # A template of zeros: a loader that ignored the file would hand the zeros back.
    template = {"w": jnp.zeros(4), "step": jnp.asarray(0), "b": np.zeros((1, 2), np.float32)}
    loaded, meta = load_checkpoint(tmp_path / "ck.eqx", template)
    assert meta == {"step": 7}
    np.testing.assert_array_equal(loaded["w"], [0.0, 1.0, 2.0, 3.0])
    assert int(loaded["step"]) == 7
    np.testing.assert_array_equal(loaded["b"], [[1.5, -2.0]])
    assert isinstance(loaded["b"], np.ndarray) and loaded["b"].dtype == np.float32


@pytest.mark.parametrize(
    "template, detail",
    [
        ({"w": jnp.zeros(5), "step": jnp.asarray(0)}, r"leaf \['w'\] is \[\[4\], 'float32'\]"),
        ({"w": jnp.zeros(4, jnp.int32), "step": jnp.asarray(0)}, "'int32'"),
        ({"w": jnp.zeros(4)}, "1 array leaves|leaf"),
        ({"v": jnp.zeros(4), "step": jnp.asarray(0)}, r"\['v'\]"),
    ],
)
def test_checkpoint_structure_mismatch_is_a_checkpoint_error(tmp_path, template, detail):
    path = save_checkpoint(tmp_path / "ck.eqx", {"w": jnp.arange(4.0), "step": jnp.asarray(7)}, {})
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} does not match.*{detail}"):
        load_checkpoint(path, template)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"no checkpoint at {tmp_path / 'missing.eqx'}"):
        load_checkpoint(tmp_path / "missing.eqx", {"w": jnp.zeros(4)})


def test_validators_name_the_problem():
    with pytest.raises(ValueError, match="w contains 1 non-finite"):
        check_finite("w", jnp.array([1.0, jnp.nan]))
    with pytest.raises(ValueError, match="w must be > 0"):
        check_positive("w", np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\)"):
        check_shape("x", np.zeros((2, 4)), (None, 3))
    with pytest.raises(ValueError, match="unknown target 'foo'"):
        check_in("target", "foo", ["airy"])


@dataclasses.dataclass(frozen=True)
class _Config:
    omegas: tuple[float, ...] = (1.0, 2.0)
    steps: int = 10
    adam: bool = False

    def quick(self):
        return dataclasses.replace(self, steps=2)


def test_cli_flags_map_onto_config():
    exp = Experiment("toy", "a toy", _Config, run=lambda c, d: {}, plot=None)
    parser = build_parser("prog", "d", [exp])
    args = parser.parse_args(["toy", "--quick", "--omegas", "0.5", "0.25", "--adam"])
    assert config_from_args(_Config, args) == _Config(omegas=(0.5, 0.25), steps=2, adam=True)
    args = parser.parse_args(["toy", "--steps", "3"])
    assert config_from_args(_Config, args) == _Config(steps=3)


@dataclasses.dataclass(frozen=True)
class _Part:
    """Attributes:
    learning_rate: step size.
    sizes: layer sizes.
    """

    learning_rate: Annotated[float, Positive] = 0.1
    sizes: tuple[int, ...] = (4,)

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class _Nested:
    """Attributes:
    train: the training part.
    steps: how many steps.
    """

    train: _Part = _Part(learning_rate=0.5)
    steps: int = 10

    def __post_init__(self):
        check_fields(self)

    def quick(self):
        return replace_fields(self, {"steps": 2, "train.sizes": (2,)})


def test_nested_flags_map_onto_the_nested_config(capsys):
    exp = Experiment("toy", "a toy", _Nested, run=lambda c, d: {}, plot=None)
    parser = build_parser("prog", "d", [exp])
    args = parser.parse_args(["toy", "--train.learning-rate", "0.25", "--train.sizes", "3", "5"])
    assert config_from_args(_Nested, args) == _Nested(train=_Part(0.25, (3, 5)))
    args = parser.parse_args(["toy", "--quick", "--train.learning-rate", "0.25"])
    assert config_from_args(_Nested, args) == _Nested(train=_Part(0.25, (2,)), steps=2)
    args = parser.parse_args(["toy", "--quick"])  # the part's default is the config's (0.5)
    assert config_from_args(_Nested, args) == _Nested(train=_Part(0.5, (2,)), steps=2)
    args = parser.parse_args(["toy", "--train.learning-rate", "-1"])
    with pytest.raises(ConfigError, match=r"^_Nested\.train\.learning_rate must be > 0; got -1"):
        config_from_args(_Nested, args)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_result_files_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        json_path = write_json(tmp_path / "r.json", {"x": 1})
        ckpt = save_checkpoint(tmp_path / "c.eqx", {"w": jnp.zeros(2)}, {})
    finally:
        os.umask(old)
    for path in (json_path, ckpt, ckpt.with_suffix(".eqx.json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def _git_head() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=SOURCE_DIR, capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else None


IN_A_CHECKOUT = shutil.which("git") is not None and _git_head() is not None


@pytest.mark.skipif(not IN_A_CHECKOUT, reason="git missing or memdyn is not in a git checkout")
def test_environment_names_the_commit_host_versions_and_precision():
    env = environment()
    assert env["git_commit"] == _git_head()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=SOURCE_DIR, capture_output=True, text=True, check=True,
    ).stdout.strip() != ""  # fmt: skip
    assert env["git_dirty"] is dirty
    assert env["host"] == socket.gethostname()
    assert set(env["versions"]) >= {
        "jax", "jaxlib", "equinox", "diffrax", "optimistix", "optax", "numpy", "scipy",
        "matplotlib", "jaxtyping", "torch",
    }  # fmt: skip
    assert env["versions"]["numpy"] == np.__version__
    assert env["x64_default"] is bool(jax.config.read("jax_enable_x64"))
    assert "x64" not in env


def test_outside_a_git_checkout_the_commit_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(memlab._records, "SOURCE_DIR", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    env = environment()
    assert env["git_commit"] is None and env["git_dirty"] is None


def test_float_dtypes_are_those_the_result_was_computed_in():
    with jax.enable_x64(True):
        wide = jnp.ones(3) * 2
    result = {"a": wide, "b": [np.float32(1.0), {"c": np.arange(3)}], "d": 1.5, "e": "x"}
    assert float_dtypes(result) == ["float32", "float64"]
    assert float_dtypes({"n": np.arange(3), "f": 0.5}) == []


def test_execute_records_how_the_result_was_made(tmp_path):
    def run(config, out_dir):
        with jax.enable_x64(True):
            return {"y": jnp.linspace(0.0, 1.0, 3)}

    exp = Experiment("toy", "a toy", _Config, run=run, plot=None)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    paths = execute(exp, _Config(), tmp_path / "out", command_line=["prog", "toy", "--steps", "3"])
    after = datetime.datetime.now(datetime.UTC)
    record = json.loads(paths["json"].read_text())
    assert record["command_line"] == ["prog", "toy", "--steps", "3"]
    assert record["float_dtypes"] == ["float64"]
    assert record["environment"]["x64_default"] is False  # x64 was on only inside the run
    started = datetime.datetime.fromisoformat(record["started_utc"])
    finished = datetime.datetime.fromisoformat(record["finished_utc"])
    assert started.utcoffset() == datetime.timedelta(0)
    assert before <= started <= finished <= after
    assert {"git_commit", "git_dirty", "host", "versions"} <= record["environment"].keys()
    assert stat.S_IMODE(paths["json"].stat().st_mode) == 0o666 & ~_umask()
