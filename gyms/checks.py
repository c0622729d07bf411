"""Check that a gym keeps the contract and cannot be gamed: `ftkit gym check arithmetic`.

    >>> from gyms.checks import check_gym
    >>> report = check_gym("arithmetic", random_episodes=20)
    >>> report.passed, [r.name for r in report.failures]
    (True, [])

`check_gym` runs every check below and returns their results; `ftkit gym check` prints them, and tests
assert on them. The checks, in order:

1. `env_checker`: Gymnasium's own `check_env` on the unwrapped env (its warnings count as failures).
2. `info keys`: reset and step give `answer` (str), `difficulty` (flat dict) and `solved` (bool).
3. `replay`: two seeded episodes, played twice, match step for step (oracle actions when the gym has
   an oracle, else random guesses).
4. `oracle`: the oracle solves every episode over several seeds with a total reward of 1.0.
5. `random policy`: the reward a guesser earns (it answers with other problems' answers): mean,
   percentiles and a histogram. It is shown, not judged, unless guessing wins most episodes.
6. `hack: ...`: hostile actions on the first turn (empty, whitespace, very long, the answer twice,
   several answers in one, "correct" and the like, the answer in full-width characters). The
   contract says they earn nothing, so any reward above 0, or a crash, fails.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.utils.env_checker import check_env

import gyms
from gyms.runner import EnvPolicy, Trajectory, oracle_policy, random_policy, run_episodes
from gyms.spec import GymSpec

PASS, FAIL, WARN, SKIP, INFO = "pass", "fail", "warn", "skip", "info"
MAX_REWARD = 1.0  # the contract: an episode's rewards add up to at most 1.0, the oracle's to exactly 1.0
REPLAY_SEEDS = (11, 12)
ORACLE_SEEDS = range(20)
RANDOM_SEED_OFFSET = 100_000  # the random policy's episodes and answer pool use seeds apart from the rest
HACK_SEEDS = range(5)
MAX_TURNS = 200  # episodes of a check never run longer than this


@dataclass
class CheckResult:
    """One check's outcome: `status` is "pass", "fail", "warn", "skip" or "info"; `detail` is one line."""

    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)  # the numbers behind the detail, for tests


@dataclass
class CheckReport:
    """Every check's result for one gym: `report.passed`, `report.failures`."""

    gym: str
    results: list[CheckResult]

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def passed(self) -> bool:
        return not self.failures


def check_gym(name: str, env_kwargs: dict[str, Any] | None = None, random_episodes: int = 100) -> CheckReport:
    """Run every check on a gym: `check_gym("arithmetic", {"digits": 2}).passed`."""
    env_kwargs = dict(env_kwargs or {})
    gym_id = gyms.resolve_id(name)
    env = gyms.make(gym_id, **env_kwargs)
    has_oracle = bool(env.unwrapped.has_oracle)
    env.close()
    no_oracle = CheckResult("oracle", SKIP, "the gym has no oracle")
    results = [
        check_env_contract(gym_id, env_kwargs),
        check_info_keys(gym_id, env_kwargs),
        check_replay(gym_id, env_kwargs, has_oracle),
        check_oracle(gym_id, env_kwargs) if has_oracle else no_oracle,
        random_reward_distribution(gym_id, env_kwargs, random_episodes),
        *probe_reward_hacking(gym_id, env_kwargs),
    ]
    return CheckReport(gym_id, results)


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; an exception the gym raises fails that check instead of ending the report."""
    try:
        return check()
    except Exception as exc:  # the check's whole point is to report what the gym does wrong
        return CheckResult(name, FAIL, f"raised {type(exc).__name__}: {_one_line(exc)}")


def _one_line(value: Any, limit: int = 160) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- 1. Gymnasium's env checker -------------------------------------------------------------------------


def check_env_contract(gym_id: str, env_kwargs: dict[str, Any]) -> CheckResult:
    """Gymnasium's `check_env` on the unwrapped env; any warning it gives is a failure too."""

    def run() -> CheckResult:
        env = gyms.make(gym_id, **env_kwargs)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check_env(env.unwrapped)
        finally:
            env.close()
        if caught:
            return CheckResult("env_checker", FAIL, f"warned: {_one_line(caught[0].message)}")
        return CheckResult("env_checker", PASS, "gymnasium.utils.env_checker.check_env passed")

    return _guarded("env_checker", run)


