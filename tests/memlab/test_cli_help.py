"""Every flag of every subcommand explains itself; `--version` answers."""

import argparse
import dataclasses

import pytest

import memdyn
from curse.cli import DESCRIPTION as CURSE
from curse.experiments import EXPERIMENTS as CURSE_EXPERIMENTS
from decaynet.cli import DESCRIPTION as DECAYNET
from decaynet.experiments import EXPERIMENTS as DECAYNET_EXPERIMENTS
from memlab._cli import build_parser
from memlab._help import field_docs
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
    docs = field_docs(experiment.config)
    for field in dataclasses.fields(experiment.config):
        assert docs[field.name].split()[0] in helps[field.name], field.name
        assert "(default" in helps[field.name]


def test_choices_and_zero_meaning_are_explained():
    parser = PARSERS["decaynet"]()
    helps = {name: {a.dest: a.help for a in sub._actions} for name, sub in _subcommands(parser)}
    assert "paper" in helps["table2"]["init"] and "pytorch" in helps["table2"]["init"]
    assert "0 means the whole training set" in helps["table2"]["train_subset"]
    assert "0 means never" in helps["table2"]["checkpoint_every"]
    assert "≥ 1" in helps["permuted"]["checkpoint_every"]


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_version(program, capsys):
    with pytest.raises(SystemExit) as exit_:
        PARSERS[program]().parse_args(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"{program} {memdyn.__version__}".replace(
        "curse ", "curse (memdyn) "
    ).replace("decaynet ", "decaynet (memdyn) ")
