"""`ftkit report`: a self-contained HTML page of one or several runs (or collected datasets).

    ftkit report runs/grpo_arithmetic                     # -> runs/grpo_arithmetic/report.html
    ftkit report runs/a runs/b --out compare.html         # two runs overlaid, with their recipes' differences
"""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit report`."""
    rp = subparsers.add_parser(
        "report", help="an HTML page of runs: curves, accuracy by difficulty, episodes, warnings",
        description="Write one self-contained HTML page (no network needed to view it) for run folders or "
                    "collected dataset folders: ftkit report runs/grpo_arithmetic")
    rp.add_argument("runs", nargs="+", metavar="RUN", help="run folders (sft, dpo, rm, rl) or dataset folders")
    rp.add_argument("--out", default=None,
                    help="the HTML file to write (default: RUN/report.html for one run, ./report.html for several)")
    rp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ftkit.report import write_report

    path = write_report(args.runs, args.out)
    print(f"report written to {path}  (open it in a browser; no network needed)")
    return 0
