"""The `ftkit collect` commands: build instruction, reward and preference datasets, each with its card.

    ftkit collect demos --gym arithmetic --n 1000 --out data/arith_demos
    ftkit collect rollouts --gym arithmetic --model runs/gpt2_math/model --n 500 --k 8 --out data/arith_rollouts
    ftkit collect filter data/arith_rollouts --min-reward 1 --out data/arith_rft       # rejection sampling
    ftkit collect pairs data/arith_rollouts --out data/arith_pairs                     # for ftkit dpo / rm
    ftkit collect import questions.csv --prompt-column q --completion-column a --out data/imported
    ftkit collect label data/arith_pairs --out data/arith_human                        # a person judges
    ftkit collect dedup | decontaminate | split IN --out OUT                           # transforms

Every command writes a folder (`data_tools.store`): Parquet splits, a README.md card that records the
exact command and a content hash, and `collect.json`. Run a command again and it finds its finished
folder and does nothing; `rollouts` and `label` save as they go, so a killed run continues where it
stopped. Gym arguments are `key=value` words typed as YAML (`digits=2 ops=[+,-]`).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
from pathlib import Path
from typing import Any

from ftkit.errors import DataError

RECORDED_FLAGS_SKIPPED = ("--overwrite",)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit collect ...` to the `ftkit` command's subparsers."""
    collect = subparsers.add_parser("collect", help="build instruction, reward and preference datasets",
                                    description="Collect data: ftkit collect demos|rollouts|filter|pairs|import|"
                                                "label|dedup|decontaminate|split ...")
    commands = collect.add_subparsers(dest="collect_command", required=True, parser_class=type(collect))
    _add_gym_commands(commands)
    _add_dataset_commands(commands)
    _add_transform_commands(commands)


def _command(commands: argparse._SubParsersAction, name: str, help_text: str, example: str, func,
             source: str | None = None) -> argparse.ArgumentParser:
    """One `ftkit collect NAME` subcommand with the flags every one of them has (--out, --overwrite, --jsonl)."""
    p = commands.add_parser(name, help=help_text, description=f"{help_text}: {example}")
    if source:
        p.add_argument("source", help=source)
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    p.add_argument("--jsonl", action="store_true", help="also write each split as JSONL")
    p.set_defaults(func=func)
    return p


def _add_gym_commands(commands: argparse._SubParsersAction) -> None:
    """demos and rollouts: datasets played from a gym."""
    p = _command(commands, "demos", "demonstrations from a gym's oracle",
                 "ftkit collect demos --gym arithmetic --n 1000 --out data/arith_demos", _cmd_demos)
    _gym_args(p)
    p.add_argument("--n", type=int, required=True, help="number of problems")
    p.add_argument("--max-turns", type=int, default=None, help="multi-turn gyms: cut episodes after this many turns")

    p = _command(commands, "rollouts", "a model plays each problem K times: a reward dataset",
                 "ftkit collect rollouts --gym arithmetic --model runs/gpt2_math/model --n 500 --k 8 "
                 "--out data/arith_rollouts", _cmd_rollouts)
    _gym_args(p)
    p.add_argument("--model", required=True, help="model folder (or LoRA adapter folder)")
    p.add_argument("--n", type=int, required=True, help="number of problems")
    p.add_argument("--k", type=int, required=True, help="episodes per problem")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=256, help="prompts per generate() call")
    p.add_argument("--chat", action="store_true", help="show the gym's text as chat messages")
    p.add_argument("--engine", default="auto", choices=("auto", "hf", "vllm"),
                   help="generation engine: auto picks vLLM when installed and a GPU is present")
    p.add_argument("--max-turns", type=int, default=None)


