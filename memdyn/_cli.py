"""CLI plumbing shared by `curse` and `decaynet`: one subcommand per `Experiment`.

Every field of an experiment's config dataclass becomes a flag (`omega_min` -> `--omega-min`),
tuples take several values, booleans become `--flag/--no-flag`. `--quick` starts from
`config.quick()` instead of the defaults; flags given explicitly override either.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path

from memdyn._experiment import Experiment, execute


def _field_parser(annotation) -> tuple[type, str | None]:
    """Map a field's type annotation to (element type, nargs)."""
    origin = typing.get_origin(annotation)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return args[0], "+"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _field_parser(args[0])
    return annotation, None


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Add one flag per dataclass field; the default `None` means "not given"."""
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        kind, nargs = _field_parser(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else None
        if default is None and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        if kind is bool:
            action = argparse.BooleanOptionalAction
            parser.add_argument(flag, action=action, default=None, help=f"(default {default})")
        else:
            parser.add_argument(
                flag, type=kind, nargs=nargs, default=None, metavar=field.name.upper(),
                help=f"(default {default})",
            )  # fmt: skip


def config_from_args(config_cls: type, args: argparse.Namespace):
    """Build the config: `quick()` or defaults, overridden by the flags that were given."""
    base = config_cls().quick() if args.quick else config_cls()
    overrides = {}
    for field in dataclasses.fields(config_cls):
        value = getattr(args, field.name)
        if value is not None:
            overrides[field.name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(base, **overrides)


def build_parser(prog: str, description: str, experiments: Sequence[Experiment]):
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for experiment in experiments:
        p = sub.add_parser(experiment.name, help=experiment.help, description=experiment.help)
        out_help = f"output directory (default results/{experiment.name}/)"
        p.add_argument("--out", type=Path, default=None, help=out_help)
        p.add_argument("--quick", action="store_true", help="small sizes that finish in seconds")
        add_config_flags(p, experiment.config)
        p.set_defaults(experiment=experiment)
    return parser


def main(prog: str, description: str, experiments: Sequence[Experiment], argv=None) -> int:
    """Parse `argv`, run the chosen experiment, print where its files are."""
    parser = build_parser(prog, description, experiments)
    args = parser.parse_args(argv)
    experiment: Experiment = args.experiment
    try:
        config = config_from_args(experiment.config, args)
    except ValueError as err:
        parser.error(str(err))
    out_dir = args.out if args.out is not None else Path("results") / experiment.name
    paths = execute(experiment, config, out_dir)
    for kind, path in paths.items():
        print(f"{experiment.name}: wrote {kind} {path}", file=sys.stdout)
    return 0
