"""The command line: errors a user can act on print the subcommand's usage and one line, exit 2,
no traceback; Ctrl-C says how to resume and exits 130; bugs keep their traceback."""

from __future__ import annotations

import dataclasses
import json

import pytest

import curse.cli
import decaynet.cli
from memdyn import CheckpointError, ConfigError, DataError, OutputError, TrainingStopped
from memlab import Experiment, run_command_line


@dataclasses.dataclass(frozen=True)
class _Config:
    """Attributes:
    steps: how many steps.
    """

    steps: int = 1

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1; got {self.steps}")

    def quick(self):
        return self


def _cli(run, argv):
    experiment = Experiment("toy", "a toy", _Config, run, None)
    return run_command_line("prog", "a test", [experiment], argv)


def _raising(error):
    def run(config, out_dir):
        raise error

    return run


def _assert_one_error_line(err: str, line: str):
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: prog toy ")
    assert lines[-1] == line
    assert "Traceback" not in err
    assert sum(":" in x and "error" in x for x in lines) == 1


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("seeds must be >= 1; got 0"),
        DataError("mnist/train-images-idx3-ubyte.gz: SHA-256 does not match"),
        CheckpointError("checkpoint x.eqx is corrupted; rerun with --fresh"),
        TrainingStopped("train: non-finite loss at step 3 for seed index 0 (of 2)"),
        OutputError("--out /x cannot be created or written"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_user_errors_print_usage_and_one_line_and_exit_2(tmp_path, capsys, error):
    assert _cli(_raising(error), ["toy", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    _assert_one_error_line(captured.err, f"prog toy: error: {error}")
    assert captured.out == ""


def test_a_multi_line_message_still_prints_as_one_line(tmp_path, capsys):
    assert _cli(_raising(ConfigError("first\n  second")), ["toy", "--out", str(tmp_path)]) == 2
    _assert_one_error_line(capsys.readouterr().err, "prog toy: error: first second")


def test_a_bad_config_value_goes_through_the_subcommands_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli(_raising(AssertionError("never run")), ["toy", "--steps", "0"])
    assert exit_info.value.code == 2
    _assert_one_error_line(capsys.readouterr().err, "prog toy: error: steps must be >= 1; got 0")


def test_an_output_path_that_is_a_file_fails_before_the_run(tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    code = _cli(_raising(AssertionError("never run")), ["toy", "--out", str(tmp_path / "taken")])
    assert code == 2
    _assert_one_error_line(
        capsys.readouterr().err,
        f"prog toy: error: --out {tmp_path / 'taken'} is a file, not a directory: "
        "choose another --out",
    )


def test_interrupt_with_nothing_saved(tmp_path, capsys):
    assert _cli(_raising(KeyboardInterrupt()), ["toy", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted; nothing was saved\n"


@pytest.mark.parametrize("fresh", [False, True])
def test_interrupt_after_a_checkpoint_says_how_to_resume(tmp_path, capsys, fresh):
    def run(config, out_dir):
        (out_dir / "checkpoints").mkdir()
        (out_dir / "checkpoints" / "toy_run.eqx").write_bytes(b"")
        raise KeyboardInterrupt

    out = tmp_path / "out"
    argv = ["toy", "--out", str(out)] + (["--fresh"] if fresh else [])
    assert _cli(run, argv) == 130
    rerun = "rerun without --fresh" if fresh else "rerun the same command"
    assert capsys.readouterr().err == f"interrupted; {rerun} to resume from {out}/checkpoints\n"


def test_a_bug_keeps_its_traceback(tmp_path):
    with pytest.raises(ZeroDivisionError):
        _cli(_raising(ZeroDivisionError("a bug")), ["toy", "--out", str(tmp_path)])


def test_success_prints_the_files_and_records_the_command_line(tmp_path, capsys):
    argv = ["toy", "--out", str(tmp_path), "--steps", "2"]
    assert _cli(lambda config, out_dir: {"steps": config.steps}, argv) == 0
    assert capsys.readouterr().out == f"toy: wrote json {tmp_path / 'toy.json'}\n"
    record = json.loads((tmp_path / "toy.json").read_text())
    assert record["command_line"] == ["prog", *argv]
    assert record["result"] == {"steps": 2}


def test_help_explains_fresh(capsys):
    with pytest.raises(SystemExit):
        _cli(_raising(AssertionError("never run")), ["toy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--fresh start over: delete this experiment's checkpoints in OUT/checkpoints/" in text


@pytest.mark.parametrize(
    "main, command", [(decaynet.cli.main, "permuted"), (curse.cli.main, "fig2")]
)
def test_the_real_commands_refuse_an_unusable_out_before_computing(tmp_path, capsys, main, command):
    (tmp_path / "f").write_text("")
    out = tmp_path / "f" / "out"
    prog = main.__module__.split(".")[0]
    assert main([command, "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"usage: {prog} {command} ")
    assert lines[-1].startswith(f"{prog} {command}: error: --out {out} cannot be created")
    assert "Traceback" not in err


def test_a_bad_nested_value_names_its_dotted_path_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        decaynet.cli.main(["table2", "--train.learning-rate", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = "decaynet table2: error: Config.train.learning_rate must be > 0; got 0.0"
    assert err.strip().splitlines()[-1] == line