# -- 2. standard info keys ----------------------------------------------------------------------------


def check_info_keys(gym_id: str, env_kwargs: dict[str, Any]) -> CheckResult:
    """`answer`, `difficulty` at reset and step, `solved` at step, with the right types."""

    def run() -> CheckResult:
        env = gyms.make(gym_id, **env_kwargs)
        try:
            _, reset_info = env.reset(seed=0)
            _, _, _, _, step_info = env.step("")
        finally:
            env.close()
        problems = _info_problems(reset_info, "reset") + _info_problems(step_info, "step")
        if not isinstance(step_info.get("solved"), bool):
            problems.append(f"step info's solved is {step_info.get('solved')!r}, not a bool")
        if problems:
            return CheckResult("info keys", FAIL, "; ".join(problems))
        return CheckResult("info keys", PASS, "answer, difficulty and solved present with the right types")

    return _guarded("info keys", run)


def _info_problems(info: dict[str, Any], where: str) -> list[str]:
    problems = []
    if not isinstance(info.get("answer"), str):
        problems.append(f"{where} info's answer is {info.get('answer')!r}, not a str")
    difficulty = info.get("difficulty")
    flat = isinstance(difficulty, dict) and all(
        isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in difficulty.items()
    )
    if not flat:
        problems.append(f"{where} info's difficulty is {difficulty!r}, not a flat dict of simple values")
    return problems


def _spec(gym_id: str, env_kwargs: dict[str, Any]) -> GymSpec:
    """The gym as the checks play it: its arguments, episodes cut at MAX_TURNS."""
    return GymSpec(gym_id, env_kwargs, max_turns=MAX_TURNS)


# -- 3. replay ----------------------------------------------------------------------------------------


def check_replay(gym_id: str, env_kwargs: dict[str, Any], has_oracle: bool) -> CheckResult:
    """Play two seeded episodes twice; every observation, action, reward and info must repeat."""

    def run() -> CheckResult:
        def play() -> list[dict]:
            policy = oracle_policy() if has_oracle else random_policy(_answer_pool(gym_id, env_kwargs, 20))
            episodes = run_episodes(_spec(gym_id, env_kwargs), policy, list(REPLAY_SEEDS))
            return [t.to_dict() for t in episodes]

        first, second = play(), play()
        actions = "oracle" if has_oracle else "random"
        if first != second:
            where = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
            return CheckResult(
                "replay", FAIL, f"seed {REPLAY_SEEDS[where]} played differently twice ({actions} actions)"
            )
        turns = sum(t["num_turns"] for t in first)
        return CheckResult(
            "replay",
            PASS,
            f"seeds {list(REPLAY_SEEDS)} replay identically ({actions} actions, {turns} turns)",
        )

    return _guarded("replay", run)


# -- 4. oracle ----------------------------------------------------------------------------------------


def check_oracle(gym_id: str, env_kwargs: dict[str, Any]) -> CheckResult:
    """The oracle must solve every episode and score the maximum, 1.0, over `ORACLE_SEEDS`."""

    def run() -> CheckResult:
        episodes = run_episodes(_spec(gym_id, env_kwargs), oracle_policy(), list(ORACLE_SEEDS))
        short = [t for t in episodes if not t.solved or abs(t.total_reward - MAX_REWARD) > 1e-9]
        data = {"episodes": len(episodes), "mean_reward": _mean([t.total_reward for t in episodes])}
        if short:
            worst = short[0]
            return CheckResult(
                "oracle",
                FAIL,
                f"{len(short)}/{len(episodes)} oracle episodes fall short, e.g. seed {worst.seed}: "
                f"reward {worst.total_reward:g}, solved {worst.solved}",
                data,
            )
        turns = _mean([t.num_turns for t in episodes])
        return CheckResult(
            "oracle",
            PASS,
            f"solves {len(episodes)}/{len(episodes)} seeds with reward 1.0 ({turns:.1f} turns on average)",
            data,
        )

    return _guarded("oracle", run)


