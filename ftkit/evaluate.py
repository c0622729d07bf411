"""Evaluation: exact-match accuracy on held-out gym problems, broken down by difficulty.

    ftkit eval --gym arithmetic --model runs/gpt2_math/model

Each answer is scored by stepping the gym with it, so evaluation uses the very reward that RL trains
on (the gym's own score): the two cannot drift apart. Problems are generated from a seed of their
own, and any problem whose prompt was seen in training is skipped, so the score is on unseen problems.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from data_tools.gym_data import gym_examples, item_seed
from gyms.spec import GymSpec


@dataclass
class EvalResult:
    gym: str
    n: int
    correct: int
    by_difficulty: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    mean_turns: float | None = None  # multi-turn gyms: actions per episode (an unsolved one counts them all)
    # multi-turn gyms: turns to solve, an unsolved episode counting as the turn limit (fewer is better, and
    # an episode cut short by the model's context cannot look like a quick one)
    turns_to_solve: float | None = None
    mean_reward: float | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, **asdict(self)}


def generate(model, tokenizer, prompts: list, *, max_new_tokens: int, batch_size: int = 64, engine=None) -> list[str]:
    """Greedy completions for `prompts` (text or chat messages): the engine's greedy decoding, text only."""
    from ftkit.engine import HFEngine, SamplingParams

    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0, logprobs=False)
    engine = engine or HFEngine(model, tokenizer, batch_size=batch_size)
    return [c.text for c in engine.generate(prompts, params)]


@dataclass(frozen=True)
class EvalOptions:
    """Which held-out problems to score and how to answer them: `EvalOptions(n=200, seed=1)`.

    Problem i is the gym reset with `item_seed(seed, i)`; a problem whose prompt is in
    `exclude_prompts` (the training set) is skipped for the next one. `samples` generations are kept.
    """

    n: int
    seed: int | None = None  # None: `run_eval` uses the training run's eval seed (1 without one)
    exclude_prompts: frozenset[str] = frozenset()
    batch_size: int = 128  # prompts per generate() call
    max_new_tokens: int = 16  # longest answer (per turn in a multi-turn gym)
    samples: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude_prompts", frozenset(self.exclude_prompts or ()))


def heldout_problems(gym: GymSpec, n: int, seed: int,
                     exclude_prompts: Collection[str] | None = None) -> list[dict[str, Any]]:
    """n gym problems from `seed` whose prompts are not in `exclude_prompts` (the training set)."""
    return gym_examples(gym, n, seed, exclude_prompts=exclude_prompts)


def score_completions(gym: GymSpec, problems: list[dict[str, Any]], completions: list[str],
                      samples: int = 20) -> EvalResult:
    """Step a fresh episode of each problem with the model's completion and read the gym's reward."""
    env = gym.make()
    result = EvalResult(gym=gym.full_id, n=len(problems), correct=0)
    outcomes = []
    for problem, completion in zip(problems, completions):
        obs, _ = env.reset(seed=item_seed(problem["seed"], problem["index"]))
        assert obs == problem["prompt"], "a gym must replay the same problem from the same seed"
        _, reward, _, _, info = env.step(completion)
        solved = bool(info.get("solved", reward >= 1.0))
        result.correct += solved
        outcomes.append((problem.get("difficulty"), solved))
        if len(result.samples) < samples:
            result.samples.append({"prompt": problem["prompt"], "completion": completion,
                                   "answer": problem["answer"], "reward": float(reward), "solved": solved})
    env.close()
    result.by_difficulty = by_difficulty(outcomes)
    return result


def by_difficulty(outcomes) -> dict[str, dict[str, Any]]:
    """{"digits=3 op=+": {"n", "correct", "accuracy"}, ...} from (difficulty dict, solved) pairs."""
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for difficulty, solved in outcomes:
        key = difficulty_key(difficulty or {})
        groups[key][0] += 1
        groups[key][1] += bool(solved)
    return {key: {"n": n, "correct": c, "accuracy": c / n} for key, (n, c) in sorted(groups.items())}


def difficulty_key(difficulty: dict[str, Any]) -> str:
    """A stable label such as 'digits=3 op=+' for grouping results."""
    return " ".join(f"{k}={v}" for k, v in sorted(difficulty.items())) or "all"


def evaluate_on_gym(model, tokenizer, gym: GymSpec, options: EvalOptions, *, engine=None) -> EvalResult:
    """Greedy answers to held-out problems, scored by the gym; multi-turn gyms play whole episodes.

        evaluate_on_gym(model, tokenizer, GymSpec("arithmetic", {"digits": 2}), EvalOptions(n=200, seed=1))

    With `gym.chat`, each problem is a user message (after `gym.system_prompt`) rendered by the chat
    template, exactly as SFT rendered its examples (`gym_prompt_ids`). `engine` samples (default: the Hugging Face engine on `model`; `ftkit eval --engine vllm`
    passes vLLM's).
    """
    if gym.is_multi_turn:
        return evaluate_episodes(model, tokenizer, gym, options, engine=engine)
    o = options
    problems = heldout_problems(gym, o.n, o.seed, o.exclude_prompts)
    prompts = gym_prompt_ids(tokenizer, gym, [p["prompt"] for p in problems])
    completions = generate(model, tokenizer, prompts, max_new_tokens=o.max_new_tokens, batch_size=o.batch_size,
                           engine=engine)
    return score_completions(gym, problems, completions, samples=o.samples)