def _add_dataset_commands(commands: argparse._SubParsersAction) -> None:
    """filter, pairs, import and label: instruction and preference datasets from rollouts, files and people."""
    p = _command(commands, "filter", "rejection sampling: keep rollouts with reward >= R as an instruction dataset",
                 "ftkit collect filter data/arith_rollouts --min-reward 1 --out data/arith_rft", _cmd_filter,
                 source="rollouts folder")
    p.add_argument("--min-reward", type=float, required=True)
    p.add_argument("--max-per-prompt", type=int, default=None, help="distinct completions kept per problem")

    p = _command(commands, "pairs", "preference pairs (prompt, chosen, rejected) from rollout groups",
                 "ftkit collect pairs data/arith_rollouts --out data/arith_pairs", _cmd_pairs, source="rollouts folder")
    p.add_argument("--min-margin", type=float, default=1e-9, help="least reward gap between chosen and rejected")
    p.add_argument("--max-pairs-per-prompt", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)

    p = _command(commands, "import", "a JSONL, CSV, Parquet file or datasets folder mapped to prompt/completion or "
                 "messages", "ftkit collect import qa.csv --prompt-column question --completion-column answer "
                 "--out data/qa", _cmd_import, source="input file or folder")
    p.add_argument("--prompt-column")
    p.add_argument("--completion-column")
    p.add_argument("--messages-column")
    p.add_argument("--prompt-template", help='Jinja template over the columns, e.g. "Q: {{ question }}\\nA:"')
    p.add_argument("--completion-template", help='Jinja template, e.g. " {{ answer }}"')

    p = _command(commands, "label", "judge pairs of completions in the terminal, written as preference pairs",
                 "ftkit collect label data/arith_pairs --out data/arith_human", _cmd_label,
                 source="pairs or rollouts folder")
    p.add_argument("--max-per-prompt", type=int, default=2, help="rollouts: pairs shown per prompt")
    p.add_argument("--limit", type=int, default=None, help="write the dataset after this many judgements")
    p.add_argument("--seed", type=int, default=0)


def _add_transform_commands(commands: argparse._SubParsersAction) -> None:
    """dedup, decontaminate, split and filter-rows: a dataset in, a cleaner or split one out."""
    p = _command(commands, "dedup", "remove exact and near duplicates (MinHash)",
                 "ftkit collect dedup data/x --near 0.8 --out data/x_dedup", _cmd_dedup,
                 source="dataset folder or file")
    p.add_argument("--near", type=float, default=None, help="also drop rows this similar (Jaccard, 0-1)")
    p.add_argument("--fields", nargs="+", default=None, help="columns compared (default: all text)")

    p = _command(commands, "decontaminate", "remove rows overlapping an evaluation set (n-gram overlap)",
                 "ftkit collect decontaminate data/x --against-gym arithmetic --out data/x_clean",
                 _cmd_decontaminate, source="dataset folder or file")
    p.add_argument("--against", help="evaluation file or folder (its prompt or text column)")
    p.add_argument("--against-gym", help="or a gym's held-out problems, as ftkit eval draws them")
    p.add_argument("--against-args", nargs="*", default=[], help="that gym's arguments, key=value")
    p.add_argument("--against-n", type=int, default=500)
    p.add_argument("--against-seed", type=int, default=1)
    p.add_argument("--ngram", type=int, default=8)

    p = _command(commands, "split", "train/validation split by problem", "ftkit collect split data/x --validation 0.1 "
                 "--out data/x_split", _cmd_split, source="dataset folder or file")
    p.add_argument("--validation", type=float, required=True, help="share of problems held out")
    p.add_argument("--seed", type=int, default=0)

    p = _command(commands, "filter-rows", "keep rows within reward and length bounds",
                 "ftkit collect filter-rows data/x --max-chars 200 --out data/x_short", _cmd_filter_rows,
                 source="dataset folder or file")
    p.add_argument("--min-reward", type=float)
    p.add_argument("--max-reward", type=float)
    p.add_argument("--min-chars", type=int)
    p.add_argument("--max-chars", type=int)


