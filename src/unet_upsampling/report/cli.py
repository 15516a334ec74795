"""``python scripts/report.py [COMMAND] ...``: one command per kind of report.

- ``sweep DIR ...`` (the default: ``report.py DIR ...``): a study's report.md, results.csv and figures (build.py);
- ``summary DIR ... --out DIR``: one table across datasets (across.py);
- ``plateau SWEEP_N SWEEP_2N --out DIR``: the doubling rule per mode (plateau.py);
- ``protocol PROTOCOL_YAML ROOT ... --out DIR [--sd-only]``: the confirmatory study under its protocol
  (confirmatory.py);
- ``shard ROOT ... --out FILE.csv``: the per-run rows of a block of a study, to commit.

A DIR or ROOT is a sweep directory or the results.csv files a report wrote (a file, or a folder of them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet_upsampling.errors import UserError
from unet_upsampling.report.across import write_summary
from unet_upsampling.report.build import read_roots, write_csv, write_report
from unet_upsampling.report.compare import DEFAULT_MARGIN
from unet_upsampling.report.confirmatory import write_confirmatory
from unet_upsampling.report.plateau import DEFAULT_TOLERANCE, write_plateau

COMMANDS = ("sweep", "summary", "plateau", "protocol", "shard")


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a positive Dice difference such as 0.01, not {text}")
    return value


def roots(help_: str):
    return {"type": Path, "nargs": "+", "metavar": "ROOT", "help": help_}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="report.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="a study's report from its sweeps (the default command)")
    sweep.add_argument("roots", **roots("sweep directories or results.csv files of one study, merged"))
    sweep.add_argument("--out", type=Path, help="where to write (default: the first root)")
    sweep.add_argument("--reference", default="deconv", help="the mode paired differences are taken against")
    sweep.add_argument("--margin", type=positive, default=DEFAULT_MARGIN, help="the TOST's equivalence margin, Dice")
    sweep.add_argument(
        "--no-data-figures",
        action="store_true",
        help="leave out predictions.png, which shows the dataset's images (for data you may not redistribute)",
    )
    summary = commands.add_parser("summary", help="one table across datasets")
    summary.add_argument("roots", **roots("one study per dataset"))
    summary.add_argument("--out", type=Path, required=True)
    summary.add_argument("--reference", default="deconv")
    summary.add_argument("--margin", type=positive, default=DEFAULT_MARGIN)
    plateau = commands.add_parser("plateau", help="the doubling rule per mode: val/dice at N against 2N by seed")
    plateau.add_argument("sweep_n", type=Path)
    plateau.add_argument("sweep_2n", type=Path)
    plateau.add_argument("--out", type=Path, required=True)
    plateau.add_argument("--tolerance", type=positive, default=DEFAULT_TOLERANCE, help="plateau: 2N - N within ±this")
    plateau.add_argument("--modes", nargs="+", help="only these modes (default: every common mode)")
    protocol = commands.add_parser("protocol", help="the confirmatory study under its protocol")
    protocol.add_argument("protocol", type=Path, help="the protocol file, docs/study/protocol.yaml")
    protocol.add_argument("roots", **roots("sweep directories or results.csv shards (folders of them) of the study"))
    protocol.add_argument("--out", type=Path, required=True)
    protocol.add_argument("--sd-only", action="store_true", help="the blind SD re-estimate alone (sd.md), no effect")
    shard = commands.add_parser("shard", help="a block's per-run rows as one CSV file")
    shard.add_argument("roots", **roots("the block's sweep directories"))
    shard.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    return parser


def run(args: argparse.Namespace) -> dict[str, Path]:
    if args.command == "summary":
        return write_summary(args.roots, args.out, args.reference, args.margin)
    if args.command == "plateau":
        return write_plateau(args.sweep_n, args.sweep_2n, args.out, args.tolerance, args.modes)
    if args.command == "protocol":
        return write_confirmatory(args.protocol, read_roots(args.roots)[1], args.out, args.sd_only)
    if args.command == "shard":
        runs, _, left_out, _ = read_roots(args.roots)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        return {"shard": write_csv(runs, args.out, left_out)}
    return write_report(args.roots, args.out, args.reference, not args.no_data_figures, args.margin)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["sweep", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        paths = run(args)
    except (FileNotFoundError, UserError) as error:  # a wrong path or file: the message names it and the fix
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
