"""The `ftkit gym` commands: list, play, scaffold and check text gyms.

    ftkit gym list                         # every gym (and the adapted task libraries)
    ftkit gym play guess_number --seed 3   # play it yourself, seeing exactly what a model sees
    ftkit gym new reverse_word             # scaffold a working gym, its registration and its tests
    ftkit gym check arithmetic digits=2    # contract, replay, oracle, random baseline, reward hacking

Gym arguments are `key=value` pairs typed as YAML (`digits=4 ops=[+,-]`). Mistakes are one line and exit
code 2, like every ftkit command.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

from ftkit.cli import EXIT_INTERRUPTED
from ftkit.errors import GymError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit gym list|play|new|check` to the `ftkit` command's subparsers."""
    gym = subparsers.add_parser(
        "gym",
        help="list, play, scaffold and check text gyms",
        description="Work with text gyms: ftkit gym list | play | new | check",
    )
    commands = gym.add_subparsers(dest="gym_command", required=True, parser_class=type(gym))

    lister = commands.add_parser(
        "list",
        help="the registered gyms and adapted task libraries",
        description="ftkit gym list        (ftkit gym list rg: every reasoning-gym task)",
    )
    lister.add_argument("adapter", nargs="?", help="list one adapter's tasks: rg or ta")
    lister.set_defaults(func=_cmd_list)

    play = commands.add_parser(
        "play",
        help="play a gym in the terminal",
        description="Play a gym yourself: ftkit gym play guess_number --seed 3",
    )
    play.add_argument("name", help="gym short name or id, e.g. arithmetic or rg:chain_sum")
    play.add_argument("gym_args", nargs="*", help="gym arguments as key=value, e.g. digits=2")
    play.add_argument("--seed", type=int, default=None, help="episode seed (default: a random one, shown)")
    play.set_defaults(func=_cmd_play)

    new = commands.add_parser(
        "new",
        help="scaffold a new gym with its registration and tests",
        description="Scaffold a working gym to edit: ftkit gym new reverse_word",
    )
    new.add_argument("name", help="the gym's short name: a lowercase Python identifier, e.g. reverse_word")
    new.add_argument(
        "--dir",
        default=None,
        help="the gyms package folder to write into (default: the installed gyms package); "
        "the test goes to tests/ next to it",
    )
    new.set_defaults(func=_cmd_new)

    check = commands.add_parser(
        "check",
        help="check a gym's contract and probe it for reward hacking",
        description="ftkit gym check arithmetic digits=2",
    )
    check.add_argument("name", help="gym short name or id")
    check.add_argument("gym_args", nargs="*", help="gym arguments as key=value")
    check.add_argument(
        "--episodes", type=int, default=100, help="episodes of the random policy (default 100)"
    )
    check.set_defaults(func=_cmd_check)


# -- list ---------------------------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    """`ftkit gym list [rg|ta]`: a table of gyms, or one adapter's tasks."""
    from rich.console import Console

    console = Console()
    if args.adapter is not None:
        return _list_adapter_tasks(console, args.adapter)
    console.print(_gyms_table())
    return 0


def _gyms_table() -> Any:
    from rich.table import Table
    from rich.text import Text  # plain text: a description's "[extra]" is not rich markup

    import gyms
    from gyms import adapters

    table = Table(title="ftkit gyms (play one: ftkit gym play NAME)")
    for column in ("id", "name", "turns", "oracle"):
        table.add_column(column, no_wrap=True)
    table.add_column("description", overflow="fold")
    for g in gyms.list_gyms():
        table.add_row(
            g.id, g.short_name, _turns(g.multi_turn), "yes" if g.has_oracle else "no", Text(g.description)
        )
    for adapter in adapters.ADAPTERS.values():
        tasks = adapters.task_names(adapter.prefix)
        if tasks:
            example = next((t for t in tasks if t in adapters.EXAMPLES), tasks[0])
            summary = f"{len(tasks)} tasks, e.g. {example}; `ftkit gym list {adapter.prefix}` names them all"
        else:
            summary = f"{adapter.label} tasks; not installed: {adapter.install}"
        table.add_row(
            f"{adapter.prefix}:<task>", adapter.label, _turns(adapter.multi_turn), "some", Text(summary)
        )
    return table