def _gym_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gym", required=True, help="gym id or short name, e.g. arithmetic")
    p.add_argument("gym_args", nargs="*", help="gym arguments as key=value, e.g. digits=2 answer_format=reversed")
    p.add_argument("--seed", type=int, default=0, help="problem i is reset with item_seed(seed, i)")


# -- shared steps -------------------------------------------------------------------------------------


def recorded_command(args: argparse.Namespace) -> str:
    """The command as typed, minus flags that do not change the data: what the card tells you to run."""
    words = [w for w in getattr(args, "argv", []) if w not in RECORDED_FLAGS_SKIPPED]
    return shlex.join(["ftkit", *words])


def _start(args: argparse.Namespace, *inputs: str) -> tuple[str, dict[str, str]] | None:
    """Check --out; None means the same command already wrote it (say so and stop)."""
    from data_tools.store import check_output, input_hashes

    for path in inputs:
        if not Path(path).exists():
            raise DataError(f"no such file or folder: {path}")
    command, hashes = recorded_command(args), input_hashes(*inputs)
    if check_output(args.out, command, overwrite=args.overwrite, inputs=hashes):
        print(f"{args.out} is already complete (made by this command from the same inputs); nothing to do")
        return None
    return command, hashes


def _write(args: argparse.Namespace, rows_or_splits, kind: str, command: str, inputs: dict[str, str],
           report: dict[str, Any] | None = None, **provenance: Any) -> int:
    from data_tools.store import write_dataset

    splits = rows_or_splits if isinstance(rows_or_splits, dict) else {"train": rows_or_splits}
    meta = {"kind": kind, "name": Path(args.out).name, "command": command, "inputs": inputs, **provenance}
    if report is not None:
        meta["report"] = {k: v for k, v in report.items() if k != "examples"}
    manifest = write_dataset(args.out, splits, meta, jsonl=args.jsonl)
    counts = ", ".join(f"{n:,} {s}" for s, n in manifest["counts"].items())
    if report is not None and "removed" in report:
        print(f"removed {report['removed']:,} of {report['total']:,} rows ({report.get('method', '')})")
        for example in report.get("examples", [])[:3]:
            print(f"  e.g. {_short(example)}")
    print(f"wrote {args.out}: {counts} (card: {Path(args.out) / 'README.md'})")
    return 0


def _short(row: dict[str, Any]) -> str:
    text = repr({k: v for k, v in row.items() if k in ("prompt", "completion", "chosen", "messages", "text")})
    return text if len(text) <= 120 else text[:117] + "..."


def _gym_spec(args: argparse.Namespace, chat: bool = False):
    """The gym of --gym, its key=value arguments, and --max-turns, as a `GymSpec`."""
    from ftkit.config import parse_key_values
    from gyms.spec import GymSpec

    return GymSpec(args.gym, parse_key_values(args.gym_args), chat=chat, max_turns=args.max_turns)


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise DataError(f"{flag} must be at least 1, got {value}")
    return value


# -- commands -----------------------------------------------------------------------------------------


def _cmd_demos(args: argparse.Namespace) -> int:
    from data_tools.collect import demos, gym_version

    started = _start(args)
    if started is None:
        return 0
    spec = _gym_spec(args)
    rows = demos(spec, _positive(args.n, "--n"), args.seed)
    return _write(args, rows, "demos", *started, gym=gym_version(spec), gym_kwargs=spec.kwargs, seed=args.seed)


