"""`memdyn` command line: look at results already on disk, and run a sweep as a job array.

    memdyn list results/                     every run under a folder, one line each
    memdyn show results/table2               a record's summary and headline numbers
    memdyn compare results/a results/b       config differences and numbers side by side
    memdyn replot results/fig3 --format pdf  the figure again from the stored numbers
    memdyn csv results/permuted              loss and accuracy curves as CSV files
    memdyn rerun results/fig3 --out again/   the same experiment with the record's config
    memdyn doctor                            versions, devices, XLA flags, then the canaries
    memdyn array split --chunks 4 runs/t2 decaynet table2 --seeds 20
                                             a sweep as a job array: split, launch, merge

A RECORD is a run's JSON file or the folder holding it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memdyn import MemdynError, doctor
from memlab import _results


def _list(args) -> None:
    records = _results.find_records(args.root)
    if not records:
        print(f"no records under {args.root}")
    for record in records:
        when = (record.get("started_utc") or "?")[:19]
        quick = " (quick)" if record.get("quick") else ""
        wall = record.get("wall_time_s")
        seconds = f"{wall:8.1f} s" if isinstance(wall, int | float) else "       ? s"
        name = f"{record.get('package', '?')} {record['experiment']}{quick}"
        print(f"{when}  {seconds}  {name:28s}  {record['path']}")


def _show(args) -> None:
    print(_results.summary(_results.read_record(args.record)))


def _compare(args) -> None:
    print(_results.compare(_results.read_record(args.a), _results.read_record(args.b)))


def _replot(args) -> None:
    from memlab._records import save_figure

    record = _results.read_record(args.record)
    figure = _results.replot(record)
    source = Path(record["path"])
    out = args.out or source.with_name(f"{source.stem}.replot.{args.format}")
    print(f"wrote {save_figure(figure, Path(out), format=args.format)}")


def _csv(args) -> None:
    from memdyn.internal import atomic_write_bytes

    record = _results.read_record(args.record)
    tables = _results.curves(record)
    if not tables:
        raise MemdynError(f"{record['path']}: the record holds no loss or accuracy curves")
    out = Path(args.out or Path(record["path"]).parent / "csv")
    for key, text in tables.items():
        path = atomic_write_bytes(out / f"{key.replace('/', '_')}.csv", text.encode())
        print(f"wrote {path}")


def _rerun(args) -> None:
    from memlab._experiment import execute

    record = _results.read_record(args.record)
    experiment = _results.experiment_of(record)
    config = _results.config_of(record, experiment)
    out = args.out or Path(record["path"]).parent
    for kind, path in execute(experiment, config, out).items():
        print(f"{experiment.name}: wrote {kind} {path}")


def _doctor(args) -> None:
    diagnosis = doctor()
    print(diagnosis)
    if not diagnosis.ok:
        raise SystemExit(1)


def _array_split(args) -> None:
    from memlab._cli import build_parser as experiment_parser
    from memlab._cli import config_from_args
    from memlab._job_array import describe, split_array
    from memlab._registry import experiments_of

    if len(args.experiment_command) < 2:
        raise MemdynError("name the experiment after the folder: PACKAGE EXPERIMENT [FLAGS]")
    package, *rest = args.experiment_command
    parser = experiment_parser(package, "", experiments_of(package))
    parsed = parser.parse_args(rest)
    try:
        config = config_from_args(parsed.experiment.config, parsed)
    except ValueError as err:
        parsed.subparser.error(str(err))
    split_array(parsed.experiment, config, args.chunks, args.dir)
    print(describe(args.dir))


def _array_launch(args) -> None:
    from memlab._job_array import LocalExecutor, SlurmExecutor, describe, launch

    if args.executor == "local":
        executor = LocalExecutor(parallel=args.parallel)
    else:
        executor = SlurmExecutor(
            options=tuple(args.sbatch), setup=tuple(args.setup), submit=args.submit
        )
    statuses = launch(args.dir, executor)
    if not statuses:
        print("every chunk is complete: nothing to launch")
    for index, status in statuses.items():
        if status is not None:
            print(f"chunk {index}: exit status {status}")
        else:
            print(f"chunk {index}: " + ("submitted" if args.submit else "in the script"))
    print(describe(args.dir))


def _array_status(args) -> None:
    from memlab._job_array import describe

    print(describe(args.dir))


def _array_merge(args) -> None:
    from memlab._job_array import merge_array

    for kind, path in merge_array(args.dir).items():
        print(f"merged: wrote {kind} {path}")


def _array_run(args) -> None:
    import os

    from memlab._job_array import run_chunk

    index = args.chunk if args.chunk is not None else os.environ.get("SLURM_ARRAY_TASK_ID")
    if index is None:
        raise MemdynError("give --chunk I (or run as a Slurm array task)")
    for kind, path in run_chunk(args.dir, int(index)).items():
        print(f"chunk {index}: wrote {kind} {path}")


ARRAY_HELP = """A sweep as a job array, in a folder DIR: `split` writes the plan (DIR/array.json,
the chunks' configs), `launch` runs every chunk without a complete record (all of them at first,
then only those that failed), `status` says which are done, `merge` joins the chunks' records into
DIR/NAME.json, the record one run of the whole sweep writes. Each chunk's record is
DIR/chunk_I/NAME.json, its log DIR/logs/chunk_I.log."""


def _add_array(sub) -> None:
    array = sub.add_parser(
        "array",
        help="a sweep as a job array: split it into chunks, launch them (here or on Slurm), merge",
        description=ARRAY_HELP,
    )
    verbs = array.add_subparsers(
        dest="verb", required=True, metavar="VERB", help="what to do with the array in DIR"
    )
    p = verbs.add_parser(
        "split",
        help="write the plan: the experiment's config split into chunks",
        description="Write DIR/array.json and DIR/configs/chunk_I.json: the experiment's config "
        "(built from the flags after PACKAGE EXPERIMENT, as that command builds it) split by its "
        "sweep, e.g. decaynet table2's seeds into consecutive blocks.",
    )
    p.add_argument("dir", type=Path, help="the array's folder")
    p.add_argument("--chunks", type=int, required=True, help="how many chunks (tasks); before DIR")
    p.add_argument(
        "experiment_command",
        nargs=argparse.REMAINDER,
        metavar="PACKAGE EXPERIMENT [FLAGS]",
        help="PACKAGE EXPERIMENT [FLAGS], e.g. decaynet table2 --seeds 20 --quick",
    )
    p.set_defaults(handler=_array_split)
    p = verbs.add_parser(
        "launch",
        help="run the chunks without a complete record (here, or as a Slurm array)",
        description="Launch every chunk of DIR that has no complete record: at first all of "
        "them, after a failure only the failed ones. `--executor local` runs them as "
        "subprocesses here and waits; `--executor slurm` writes DIR/array.sbatch (an "
        "`sbatch --array` job whose task I runs chunk I) and submits it with --submit.",
    )
    p.add_argument("dir", type=Path, help="the array's folder")
    p.add_argument(
        "--executor", choices=("local", "slurm"), default="local", help="where (default local)"
    )
    p.add_argument("--parallel", type=int, default=1, help="local: chunks at once (default 1)")
    p.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="slurm: an #SBATCH option, e.g. --sbatch=--gres=gpu:1 (repeatable)",
    )
    p.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="LINE",
        help="slurm: a shell line before the command, e.g. 'source .venv/bin/activate'",
    )
    p.add_argument("--submit", action="store_true", help="slurm: submit the script with sbatch")
    p.set_defaults(handler=_array_launch)
    p = verbs.add_parser("status", help="each chunk's state: done, failed (exit status), not run")
    p.add_argument("dir", type=Path, help="the array's folder")
    p.set_defaults(handler=_array_status)
    p = verbs.add_parser(
        "merge",
        help="join the chunks' records into DIR/NAME.json (every chunk must be complete)",
    )
    p.add_argument("dir", type=Path, help="the array's folder")
    p.set_defaults(handler=_array_merge)
    p = verbs.add_parser("run", help="run one chunk in this process (what each task runs)")
    p.add_argument("dir", type=Path, help="the array's folder")
    p.add_argument("--chunk", type=int, help="the chunk (default $SLURM_ARRAY_TASK_ID)")
    p.set_defaults(handler=_array_run)


def build_parser() -> argparse.ArgumentParser:
    from memdyn import __version__

    parser = argparse.ArgumentParser(
        prog="memdyn",
        description=__doc__.split("\n\n")[0],
        epilog="A RECORD is a run's JSON file (from curse or decaynet) or the folder holding it.",
    )
    parser.add_argument("--version", action="version", version=f"memdyn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", help="list every run under a results folder, oldest first")
    p.add_argument("root", nargs="?", default="results", help="folder to search (default results)")
    p.set_defaults(handler=_list)
    p = sub.add_parser("show", help="print a record's summary and headline numbers")
    p.add_argument("record", help="a record JSON file or its folder")
    p.set_defaults(handler=_show)
    p = sub.add_parser("compare", help="two records of one experiment: config diff and numbers")
    p.add_argument("a", help="the first record (column A)")
    p.add_argument("b", help="the second record (column B)")
    p.set_defaults(handler=_compare)
    p = sub.add_parser("replot", help="draw a record's figure again from its stored numbers")
    p.add_argument("record", help="a record JSON file or its folder")
    p.add_argument(
        "--format", choices=("png", "pdf", "svg"), default="png", help="file format (default png)"
    )
    p.add_argument("--out", type=Path, help="figure path (default <record>.replot.<format>)")
    p.set_defaults(handler=_replot)
    p = sub.add_parser("csv", help="write a record's loss and accuracy curves as CSV files")
    p.add_argument("record", help="a record JSON file or its folder")
    p.add_argument("--out", type=Path, help="folder for the CSV files (default <record dir>/csv)")
    p.set_defaults(handler=_csv)
    p = sub.add_parser("rerun", help="run a record's experiment again with exactly its config")
    p.add_argument("record", help="a record JSON file or its folder")
    p.add_argument("--out", type=Path, help="output folder (default: the record's folder)")
    p.set_defaults(handler=_rerun)
    p = sub.add_parser(
        "doctor",
        help="check this stack: versions, devices, XLA flags, CPU, then the canaries (seconds)",
        description="Print the environment (versions, devices, XLA flags, the CPU and its "
        "AVX-512 support, float64's default, memdyn's settings), then run the canaries: "
        "gradients of a scan LSTM mapped over members against each member's own, in float64 and "
        "float32, and against finite differences. Ends with 'ok', or names what is wrong and the "
        "fix (exit status 1). Paste its output into bug reports.",
    )
    p.set_defaults(handler=_doctor)
    _add_array(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except MemdynError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
