"""Integrity of what a run leaves on disk: checkpoints under SHA-256, the output directory proved
writable and locked before any computation, `fresh` starting over."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import memdyn._checkpoint as checkpoint_module
from memdyn import CheckpointError, OutputError, load_checkpoint, save_checkpoint
from memlab import Experiment, execute
from memlab._experiment import output_lock, prepare_output


@dataclasses.dataclass(frozen=True)
class _Config:
    steps: int = 1

    def quick(self):
        return self


def _never_run(config, out_dir):
    raise AssertionError("the computation started although the output cannot be written")


NEVER = Experiment("toy", "a toy", _Config, run=_never_run, plot=None)


def _saved(tmp_path):
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "n": jnp.asarray(3)}
    path = save_checkpoint(tmp_path / "ck.eqx", tree, {"step": 3, "note": "x"})
    return path, tree


def _regions(data: bytes) -> dict[str, int]:
    """A byte offset inside each part of the file: magic, digest, header length, header, leaves."""
    magic, digest = len(checkpoint_module.MAGIC), hashlib.sha256().digest_size
    header_size = int.from_bytes(data[magic + digest : magic + digest + 8], "big")
    header = magic + digest + 8
    return {
        "magic": 3,
        "digest": magic + 5,
        "header length": header - 1,
        "header": header + header_size // 2,
        "first leaf byte": header + header_size,
        "last byte": len(data) - 1,
    }


def test_the_file_holds_its_sha256_and_the_leaf_specs(tmp_path):
    path, _ = _saved(tmp_path)
    data = path.read_bytes()
    magic, digest = len(checkpoint_module.MAGIC), hashlib.sha256().digest_size
    assert data.startswith(b"memdyn-checkpoint-v2\n")
    body = data[magic + digest :]
    assert hashlib.sha256(body).digest() == data[magic : magic + digest]
    header = json.loads(body[8 : 8 + int.from_bytes(body[:8], "big")])
    assert header == {
        "meta": {"step": 3, "note": "x"},
        "leaves": [["['n']", [], "int32"], ["['w']", [2, 3], "float32"]],
    }


@pytest.mark.parametrize(
    "region", ["magic", "digest", "header length", "header", "first leaf byte", "last byte"]
)
def test_a_changed_byte_anywhere_is_detected_before_loading(tmp_path, region):
    path, tree = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    position = _regions(bytes(data))[region]
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    expected = "another version|not a memdyn" if region == "magic" else "SHA-256 does not match"
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} .*({expected}).*--fresh"):
        load_checkpoint(path, tree)


def test_an_older_format_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "old.eqx"
    path.write_bytes(b"memdyn-checkpoint-v1\n" + bytes(40))
    with pytest.raises(CheckpointError, match="another version.*delete it.*--fresh"):
        load_checkpoint(path, {"w": jnp.zeros(2)})


# Output directory --------------------------------------------------------------------------


def _writes_blocked_by_chmod(tmp_path) -> bool:
    """Whether a 0o500 directory really refuses new files here (it does not for root)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o500)
    try:
        (probe / "f").write_bytes(b"")
    except PermissionError:
        return True
    finally:
        probe.chmod(0o700)
    return False


@pytest.fixture
def unwritable(tmp_path):
    """An output path that cannot be written: a 0o500 directory where permissions bind, else (as
    root) a path below a regular file, so that the test never passes for the wrong reason."""
    if _writes_blocked_by_chmod(tmp_path):
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
    else:
        (tmp_path / "a-file").write_text("")
        yield tmp_path / "a-file" / "out"


def test_an_unwritable_output_directory_fails_before_the_computation(unwritable):
    with pytest.raises(OutputError, match=rf"--out {unwritable} cannot be created or written"):
        execute(NEVER, _Config(), unwritable)