def _cmd_rollouts(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from data_tools.collect import gym_version
    from ftkit.collect import RolloutOptions, rollouts
    from ftkit.progress import StepProgress
    from ftkit.vllm_engine import resolve_engine

    started = _start(args)
    if started is None:
        return 0
    if not Path(args.model).exists():
        raise DataError(f"no such model folder: {args.model}")
    resolve_engine(args.engine)
    spec = _gym_spec(args, chat=args.chat)
    options = RolloutOptions(n=_positive(args.n, "--n"), k=_positive(args.k, "--k"), seed=args.seed,
                             temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                             batch_size=args.batch_size, engine=args.engine)
    progress, progress_command = _claim_progress(args.out, started[0])
    console = Console(stderr=True, highlight=False)
    t0 = time.perf_counter()
    # A bar on a terminal; in a log, a line every FTKIT_PROGRESS_SECONDS rather than one per chunk.
    with StepProgress(console, "collect", total=options.n, line="  {done}/{total} problems played  {stats}") as bar:
        rows = rollouts(spec, args.model, options, progress_file=progress,
                        on_chunk=lambda done, n: bar.update(done, f"{time.perf_counter() - t0:.0f}s"))
    seconds = time.perf_counter() - t0
    solved = sum(bool(r["solved"]) for r in rows) / len(rows)
    console.print(f"{len(rows):,} trajectories in {seconds:.1f}s ({len(rows) / seconds:.1f}/s this run); "
                  f"solved {solved:.1%}")
    code = _write(args, rows, "rollouts", *started, gym=gym_version(spec), gym_kwargs=spec.kwargs, seed=args.seed,
                  model=args.model, k=args.k, temperature=args.temperature, top_p=args.top_p,
                  max_new_tokens=args.max_new_tokens, solved_rate=solved)
    progress.unlink(missing_ok=True)
    progress_command.unlink(missing_ok=True)
    return code


def _claim_progress(out: str, command: str) -> tuple[Path, Path]:
    """The rollouts' progress file beside --out, and the file naming the command it belongs to.

    A progress file left by another command is refused: resuming from it would mix two datasets.
    """
    progress = Path(f"{out}.partial.jsonl")
    progress_command = Path(f"{out}.partial.command")
    if progress.exists() and progress_command.exists() and progress_command.read_text() != command:
        raise DataError(f"{progress} holds rollouts of another command ({progress_command.read_text()}); "
                        "delete it or use another --out")
    progress_command.parent.mkdir(parents=True, exist_ok=True)
    progress_command.write_text(command)
    return progress, progress_command


def _rollout_rows(source: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from data_tools.store import is_collected, read_manifest, read_rows

    rows = read_rows(source)
    if not rows or "reward" not in rows[0]:
        raise DataError(f"{source} has no reward column: give it a folder from `ftkit collect rollouts`")
    manifest = read_manifest(source) if is_collected(source) else {}
    return rows, {k: manifest[k] for k in ("gym", "gym_kwargs", "model", "seed") if k in manifest}


def _cmd_filter(args: argparse.Namespace) -> int:
    from data_tools.collect import filter_rollouts

    started = _start(args, args.source)
    if started is None:
        return 0
    rows, origin = _rollout_rows(args.source)
    kept = filter_rollouts(rows, min_reward=args.min_reward, max_per_prompt=args.max_per_prompt)
    report = {"total": len(rows), "removed": len(rows) - len(kept), "method": f"reward >= {args.min_reward}, "
              "one copy of each distinct completion per problem"}
    return _write(args, kept, "filter", *started, report=report, min_reward=args.min_reward, **origin)


def _cmd_pairs(args: argparse.Namespace) -> int:
    from data_tools.collect import preference_pairs

    started = _start(args, args.source)
    if started is None:
        return 0
    rows, origin = _rollout_rows(args.source)
    pairs = preference_pairs(rows, min_margin=args.min_margin, max_pairs_per_prompt=args.max_pairs_per_prompt,
                             seed=args.seed)
    if not pairs:
        raise DataError(f"no problem in {args.source} has completions with different rewards: nothing to pair "
                        "(sample more per problem with --k, or at a higher --temperature)")
    return _write(args, pairs, "pairs", *started, **origin)


def _cmd_import(args: argparse.Namespace) -> int:
    from data_tools.collect import import_rows
    from data_tools.readers import load_records

    started = _start(args, args.source)
    if started is None:
        return 0
    rows = import_rows(load_records(args.source), prompt=args.prompt_column, completion=args.completion_column,
                       messages=args.messages_column, prompt_template=args.prompt_template,
                       completion_template=args.completion_template)
    return _write(args, rows, "import", *started, source_file=args.source)


def _cmd_label(args: argparse.Namespace) -> int:
    from data_tools.label import candidates, label, pairs_from_labels, read_labels
    from data_tools.store import read_rows

    started = _start(args, args.source)
    if started is None:
        return 0
    cands = candidates(read_rows(args.source), max_per_prompt=args.max_per_prompt, seed=args.seed)
    if not cands:
        raise DataError(f"{args.source} has nothing to judge (no prompt with two different completions)")
    labels_file = Path(f"{args.out}.labels.jsonl")
    if not label(cands, labels_file, limit=args.limit):
        return 0
    pairs = pairs_from_labels(cands, read_labels(labels_file))
    code = _write(args, pairs, "label", *started, judgements=len(read_labels(labels_file)))
    shutil.move(str(labels_file), str(Path(args.out) / "labels.jsonl"))  # the raw judgements stay with the data
    return code


def _cmd_dedup(args: argparse.Namespace) -> int:
    from data_tools.store import read_rows
    from data_tools.transforms import dedup_exact, dedup_near

    started = _start(args, args.source)
    if started is None:
        return 0
    fields = tuple(args.fields) if args.fields else None
    rows, report = dedup_exact(read_rows(args.source), fields)
    if args.near is not None:
        rows, near = dedup_near(rows, args.near, fields=fields)
        report = {**near, "total": report["total"], "removed": report["removed"] + near["removed"],
                  "exact_removed": report["removed"], "examples": report["examples"] + near["examples"]}
    return _write(args, rows, "dedup", *started, report=report)


def _cmd_decontaminate(args: argparse.Namespace) -> int:
    from data_tools.store import read_rows
    from data_tools.transforms import decontaminate

    if bool(args.against) == bool(args.against_gym):
        raise DataError("give exactly one of --against FILE or --against-gym NAME")
    started = _start(args, args.source, *([args.against] if args.against else []))
    if started is None:
        return 0
    kept, report = decontaminate(read_rows(args.source), _eval_texts(args), n=args.ngram)
    return _write(args, kept, "decontaminate", *started, report=report)


def _eval_texts(args: argparse.Namespace) -> list[str]:
    if args.against_gym:
        from data_tools.gym_data import gym_examples
        from ftkit.config import parse_key_values
        from gyms.spec import GymSpec

        against = GymSpec(args.against_gym, parse_key_values(args.against_args))
        problems = gym_examples(against, args.against_n, args.against_seed)
        return [p["prompt"] for p in problems]
    from data_tools.store import read_rows
    from data_tools.transforms import row_text

    return [row_text(r, tuple(f for f in ("prompt", "text", "messages") if f in r) or None)
            for r in read_rows(args.against)]


def _cmd_split(args: argparse.Namespace) -> int:
    from data_tools.store import read_rows
    from data_tools.transforms import split

    started = _start(args, args.source)
    if started is None:
        return 0
    splits, report = split(read_rows(args.source), args.validation, seed=args.seed)
    print(f"{report['prompts']:,} problems: {report['train']:,} rows train, {report['validation']:,} validation")
    return _write(args, splits, "split", *started)


def _cmd_filter_rows(args: argparse.Namespace) -> int:
    from data_tools.store import read_rows
    from data_tools.transforms import filter_rows

    started = _start(args, args.source)
    if started is None:
        return 0
    kept, report = filter_rows(read_rows(args.source), min_reward=args.min_reward, max_reward=args.max_reward,
                               min_chars=args.min_chars, max_chars=args.max_chars)
    return _write(args, kept, "filter-rows", *started, report=report)
