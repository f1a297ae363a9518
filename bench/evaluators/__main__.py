"""``python -m bench.evaluators``: train an in-domain evaluator, or rewrite its published validation table.

Commands:
    ``train NAME [--out FILE] [--epochs N] [--seed S]`` trains, validates and saves ``NAME`` (default file
    ``bench/evaluators/weights/NAME.pt``), prints its sha256 and validation figures, and, when written to the
    default file, rewrites ``leaderboards/evaluators.{csv,md}``.
    ``report`` rewrites ``leaderboards/evaluators.{csv,md}`` from the shipped weights files.

Exit codes: 0 done; 2 bad input or missing data (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.evaluators.train import SPECS, WEIGHTS_DIR, train_evaluator, write_leaderboard


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluators", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train, validate and save one evaluator")
    train.add_argument("name", choices=list(SPECS))
    train.add_argument("--out", type=Path, default=None, help="weights file (default: the shipped one)")
    train.add_argument("--epochs", type=int, default=None, help="epochs (default: the evaluator's)")
    train.add_argument("--seed", type=int, default=0)
    sub.add_parser("report", help="rewrite leaderboards/evaluators.{csv,md} from the shipped weights files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        rows = write_leaderboard()
        print(f"wrote leaderboards/evaluators.csv and .md ({len(rows)} rows)")
        return 0
    from datamodules import DataUnavailableError

    if args.epochs is not None and args.epochs < 0:
        print("error: --epochs must be >= 0", file=sys.stderr)
        return 2
    try:
        result = train_evaluator(args.name, out=args.out, epochs=args.epochs, seed=args.seed)
    except DataUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if Path(result["path"]).resolve() == (WEIGHTS_DIR / f"{args.name}.pt").resolve():
        write_leaderboard(new_wall_times={result["sha256"]: result["wall_s"]})
        print("updated leaderboards/evaluators.csv and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