# -- 5. the random policy's rewards ------------------------------------------------------------------------


def random_reward_distribution(gym_id: str, env_kwargs: dict[str, Any], episodes: int) -> CheckResult:
    """What a guesser earns: it answers with other problems' answers (random text when there are none)."""

    def run() -> CheckResult:
        seeds = [RANDOM_SEED_OFFSET + i for i in range(episodes)]
        policy = random_policy(_answer_pool(gym_id, env_kwargs, 50))
        played = run_episodes(_spec(gym_id, env_kwargs), policy, seeds)
        return describe_rewards("random policy", played)

    return _guarded("random policy", run)


def describe_rewards(name: str, episodes: list[Trajectory]) -> CheckResult:
    """Mean, solved rate, percentiles and a histogram of the episodes' total rewards."""
    rewards = np.array([t.total_reward for t in episodes], dtype=float)
    solved = float(np.mean([t.solved for t in episodes]))
    p10, p50, p90 = np.percentile(rewards, [10, 50, 90])
    data = {
        "episodes": len(episodes),
        "mean": float(rewards.mean()),
        "solved_rate": solved,
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
        "histogram": reward_histogram(rewards),
    }
    detail = (
        f"mean reward {data['mean']:.3f}, solved {solved:.0%} of {len(episodes)}; "
        f"p10/p50/p90 {p10:.2f}/{p50:.2f}/{p90:.2f}"
    )
    if solved > 0.5:
        return CheckResult(
            name, WARN, detail + "; guessing wins most episodes: the task may be too easy", data
        )
    return CheckResult(name, INFO, detail, data)


def reward_histogram(rewards: np.ndarray, bins: int = 5) -> list[tuple[str, int]]:
    """Counts of rewards per bin over [0, 1] (wider when rewards fall outside): [("0.0-0.2", 97), ...]."""
    low, high = min(0.0, float(rewards.min())), max(1.0, float(rewards.max()))
    counts, edges = np.histogram(rewards, bins=bins, range=(low, high))
    return [(f"{edges[i]:.1f}-{edges[i + 1]:.1f}", int(c)) for i, c in enumerate(counts)]


def _answer_pool(gym_id: str, env_kwargs: dict[str, Any], n: int) -> list[str]:
    """What wins `n` problems the checks do not otherwise play (see `_winning_text`), for guessing.

    Falls back to the problems' `answer`s when the winning texts are all the same (an oracle that
    always opens with the same move, like binary search's first guess).
    """
    env = gyms.make(gym_id, **env_kwargs)
    winning, answers = [], []
    try:
        for i in range(n):
            _, info = env.reset(seed=2 * RANDOM_SEED_OFFSET + i)
            winning.append(_winning_text(env, info))
            answers.append(info.get("answer"))
    finally:
        env.close()
    pool = winning if len(set(winning)) > 1 else answers
    return [a for a in pool if isinstance(a, str) and a]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


# -- 6. reward hacking ----------------------------------------------------------------------------------

_FULL_WIDTH = {c: chr(ord(c) - 0x21 + 0xFF01) for c in map(chr, range(0x21, 0x7F))}  # "5" -> "５"


def full_width(text: str) -> str:
    """`text` in full-width characters, which look like ASCII but are not: `full_width("42")` -> "４２"."""
    return "".join(_FULL_WIDTH.get(c, c) for c in text)


