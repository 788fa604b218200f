"""`memdyn` command line: look at results already on disk without recomputing them.

    memdyn list results/                     every run under a folder, one line each
    memdyn show results/table2               a record's summary and headline numbers
    memdyn compare results/a results/b       config differences and numbers side by side
    memdyn replot results/fig3 --format pdf  the figure again from the stored numbers
    memdyn csv results/permuted              loss and accuracy curves as CSV files
    memdyn rerun results/fig3 --out again/   the same experiment with the record's config
    memdyn doctor                            versions, devices, XLA flags, then the canaries

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
