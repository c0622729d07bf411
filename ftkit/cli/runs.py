"""`ftkit runs`: the run folders in a folder as a table, newest first (or JSON for scripts).

    ftkit runs                      # runs/: name, kind, model, method, steps, held-out accuracy, wall time, date
    ftkit runs data --json          # any folder; collected datasets are listed too
"""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit runs`."""
    p = subparsers.add_parser("runs", help="list run folders: kind, model, steps, held-out accuracy, time",
                              description="List the run folders (and collected datasets) in FOLDER, newest first: "
                                          "ftkit runs runs/")
    p.add_argument("folder", nargs="?", default="runs", help="folder holding run folders (default: runs)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ftkit.run_list import print_runs

    print_runs(args.folder, as_json=args.json)
    return 0