@pytest.mark.parametrize(
    "out, message",
    [
        ("", "--out is empty"),
        ("  ", "--out is empty"),
        ("FILE", "is a file, not a directory"),
        ("FILE/sub", "cannot be created or written"),
    ],
)
def test_bad_output_paths_are_output_errors(tmp_path, out, message):
    (tmp_path / "FILE").write_text("")
    if out.strip():
        out = str(tmp_path / out)
    with pytest.raises(OutputError, match=message):
        execute(NEVER, _Config(), out)


def test_prepare_output_resolves_and_creates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = prepare_output("a/b/../c")
    assert path == tmp_path / "a" / "c" and path.is_dir()
    assert list(path.iterdir()) == []  # the write test leaves nothing behind


def test_a_second_run_on_the_same_output_fails_at_once_naming_the_holder(tmp_path):
    out = prepare_output(tmp_path / "out")
    with output_lock(out, ["decaynet", "permuted", "--out", str(out)]):
        lock_text = (out / ".lock").read_text()
        assert f"pid {os.getpid()} on " in lock_text and "decaynet permuted --out" in lock_text
        with pytest.raises(OutputError, match=rf"in use by another run \(pid {os.getpid()} on "):
            execute(NEVER, _Config(), out)
    ran = []
    exp = Experiment("toy", "t", _Config, run=lambda c, d: ran.append(d) or {}, plot=None)
    execute(exp, _Config(), out)
    assert ran == [out]  # released when the first holder let go


def test_the_lock_is_held_for_the_whole_run(tmp_path):
    def run(config, out_dir):
        with pytest.raises(OutputError, match="in use by another run"):
            with output_lock(out_dir, ["second"]):
                pass
        return {}

    execute(Experiment("toy", "t", _Config, run=run, plot=None), _Config(), tmp_path)


def test_the_lock_dies_with_its_process(tmp_path):
    out = prepare_output(tmp_path / "out")
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'pid %d elsewhere' % os.getpid())\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(out / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"pid {holder.pid} elsewhere"):
            execute(NEVER, _Config(), out)
    finally:
        holder.kill()
        holder.wait()
    execute(Experiment("toy", "t", _Config, run=lambda c, d: {}, plot=None), _Config(), out)


def test_fresh_removes_only_this_experiments_checkpoints(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("toy_a.eqx", "toy_a.eqx.json", "other_b.eqx"):
        (folder / name).write_text("")
    seen = []

    def run(config, out_dir):
        seen.append(sorted(p.name for p in (out_dir / "checkpoints").iterdir()))
        return {}

    exp = Experiment("toy", "t", _Config, run=run, plot=None)
    execute(exp, _Config(), tmp_path)
    execute(exp, _Config(), tmp_path, fresh=True)
    assert seen == [["other_b.eqx", "toy_a.eqx", "toy_a.eqx.json"], ["other_b.eqx"]]


def test_a_record_that_cannot_be_written_is_an_output_error(tmp_path):
    def run(config, out_dir):
        (out_dir / "toy.json").mkdir()  # the record's path is taken by a directory
        return {"x": np.arange(2.0)}

    exp = Experiment("toy", "t", _Config, run=run, plot=None)
    with pytest.raises(OutputError, match=rf"could not write {tmp_path / 'toy.json'}"):
        execute(exp, _Config(), tmp_path)


def test_config_fingerprint_ignores_exactly_the_excluded_fields():
    """Checkpoint names: runs differing only in an excluded field (where the data lives) share
    them; any other difference gives another name (found by mutation testing)."""
    from decaynet.experiments.table2 import Config
    from memdyn.internal import config_fingerprint

    base = Config().quick()
    moved = dataclasses.replace(base, data_dir="/elsewhere")
    other = dataclasses.replace(base, seeds=base.seeds + 1)
    assert config_fingerprint(base, exclude=("data_dir",)) == config_fingerprint(
        moved, exclude=("data_dir",)
    )
    assert config_fingerprint(base) != config_fingerprint(moved)
    assert config_fingerprint(base, exclude=("data_dir",)) != config_fingerprint(
        other, exclude=("data_dir",)
    )
