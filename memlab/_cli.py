"""CLI plumbing shared by `curse` and `decaynet`: one subcommand per `Experiment`.

Every field of an experiment's config dataclass becomes a flag (`omega_min` -> `--omega-min`),
a nested part's fields flags under its name (`train.learning_rate` -> `--train.learning-rate`,
listed in a group of their own); tuples take several values, booleans become `--flag/--no-flag`.
The help of each flag is its field's documentation, its rule and its default, all read from the
one description of the config (`memdyn.internal.flat_fields`). `--quick` starts from
`config.quick()` instead of the defaults; flags given explicitly override either. `--out` names
the output directory, `--fresh` discards its checkpoints.

Errors a user can act on (`MemdynError`: config, data, output, checkpoint, training stopped)
print the subcommand's usage and one line `PROG COMMAND: error: MESSAGE`, exit status 2, no
traceback; Ctrl-C prints one line saying how to resume and exits 130. Any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from memdyn import MemdynError
from memdyn.internal import (
    ConfigField,
    close_progress_bars,
    config_fields,
    flat_fields,
    replace_fields,
)
from memlab._experiment import CHECKPOINTS, Experiment, checkpoint_files, execute, is_quick
from memlab._runtime import keep_freed_memory

EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130


def _help_text(field: ConfigField) -> str:
    """A flag's help: the field's documentation, its constraints, then its default (`%` escaped
    for argparse)."""
    default = None if field.default is dataclasses.MISSING else field.default
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    if shown == "":
        shown = "empty"
    rule = field.rule()
    rule = f" ({rule})" if rule else ""
    return f"{field.doc or '(undocumented)'}{rule} (default {shown})".replace("%", "%%")


def flag_name(path: str) -> str:
    """The flag of a field's (dotted) path: `train.learning_rate` -> `--train.learning-rate`."""
    return "--" + path.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Add one flag per value of the config (`memdyn.internal.flat_fields`: a nested part's
    fields by dotted path, in a group per part), its help text from the field's documentation,
    constraints and default; the flag's default `None` means "not given"."""
    groups = {
        None: parser.add_argument_group(
            "configuration", "one flag per field of the experiment's config; --quick changes the "
            "starting values, and flags given explicitly override either"
        )
    }  # fmt: skip
    for part in config_fields(config_cls):
        if part.nested:
            flags = f"{flag_name(part.name)}.*"
            text = f"{part.doc} One flag per field of {part.kind.__name__}, {flags}"
            groups[part.name] = parser.add_argument_group(part.name, text.replace("%", "%%"))
    for field in flat_fields(config_cls):
        head, dot, _ = field.name.partition(".")
        group = groups[head if dot else None]
        options = {"dest": field.name, "default": None, "help": _help_text(field)}
        if field.kind is bool and not field.sequence:
            group.add_argument(
                flag_name(field.name), action=argparse.BooleanOptionalAction, **options
            )
        else:
            name = field.name.rpartition(".")[2].upper()
            metavar = {int: "INT", float: "FLOAT", str: "TEXT"}.get(field.kind, name)
            nargs = "+" if field.sequence else None
            group.add_argument(
                flag_name(field.name), type=field.kind, nargs=nargs, metavar=metavar, **options
            )


def config_from_args(config_cls: type, args: argparse.Namespace):
    """Build the config: `quick()` or defaults, overridden by the flags that were given (a
    nested part's through `memdyn.internal.replace_fields`, so a bad value names its path)."""
    base = config_cls().quick() if args.quick else config_cls()
    overrides = {}
    for field in flat_fields(config_cls):
        value = getattr(args, field.name)
        if value is not None:
            overrides[field.name] = tuple(value) if isinstance(value, list) else value
    return replace_fields(base, overrides)


EPILOG = (
    "Results go to OUT/NAME.json (config, environment, numbers) and OUT/NAME.png; look at them "
    "again with `memdyn show|replot|compare OUT`. Errors a user can act on print one line and "
    "exit 2; Ctrl-C exits 130 and says how to resume."
)


def build_parser(prog: str, description: str, experiments: Sequence[Experiment]):
    """The `prog` parser: one subcommand per experiment, one flag per config field."""
    from memdyn import __version__

    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"{prog} (memdyn) {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for experiment in experiments:
        doc = sys.modules[experiment.run.__module__].__doc__ or ""
        summary = doc.strip().split("\n\n")[0].replace("%", "%%")
        p = sub.add_parser(
            experiment.name,
            help=experiment.help,
            description=summary or experiment.help,
            epilog=EPILOG,
        )
        out_help = (
            f"output directory (default results/{experiment.name}/); rerunning with the same "
            "--out resumes from its checkpoints"
        )
        p.add_argument("--out", default=None, help=out_help)
        p.add_argument(
            "--fresh",
            action="store_true",
            help=f"start over: delete this experiment's checkpoints in OUT/{CHECKPOINTS}/ first",
        )
        p.add_argument(
            "--quick",
            action="store_true",
            help="start from the config's quick() values: small sizes that finish in seconds "
            "(for trying things and tests; the figure is marked as a quick run)",
        )
        p.add_argument(
            "--vector",
            choices=("pdf", "svg"),
            default=None,
            help="also write the figure in this vector format, beside the PNG",
        )
        add_config_flags(p, experiment.config)
        p.set_defaults(experiment=experiment, subparser=p)
    return parser


def _interrupted(experiment: Experiment, out_dir: str, fresh: bool) -> str:
    """The line Ctrl-C prints: how to resume, or that nothing was kept."""
    folder = Path(out_dir) / CHECKPOINTS
    if not checkpoint_files(experiment, Path(out_dir)):
        return "interrupted; nothing was saved"
    rerun = "rerun without --fresh" if fresh else "rerun the same command"
    return f"interrupted; {rerun} to resume from {folder}"


def main(prog: str, description: str, experiments: Sequence[Experiment], argv=None) -> int:
    """Parse `argv` (default `sys.argv[1:]`), run the chosen experiment, print where its files
    are. Returns the exit status: 0, 2 for an error a user can act on, 130 when interrupted."""
    keep_freed_memory()  # XLA's CPU buffers reused, not faulted in afresh (memlab._runtime)
    parser = build_parser(prog, description, experiments)
    args = parser.parse_args(argv)
    experiment: Experiment = args.experiment
    subparser: argparse.ArgumentParser = args.subparser
    try:
        config = config_from_args(experiment.config, args)
    except ValueError as err:
        subparser.error(str(err))
    out_dir = args.out if args.out is not None else str(Path("results") / experiment.name)
    command_line = sys.argv if argv is None else [prog, *argv]
    try:
        paths = execute(
            experiment,
            config,
            out_dir,
            fresh=args.fresh,
            command_line=command_line,
            quick=is_quick(config) or (args.quick and config.quick() != experiment.config()),
            vector=args.vector,
        )
    except MemdynError as err:
        close_progress_bars()
        subparser.print_usage(sys.stderr)
        message = " ".join(str(err).split())  # one line, whatever the message holds
        print(f"{subparser.prog}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        close_progress_bars()
        print(_interrupted(experiment, out_dir, args.fresh), file=sys.stderr)
        return EXIT_INTERRUPTED
    for kind, path in paths.items():
        print(f"{experiment.name}: wrote {kind} {path}", file=sys.stdout)
    return 0
