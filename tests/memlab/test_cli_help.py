"""Every flag of every subcommand explains itself; `--version` answers."""

import argparse

import pytest

import memdyn
from curse.cli import DESCRIPTION as CURSE
from curse.experiments import EXPERIMENTS as CURSE_EXPERIMENTS
from decaynet.cli import DESCRIPTION as DECAYNET
from decaynet.experiments import EXPERIMENTS as DECAYNET_EXPERIMENTS
from memdyn.internal import flat_fields
from memlab._cli import build_parser
from memlab.cli import build_parser as build_results_parser

PARSERS = {
    "curse": lambda: build_parser("curse", CURSE, CURSE_EXPERIMENTS),
    "decaynet": lambda: build_parser("decaynet", DECAYNET, DECAYNET_EXPERIMENTS),
    "memdyn": build_results_parser,
}


def _subcommands(parser: argparse.ArgumentParser):
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices.items()


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_every_flag_of_every_subcommand_has_help(program):
    parser = PARSERS[program]()
    checked = 0
    for name, subparser in _subcommands(parser):
        for action in subparser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = (action.help or "").strip()
            # more than a bare default: a meaning in words
            words = text.split("(default")[0].split()
            assert len(words) >= 2, f"{program} {name} {action.option_strings or action.dest}"
            checked += 1
        assert subparser.format_help()  # every help text formats (no stray %)
    assert checked >= 10


@pytest.mark.parametrize(
    "experiment",
    CURSE_EXPERIMENTS + DECAYNET_EXPERIMENTS,
    ids=[
        f"{e.run.__module__.split('.')[0]}-{e.name}"
        for e in CURSE_EXPERIMENTS + DECAYNET_EXPERIMENTS
    ],
)
def test_flag_help_is_the_field_documentation(experiment):
    parser = build_parser("x", "x", [experiment])
    ((_, subparser),) = _subcommands(parser)
    helps = {a.dest: a.help for a in subparser._actions}
    for field in flat_fields(experiment.config):
        assert helps[field.name].startswith(field.doc.split()[0]), field.name
        rule = f" ({field.rule()})" if field.rule() else ""
        assert f"{rule} (default" in helps[field.name], field.name


def test_choices_and_zero_meaning_are_explained():
    parser = PARSERS["decaynet"]()
    helps = {name: {a.dest: a.help for a in sub._actions} for name, sub in _subcommands(parser)}
    assert "paper" in helps["table2"]["init"] and "pytorch" in helps["table2"]["init"]
    assert "0 means the whole training set" in helps["table2"]["train_subset"]
    assert "0 means never" in helps["table2"]["train.checkpoint_every"]
    assert "at least 1 here" in helps["permuted"]["train.checkpoint_every"]


def test_nested_parts_are_flags_by_dotted_path_in_a_group_each(capsys):
    """A part's fields are `--part.field` flags (dashes within a name), listed under the part's
    name with its documentation, each with its own doc, rule and the default the experiment
    gives it (Table 2's batch of 64, not `TrainConfig`'s 100)."""
    parser = PARSERS["decaynet"]()
    with pytest.raises(SystemExit):
        parser.parse_args(["table2", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "train: the optimiser and the schedule, the paper's by default" in text
    assert "--train.batch-size INT images per Adam step" in text
    assert "(>= 1) (default 64)" in text
    assert "--train.learning-rate FLOAT Adam step size (paper: 0.01). (> 0) (default 0.01)" in text
    parser = PARSERS["curse"]()
    with pytest.raises(SystemExit):
        parser.parse_args(["fig1", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for part in ("exponential_sum: panel (a)", "airy: panel (b)", "lorenz96: panel (c)"):
        assert part in text
    assert "--lorenz96.forcing-scale FLOAT standard deviation" in text
    assert "--airy.t0s FLOAT [FLOAT ...]" in text
    assert "(at least 1 entry, each >= 0) (default 0.0 4.0 8.0 12.0)" in text


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_version(program, capsys):
    with pytest.raises(SystemExit) as exit_:
        PARSERS[program]().parse_args(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"{program} {memdyn.__version__}".replace(
        "curse ", "curse (memdyn) "
    ).replace("decaynet ", "decaynet (memdyn) ")