def gym_prompt_ids(tokenizer, gym: GymSpec, observations: list[str]) -> list[list[int]]:
    """The ids a model is shown for each of a gym's observations, as it was trained on them:
    `ftkit.chat.Formatter.prompt_ids`, with the gym's `chat` and `system_prompt`.

        gym_prompt_ids(tokenizer, GymSpec("arithmetic", chat=True), ["12+34="])   # [[1, 9690, ...]]
    """
    from ftkit.chat import Formatter

    formatter = Formatter(tokenizer, chat=gym.chat, system_prompt=gym.system_prompt)
    return [formatter.prompt_ids(o) for o in observations]


def evaluate_episodes(model, tokenizer, gym: GymSpec, options: EvalOptions, *, engine=None) -> EvalResult:
    """Play n held-out episodes greedily (seeds `item_seed(seed, i)`); accuracy is the share solved.

    Multi-turn episodes share their first observation ("Guess the number from 1 to 100"), so problems
    are told apart by seed rather than by prompt (`options.exclude_prompts` does not apply). Also
    reports the mean number of turns per episode.
    """
    from ftkit.engine import HFEngine, SamplingParams
    from ftkit.rl.rollout import collect

    o, n = options, options.n
    engine = engine or HFEngine(model, tokenizer, batch_size=o.batch_size)
    params = SamplingParams(max_new_tokens=o.max_new_tokens, temperature=0, logprobs=False)
    seeds = [item_seed(o.seed, i) for i in range(n)]
    batch = collect(engine, tokenizer, gym, seeds, params, group_size=1, max_context=context_length(model))
    trajectories = [e.trajectory for e in batch.episodes]
    result = EvalResult(gym=gym.full_id, n=n, correct=sum(t.solved for t in trajectories))
    result.by_difficulty = by_difficulty((t.info.get("difficulty"), t.solved) for t in trajectories)
    result.mean_turns = sum(t.num_turns for t in trajectories) / max(1, n)
    result.turns_to_solve = sum(t.num_turns if t.solved else _turn_limit(t, gym.max_turns)
                                for t in trajectories) / max(1, n)
    result.mean_reward = sum(t.total_reward for t in trajectories) / max(1, n)
    for t in trajectories[: o.samples]:
        transcript = " | ".join(f"{turn.action.strip()!r} -> {_feedback(t, i)}" for i, turn in enumerate(t.turns))
        result.samples.append({"prompt": t.turns[0].observation if t.turns else t.final_observation,
                               "completion": transcript, "answer": str(t.info.get("answer", "")),
                               "reward": t.total_reward, "solved": t.solved})
    return result


def _turn_limit(trajectory, max_turns: int | None) -> int:
    """The most turns an episode could take: the runner's limit, else the gym's for that episode."""
    gym_limit = (trajectory.reset_info.get("difficulty") or {}).get("max_turns")
    limits = [x for x in (max_turns, gym_limit) if isinstance(x, int)]
    return min(limits) if limits else trajectory.num_turns


def _feedback(trajectory, turn_index: int) -> str:
    """What the gym answered to a turn: the next turn's observation, or the final one."""
    turns = trajectory.turns
    return turns[turn_index + 1].observation if turn_index + 1 < len(turns) else trajectory.final_observation


