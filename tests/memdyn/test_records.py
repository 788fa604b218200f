import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from memdyn import (
    Experiment,
    check_finite,
    check_in,
    check_positive,
    check_shape,
    load_checkpoint,
    save_checkpoint,
    write_json,
)
from memdyn._cli import build_parser, config_from_args


def test_write_json_converts_arrays_and_non_finite(tmp_path):
    path = write_json(tmp_path / "a" / "r.json", {"x": jnp.arange(3.0), "t": np.inf, "n": 2})
    assert json.loads(path.read_text()) == {"x": [0.0, 1.0, 2.0], "t": None, "n": 2}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left behind


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    tree = {"w": jnp.arange(4.0), "step": jnp.asarray(7)}
    save_checkpoint(tmp_path / "ck.eqx", tree, {"step": 7})
    loaded, meta = load_checkpoint(tmp_path / "ck.eqx", tree)
    assert meta == {"step": 7}
    np.testing.assert_array_equal(loaded["w"], tree["w"])
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(tmp_path / "ck.eqx", {"w": jnp.zeros(5), "step": jnp.asarray(0)})
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.eqx", tree)


def test_checkpoint_is_one_file_and_rejects_truncation(tmp_path):
    tree = {"w": jnp.arange(4.0)}
    path = save_checkpoint(tmp_path / "ck.eqx", tree, {"step": 3, "losses": [0.5, np.nan]})
    path.with_suffix(".eqx.json").unlink()  # the sidecar is only a readable copy
    _, meta = load_checkpoint(path, tree)
    assert meta == {"step": 3, "losses": [0.5, None]}
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(path, tree)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a memdyn checkpoint"):
        load_checkpoint(path, tree)


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
