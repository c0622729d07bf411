"""Play a policy against many copies of a gym at once: `python -c "from gyms.runner import demo; demo()"`.

    >>> from gyms.runner import run_episodes, oracle_policy
    >>> from gyms.spec import GymSpec
    >>> trajectories = run_episodes("arithmetic", lambda observations: ["42"] * len(observations), seeds=[0, 1])
    >>> [t.num_turns for t in trajectories], [t.solved for t in trajectories]
    ([1, 1], [False, False])
    >>> [t.solved for t in run_episodes(GymSpec("arithmetic", {"digits": 2}), oracle_policy(), seeds=[0, 1])]
    [True, True]

A *policy* is any function from a batch of observations to a batch of actions (one `str` each). The
runner knows nothing about models: evaluation wraps a model's batched `generate` in a policy, data
collection plays the oracle, RL records the trajectories it trains on, and `ftkit gym play` is a person
typing. They all share this one loop, so they cannot disagree about what an episode is.

All unfinished episodes move in lockstep: each turn makes one policy call over every episode still
running, which is what lets a model policy batch its generation. Single-turn gyms take one call.

Which gym, with which arguments, and how the policy sees it come in one `GymSpec` (a plain gym id is
one with default settings). Observations are the gym's text (`chat=False`, the default) or, with
`GymSpec(..., chat=True)`, the conversation so far as chat messages, ready for a tokenizer's chat template:

    [{"role": "system", "content": system_prompt},       # only with system_prompt=...
     {"role": "user", "content": obs0}, {"role": "assistant", "content": action0},
     {"role": "user", "content": obs1}]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import gymnasium

from gyms.errors import GymError
from gyms.spec import GymSpec

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": "..."}
Observation = str | list[Message]
Policy = Callable[[list[Observation]], list[str]]

# A multi-turn gym whose episodes never end would hang the runner; past this many turns without
# `max_turns` the runner stops with an error instead of looping for ever.
SAFETY_MAX_TURNS = 1000


@dataclass
class Turn:
    """One step of an episode: what the policy saw, what it did, and what the gym answered."""

    observation: str  # the gym's text observation before the action (not the chat history)
    action: str
    reward: float
    info: dict[str, Any]  # the step's info: answer, difficulty, solved, ...


@dataclass
class Trajectory:
    """One played episode: `t.turns[0].action`, `t.total_reward`, `t.solved`, `t.to_dict()`.

    `terminated` / `truncated` are the gym's, except that the runner's own `max_turns` limit also
    sets `truncated`. `info` is the last step's info; `reset_info` the one `reset()` returned.
    """

    gym: str  # the full gym id, e.g. "ftkit/Arithmetic-v0"
    seed: int
    turns: list[Turn] = field(default_factory=list)
    reset_info: dict[str, Any] = field(default_factory=dict)
    final_observation: str = ""  # what the gym showed after the last action
    terminated: bool = False
    truncated: bool = False
    system_prompt: str | None = None

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def total_reward(self) -> float:
        return float(sum(turn.reward for turn in self.turns))

    @property
    def info(self) -> dict[str, Any]:
        """The final info: the last step's (or the reset's when no step was taken)."""
        return self.turns[-1].info if self.turns else self.reset_info

    @property
    def solved(self) -> bool:
        return bool(self.info.get("solved", False))

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def messages(self) -> list[Message]:
        """The episode as chat messages (system prompt, then user/assistant turns), e.g. for SFT."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for turn in self.turns:
            messages.append({"role": "user", "content": turn.observation})
            messages.append({"role": "assistant", "content": turn.action})
        return messages

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (one JSONL line): `json.dumps(trajectory.to_dict())`."""
        return {
            "gym": self.gym,
            "seed": self.seed,
            "num_turns": self.num_turns,
            "total_reward": self.total_reward,
            "solved": self.solved,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "system_prompt": self.system_prompt,
            "reset_info": to_jsonable(self.reset_info),
            "turns": [
                {
                    "observation": t.observation,
                    "action": t.action,
                    "reward": t.reward,
                    "info": to_jsonable(t.info),
                }
                for t in self.turns
            ],
            "final_observation": self.final_observation,
            "info": to_jsonable(self.info),
        }


class EnvPolicy:
    """A policy that may look at the envs themselves, for oracles and scripted baselines (never a model).

        EnvPolicy(lambda observations, envs: [gyms.oracle(env) for env in envs])

    The runner calls `fn(observations, envs)` with the envs of the running episodes, in the same order.
    Such a policy may answer `None` for an episode to stop it where it is, marked truncated (a model
    policy does this when the conversation no longer fits its context).
    """

    def __init__(
        self, fn: Callable[[list[Observation], list[gymnasium.Env]], list[str]], name: str = ""
    ) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "env policy")

    def __repr__(self) -> str:
        return f"EnvPolicy({self.name})"


def oracle_policy() -> EnvPolicy:
    """The gym's oracle as a policy: `run_episodes("arithmetic", oracle_policy(), seeds=range(10))`."""
    from gyms.registry import oracle

    return EnvPolicy(lambda observations, envs: [oracle(env) for env in envs], name="oracle")