def _list_adapter_tasks(console: Any, prefix: str) -> int:
    from rich.table import Table
    from rich.text import Text

    from gyms import adapters

    if prefix not in adapters.ADAPTERS:
        raise GymError(f'unknown adapter "{prefix}"; adapters: {", ".join(adapters.ADAPTERS)}')
    module = adapters.load(adapters.ADAPTERS[prefix])
    table = Table(title=f"{adapters.ADAPTERS[prefix].label} tasks (ftkit gym play {prefix}:TASK)")
    table.add_column("id", no_wrap=True)
    table.add_column("description", overflow="fold")
    for task in module.task_names():
        table.add_row(f"{prefix}:{task}", Text(module.describe(task)))
    console.print(table)
    return 0


def _turns(multi_turn: bool) -> str:
    return "multi" if multi_turn else "single"


# -- play ---------------------------------------------------------------------------------------------------


def _cmd_play(args: argparse.Namespace) -> int:
    """`ftkit gym play NAME`: a person plays one episode; each observation is printed verbatim."""
    import gyms
    from ftkit.config import parse_key_values

    if args.seed is not None and args.seed < 0:
        raise GymError(f"--seed must be a non-negative int, got {args.seed}")
    env = gyms.make(args.name, **parse_key_values(args.gym_args))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    observation, info = env.reset(seed=seed)
    _say(
        f"{gyms.resolve_id(args.name)}, seed {seed}. Below is exactly what a model sees; "
        "type your action and press Enter (Ctrl-D quits)."
    )
    try:
        return _play_episode(env, observation, info)
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    finally:
        env.close()


def _play_episode(env: Any, observation: str, info: dict[str, Any]) -> int:
    total, turns, done = 0.0, 0, False
    while not done:
        print(observation, flush=True)
        try:
            action = _read_action()
        except EOFError:
            _say(f"input ended; episode left unfinished after {turns} turn(s)")
            return 0
        observation, reward, terminated, truncated, info = env.step(action)
        total, turns, done = total + float(reward), turns + 1, terminated or truncated
        _say(f"reward {float(reward):g}" + ("" if done else f" (turn {turns})"))
    if observation:
        print(observation)
    ending = "solved" if info.get("solved") else ("out of turns" if truncated else "not solved")
    _say(
        f"episode over: {ending}; total reward {total:g} in {turns} turn(s); answer: {info.get('answer', '?')}"
    )
    return 0


def _read_action() -> str:
    """One line from the player. Piped input is echoed, so that the transcript shows what was played."""
    if sys.stdin.isatty():
        return input("> ")
    action = input()
    print(f"> {action}")
    return action


def _say(text: str) -> None:
    """ftkit's own lines during play, marked apart from the gym's observations."""
    print(f"── {text}", flush=True)


# -- new ----------------------------------------------------------------------------------------------------


def _cmd_new(args: argparse.Namespace) -> int:
    """`ftkit gym new NAME [--dir DIR]`: scaffold a gym, its registration and its tests."""
    from gyms.scaffold import scaffold_gym

    gyms_dir = Path(args.dir) if args.dir else _installed_gyms_dir()
    written = scaffold_gym(args.name, gyms_dir, gyms_dir.parent / "tests")
    for path in written:
        print(f"wrote {path}")
    print(
        f"next: ftkit gym check {args.name} && python -m pytest {written[-1]} -q && ftkit gym play {args.name}"
    )
    return 0


def _installed_gyms_dir() -> Path:
    import gyms

    return Path(gyms.__file__).resolve().parent


# -- check --------------------------------------------------------------------------------------------------

_STYLES = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim", "info": "cyan"}


def _cmd_check(args: argparse.Namespace) -> int:
    """`ftkit gym check NAME`: one line per check; exit 2 naming the failed checks."""
    from rich.console import Console
    from rich.markup import escape

    from ftkit.config import parse_key_values
    from gyms.checks import check_gym, summary_line

    if args.episodes < 1:
        raise GymError(f"--episodes must be at least 1, got {args.episodes}")
    report = check_gym(args.name, parse_key_values(args.gym_args), random_episodes=args.episodes)
    console = Console(highlight=False, soft_wrap=True)  # one line per check, even when piped
    console.print(f"checking {report.gym}")
    for result in report.results:
        style = _STYLES.get(result.status, "")
        console.print(f"[{style}]{result.status.upper():4}[/] {escape(result.name)}: {escape(result.detail)}")
        for label, count in result.data.get("histogram", []):
            console.print(
                f"       {label}  {'#' * round(40 * count / max(1, result.data['episodes']))} {count}"
            )
    if not report.passed:
        raise GymError(summary_line(report))
    console.print(summary_line(report))
    return 0