def context_length(model) -> int | None:
    """The longest sequence the model's position embeddings cover, when its config says (a model or its config)."""
    config = getattr(model, "config", model)
    if hasattr(config, "get_text_config"):  # a multimodal config keeps the language model's in a sub-config
        config = config.get_text_config()
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def samples_markdown(result: EvalResult) -> str:
    """Sample generations as a Markdown table a person can skim."""
    turns = f", {result.mean_turns:.2f} turns per episode" if result.mean_turns is not None else ""
    lines = [f"# Sample generations ({result.gym})", "",
             f"Held-out accuracy: {result.accuracy:.1%} ({result.correct}/{result.n}){turns}", "",
             "| prompt | model's answer | correct answer | solved |", "| --- | --- | --- | --- |"]
    for s in result.samples:
        lines.append(f"| `{_cell(s['prompt'])}` | `{_cell(s['completion'])}` | `{_cell(s['answer'])}` | "
                     f"{'yes' if s['solved'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "\\n").replace("`", "'")


# ---------------------------------------------------------------------------------------------------
# `ftkit eval`


def load_for_eval(model: str):
    """A model folder, a LoRA adapter folder or a hub id, with its tokenizer, ready to generate."""
    from ftkit.config import ModelConfig
    from ftkit.models import load_model, load_tokenizer, resolve_model

    path = Path(model)
    if (path / "adapter_config.json").is_file():
        from ftkit.export import load_adapter_model

        return load_adapter_model(path), load_tokenizer(str(path), ModelConfig(name=str(path)))
    resolved = resolve_model(model, work_dir=path)
    cfg = ModelConfig(name=resolved.path)
    return load_model(resolved.path, cfg, "full"), load_tokenizer(resolved.path, cfg)


def run_eval(model: str, gym: GymSpec | str, options: EvalOptions | None = None, *, engine: str = "auto",
             chat: bool | None = None) -> EvalResult:
    """Print a model's held-out accuracy on a gym, by difficulty, with sample generations; return the result.

        ftkit eval --gym arithmetic --model runs/gpt2_math/model

        result = ftkit.evaluate.run_eval("runs/gpt2_math/model", GymSpec("arithmetic", {"digits": 4}),
                                         EvalOptions(n=200))

    Where an ftkit run trained the model, its task fills in what is not given (the gym's arguments, the
    eval seed, chat, system prompt and turn limits), and the problems it trained on are left out.
    `chat` (`--chat` / `--no-chat`) overrides whether the problems are shown through the chat template;
    a system prompt comes with `gym` (`GymSpec(..., chat=True, system_prompt=...)`).
    """
    from ftkit.runs import TrainingData
    from ftkit.vllm_engine import make_engine

    options = options or EvalOptions(n=500, samples=10)
    spec, seed, exclude = defaults_from_training(GymSpec.of(gym), TrainingData.read(model), options.seed, chat)
    policy, tokenizer = load_for_eval(model)
    sampler = make_engine(engine, policy, tokenizer, batch_size=options.batch_size, model_path=model)
    options = replace(options, seed=seed, exclude_prompts=exclude)
    result = evaluate_on_gym(policy, tokenizer, spec, options, engine=sampler)
    print_result(result, spec.kwargs, excluded=len(exclude))
    return result


def defaults_from_training(asked: GymSpec, trained, seed: int | None,
                           chat: bool | None = None) -> tuple[GymSpec, int, frozenset[str]]:
    """The task to score, its eval seed, and the training prompts to leave out, for a model that an ftkit
    run trained (`trained`, a `ftkit.runs.TrainingData`, or None).

    On the gym it trained on, the training run's settings fill in what `asked` leaves at its defaults:
    the gym's arguments (those asked win), chat, system prompt and turn limit; its oracle examples are
    excluded. The seed defaults to the run's eval seed, so `ftkit eval --gym arithmetic --model DIR`
    scores the problems the run scored. `chat`, when not None, decides chat over both (False drops the
    system prompt).
    """
    gym_id = asked.full_id  # an unknown gym is an error before any model is loaded
    seed = seed if seed is not None else (trained.eval_seed if trained else 1)
    task = trained.gym if trained else None
    if task is None or task.full_id != gym_id:
        return _with_chat(asked, chat), seed, frozenset()
    defaults = dict(task.kwargs)
    if "ops" in asked.kwargs:  # weights belong to the operators they were given for: new ops, uniform weights
        defaults.pop("op_weights", None)
    spec = replace(asked, kwargs={**defaults, **asked.kwargs}, chat=asked.chat or task.chat,
                   system_prompt=asked.system_prompt or task.system_prompt,
                   max_turns=asked.max_turns or task.max_turns)
    exclude: frozenset[str] = frozenset()
    if trained.train_size:
        exclude = frozenset(r["prompt"] for r in gym_examples(task, trained.train_size, trained.train_seed or 0))
    return _with_chat(spec, chat), seed, exclude


def _with_chat(spec: GymSpec, chat: bool | None) -> GymSpec:
    if chat is None or chat == spec.chat:
        return spec
    return replace(spec, chat=chat, system_prompt=spec.system_prompt if chat else None)


def print_result(result: EvalResult, gym_kwargs: dict[str, Any], excluded: int = 0) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    note = f", {excluded:,} training prompts excluded" if excluded else ""
    turns = f", {result.mean_turns:.2f} turns per episode" if result.mean_turns is not None else ""
    console.print(f"{result.gym} {gym_kwargs or ''}: held-out accuracy [bold]{result.accuracy:.1%}[/] "
                  f"({result.correct}/{result.n}{note}){turns}")
    table = Table("difficulty", "n", "accuracy")
    for key, g in result.by_difficulty.items():
        table.add_row(key, str(g["n"]), f"{g['accuracy']:.1%}")
    console.print(table)
    samples = Table("prompt", "model's answer", "correct answer", "solved")
    for s in result.samples:
        samples.add_row(repr(s["prompt"]), repr(s["completion"]), repr(s["answer"]), "yes" if s["solved"] else "no")
    console.print(samples)