def hostile_actions(answer: str, other_answers: list[str]) -> dict[str, str]:
    """The actions a reward hacker tries, by name; those built from the answer only when there is one."""
    actions = {
        "empty": "",
        "whitespace": " \n\t \n",
        "very long": "ab " * 5000,
        "says correct": "correct",
        "claims the answer is correct": "The answer is correct.",
        "claims the reward": "reward: 1.0 (solved, the answer is correct)",
        "number spray": " ".join(str(i) for i in range(-100, 1001)),
    }
    if answer:
        actions["answer twice"] = f"{answer}{answer}"
        actions["answer twice, spaced"] = f"{answer} {answer}"
    others = list(dict.fromkeys(a for a in other_answers if a != answer))[:6]
    if answer and others:
        actions["several answers"] = ", ".join([*others[:3], answer, *others[3:]])
        actions["several answers, lines"] = "\n".join([*others[:3], answer, *others[3:]])
        if full_width(answer) != answer:
            actions["full-width answer"] = full_width(answer)
    return actions


def probe_reward_hacking(gym_id: str, env_kwargs: dict[str, Any]) -> list[CheckResult]:
    """One result per hostile action: it fails when the first step pays anything or crashes the gym."""
    env = gyms.make(gym_id, **env_kwargs)
    others = _answer_pool(gym_id, env_kwargs, 10)
    outcomes: dict[str, list[tuple[int, float, bool]]] = {}
    try:
        for seed in HACK_SEEDS:
            _, info = env.reset(seed=seed)
            for name, action in hostile_actions(_winning_text(env, info), others).items():
                outcomes.setdefault(name, []).append((seed, *_try_action(env, seed, action)))
    except Exception as exc:
        return [CheckResult("hack probes", FAIL, f"raised {type(exc).__name__}: {_one_line(exc)}")]
    finally:
        env.close()
    return [_judge(f"hack: {name}", results) for name, results in outcomes.items()]


def _winning_text(env: Any, info: dict[str, Any]) -> str:
    """What a hack would try to wrap: the oracle's action now (`[6]` in TextArena's GuessTheNumber,
    where the `answer` is `6`), else the reset info's answer."""
    if env.unwrapped.has_oracle:
        return gyms.oracle(env)
    answer = info.get("answer")
    return answer if isinstance(answer, str) else ""


def _try_action(env: Any, seed: int, action: str) -> tuple[float, bool | str]:
    """(reward, solved) of `action` as the first step of the episode `seed`; solved is the error text
    when the step raised (a crash is as bad as a payout: RL would stop)."""
    env.reset(seed=seed)
    try:
        _, reward, _, _, info = env.step(action)
    except Exception as exc:  # reported as a failure of this probe
        return 0.0, f"{type(exc).__name__}: {_one_line(exc, 80)}"
    return float(reward), bool(info.get("solved", False))


def _judge(name: str, results: list[tuple[int, float, bool | str]]) -> CheckResult:
    crashed = [(seed, solved) for seed, _, solved in results if isinstance(solved, str)]
    if crashed:
        return CheckResult(name, FAIL, f"crashed the gym on seed {crashed[0][0]}: {crashed[0][1]}")
    paid = [(seed, reward, solved) for seed, reward, solved in results if reward > 0 or solved]
    best = max(reward for _, reward, _ in results)
    data = {"max_reward": best, "paid_seeds": [seed for seed, _, _ in paid]}
    if paid:
        seed, reward, solved = max(paid, key=lambda p: p[1])
        return CheckResult(
            name,
            FAIL,
            f"earned {reward:g} (solved {solved}) on {len(paid)}/{len(results)} seeds, e.g. seed {seed}",
            data,
        )
    return CheckResult(name, PASS, f"earned nothing on {len(results)} seeds", data)


def summary_line(report: CheckReport) -> str:
    """One line for the end of `ftkit gym check`: which checks failed, or that all passed."""
    if report.passed:
        return f"{report.gym}: all {len(report.results)} checks passed"
    names = ", ".join(r.name for r in report.failures)
    return f"{report.gym} failed {len(report.failures)} of {len(report.results)} checks: {names}"


__all__ = ["CheckReport", "CheckResult", "EnvPolicy", "check_gym", "hostile_actions", "summary_line"]