def random_policy(
    answers: Sequence[str], alphabet: str = "0123456789abcdefghijklmnopqrstuvwxyz"
) -> EnvPolicy:
    """A policy that guesses: each action is one of `answers` (e.g. other problems' answers) at random,
    or a short random string when `answers` is empty.

    Its randomness is seeded by each episode's reset seed (`env.np_random_seed`), never by the env's
    own generator, so a replay makes the same guesses and the gym's draws are left alone.
    """
    answers = list(answers)
    generators: dict[int, random.Random] = {}

    def guess(observations: list[Observation], envs: list[gymnasium.Env]) -> list[str]:
        actions = []
        for env in envs:
            rng = generators.setdefault(id(env), random.Random(env.np_random_seed))
            if answers:
                actions.append(rng.choice(answers))
            else:
                actions.append("".join(rng.choices(alphabet, k=rng.randint(1, 8))))
        return actions

    return EnvPolicy(guess, name="random")


def run_episodes(
    gym: GymSpec | str,
    policy: Policy | EnvPolicy,
    seeds: Sequence[int],
    *,
    options: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None,
    reuse_envs: bool = False,
) -> list[Trajectory]:
    """Play one episode per seed, all in lockstep; return their trajectories in the order of `seeds`.

        run_episodes(GymSpec("arithmetic", {"digits": 2}, chat=True), my_policy, seeds=range(100))

    - `gym`: a `GymSpec` (the gym, its constructor arguments, and how the policy sees it: `chat`,
      `system_prompt`, `max_turns`), or a gym id for one with default settings.
    - `options`: `reset(options=...)` for every episode, or a list with one per seed.
    - `reuse_envs`: keep the envs for the next call with the same gym and arguments instead of closing
      them (`gymnasium.make` costs more than a short episode; RL plays hundreds per step). Every
      episode still starts with `reset(seed=...)`, which is all a gym's state may depend on.

    With `spec.chat` the policy gets chat messages (the conversation so far, after `spec.system_prompt`)
    instead of the latest text; past `spec.max_turns` actions an episode stops, marked truncated.

    Raises `GymError` when the policy returns the wrong number of actions or an action that is not a
    `str`, or when an episode runs past `SAFETY_MAX_TURNS` without a `max_turns`.
    """
    spec = GymSpec.of(gym)
    seeds = _check_seeds(seeds)
    per_episode_options = _options_per_episode(options, len(seeds))
    gym_id = spec.full_id
    pool_key = (gym_id, repr(sorted(spec.kwargs.items())))
    pooled = _ENV_POOL.pop(pool_key, []) if reuse_envs else []
    envs = pooled[: len(seeds)] + [spec.make() for _ in range(len(seeds) - len(pooled))]
    finished = False
    try:
        trajectories = [
            _start(env, gym_id, seed, opts, spec.system_prompt)
            for env, seed, opts in zip(envs, seeds, per_episode_options)
        ]
        _play_in_lockstep(envs, trajectories, policy, spec.chat, spec.max_turns)
        finished = True
        return trajectories
    finally:
        if reuse_envs and finished:
            _ENV_POOL[pool_key] = envs + pooled[len(seeds) :]
        else:
            for env in envs + pooled[len(seeds) :]:
                env.close()


# Envs kept between calls by `run_episodes(..., reuse_envs=True)`, per (gym id, constructor arguments).
_ENV_POOL: dict[tuple[str, str], list[gymnasium.Env]] = {}


def _start(
    env: gymnasium.Env, gym_id: str, seed: int, options: dict | None, system_prompt: str | None
) -> Trajectory:
    observation, info = env.reset(seed=seed, options=options)
    trajectory = Trajectory(gym=gym_id, seed=seed, reset_info=info, system_prompt=system_prompt)
    trajectory.final_observation = observation  # the observation the next action answers
    return trajectory


def _play_in_lockstep(
    envs: list[gymnasium.Env],
    trajectories: list[Trajectory],
    policy: Policy | EnvPolicy,
    chat: bool,
    max_turns: int | None,
) -> None:
    """Step every running episode once per turn, with one policy call over all of them."""
    limit = max_turns if max_turns is not None else SAFETY_MAX_TURNS
    for _ in range(limit):
        running = [i for i, t in enumerate(trajectories) if not t.done]
        if not running:
            return
        observations = [_observation(trajectories[i], chat) for i in running]
        actions = _call_policy(policy, observations, [envs[i] for i in running])
        for i, action in zip(running, actions):
            if action is None:  # an EnvPolicy gave up on this episode (e.g. a model's context is full)
                trajectories[i].truncated = True
            else:
                _step(envs[i], trajectories[i], action)
    still_running = [t for t in trajectories if not t.done]
    if still_running and max_turns is None:
        raise GymError(
            f"{len(still_running)} episode(s) of {trajectories[0].gym} did not end within {SAFETY_MAX_TURNS} "
            "turns; pass max_turns=... to cut episodes short"
        )
    for trajectory in still_running:
        trajectory.truncated = True  # cut short by the runner's max_turns


def _observation(trajectory: Trajectory, chat: bool) -> Observation:
    """What the policy sees: the latest text, or the whole conversation as chat messages."""
    if not chat:
        return trajectory.final_observation
    return [*trajectory.messages(), {"role": "user", "content": trajectory.final_observation}]


def _call_policy(
    policy: Policy | EnvPolicy, observations: list[Observation], envs: list[gymnasium.Env]
) -> list[str]:
    """Call the policy once for the whole batch and check it answered each observation with a str."""
    actions = policy.fn(observations, envs) if isinstance(policy, EnvPolicy) else policy(observations)
    if isinstance(actions, str) or not isinstance(actions, Sequence):
        raise GymError(
            f"the policy must return a list of actions (one str per observation), got {type(actions).__name__}"
        )
    if len(actions) != len(observations):
        raise GymError(
            f"the policy returned {len(actions)} actions for {len(observations)} observations; "
            "it must return exactly one action per observation, in the same order"
        )
    for index, action in enumerate(actions):
        if action is None and isinstance(policy, EnvPolicy):
            continue  # ends that episode, marked truncated
        if not isinstance(action, str):
            raise GymError(
                f"the policy's action {index} is a {type(action).__name__} ({action!r:.60}); every action must be a str"
            )
    return list(actions)


def _step(env: gymnasium.Env, trajectory: Trajectory, action: str) -> None:
    observation, reward, terminated, truncated, info = env.step(action)
    trajectory.turns.append(Turn(trajectory.final_observation, action, float(reward), info))
    trajectory.final_observation = observation
    trajectory.terminated, trajectory.truncated = bool(terminated), bool(truncated)


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
            raise GymError(f"seeds must be non-negative ints, got {seed!r}")
    return [int(seed) for seed in seeds]  # numpy ints become plain ints, for JSON


def _options_per_episode(options: Any, n: int) -> list[dict | None]:
    """`options` as one entry per episode: a single dict (or None) is shared by all of them."""
    if options is None or isinstance(options, dict):
        return [options] * n
    options = list(options)
    if len(options) != n:
        raise GymError(
            f"options must be one dict for all episodes or a list of {n} (one per seed), got {len(options)}"
        )
    return options


def to_jsonable(value: Any) -> Any:
    """`value` with numpy scalars, tuples and sets turned into plain JSON types (anything else -> str)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return to_jsonable(value.item())
    return str(value)


def demo() -> None:
    """Print two arithmetic episodes played by the oracle, as JSON lines."""
    import json

    for trajectory in run_episodes("arithmetic", oracle_policy(), seeds=[0, 1]):
        print(json.dumps(trajectory.to_dict()))
