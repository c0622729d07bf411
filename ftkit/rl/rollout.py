"""Rollouts: the policy plays a batch of gym episodes through a generation engine, token by token.

    python -c "from ftkit.rl.rollout import collect; help(collect)"

Each RL step draws `prompts_per_step` problems (gym seeds) and plays each one `num_generations` times
(`PlayOptions.group_size`) with the same seed, so the episodes of a group face the same problem and differ only by the policy's
sampling: that is what GRPO and RLOO compare. Episodes are played by the gyms' runner
(`gyms.runner.run_episodes`, the loop evaluation and data collection use too); the policy given to
the runner asks the engine for each action and records, per episode, the exact token sequence with
the environment's tokens masked out (`EpisodeTokens`), the sampling log-probabilities, and where
each turn's reward lands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ftkit.engine import Engine, SamplingParams
from ftkit.errors import TrainingError
from ftkit.rl import algorithms as alg
from ftkit.rl.sequences import EpisodeTokens
from gyms.runner import EnvPolicy, Trajectory, run_episodes
from gyms.spec import GymSpec


@dataclass
class Episode:
    """One played episode, ready to train on.

    `reward_positions` holds, for each turn, the index in `tokens.input_ids` of the action's last
    token and the reward the gym gave for that turn: PPO's per-token rewards are placed there.
    """

    trajectory: Trajectory
    tokens: EpisodeTokens
    group: int  # episodes with the same group played the same problem
    reward_positions: list[tuple[int, float]] = field(default_factory=list)
    cut_actions: list[int] = field(default_factory=list)  # turns whose action the length limit cut off
    # Turns whose action's tokens carry no loss, though the episode's reward still counts in its group
    # (train.mask_truncated_completions: the cut ones); `loss_mask()` leaves them out.
    masked_actions: list[int] = field(default_factory=list)

    @property
    def reward(self) -> float:
        """What the policy is trained to raise: the sum of its turns' (possibly shaped) rewards."""
        return sum(reward for _, reward in self.reward_positions)

    @property
    def policy_tokens(self) -> int:
        return sum(self.tokens.policy_mask)

    @property
    def hit_length_limit(self) -> int:
        """Actions cut by the length limit (the model did not stop by itself)."""
        return len(self.cut_actions)

    def action_lengths(self) -> list[int]:
        """The tokens the policy wrote in each turn, one per entry of `reward_positions`."""
        return [sum(self.tokens.policy_mask[start:stop]) for start, stop in self._action_spans()]

    def loss_mask(self) -> list[int]:
        """`tokens.policy_mask` without the tokens of `masked_actions`: what the loss is taken on."""
        mask = list(self.tokens.policy_mask)
        spans = self._action_spans()
        for turn in self.masked_actions:
            start, stop = spans[turn]
            mask[start:stop] = [0] * (stop - start)
        return mask

    def _action_spans(self) -> list[tuple[int, int]]:
        """Each turn's slice of `tokens.input_ids`, from after the previous action to its own last token."""
        ends = [end + 1 for end, _ in self.reward_positions]
        return list(zip([0, *ends[:-1]], ends))


@dataclass(frozen=True)
class PlayOptions:
    """How episodes are played, beside the engine, the gym (a `GymSpec`: its arguments, chat, system
    prompt and turn limit), its problems and the sampling parameters.

    `group_size` episodes play each problem (next to each other, sharing `Episode.group`); `max_context`
    ends an episode whose next turn would not fit the model; `format_reward_weight` adds that much of
    the gym's `format_reward` (the mean over an episode's turns) to what the policy is trained on.
    """

    group_size: int = 1
    max_context: int | None = None
    format_reward_weight: float = 0.0


@dataclass
class RolloutBatch:
    """The episodes a step trains on; with dynamic filtering (`ftkit/rl/dynamic_sampling.py`) also those
    it played and left out, and how many generation batches it took."""

    episodes: list[Episode]
    generated_tokens: int
    seconds: float
    context_cuts: int = 0
    model_scores: list[float] = field(default_factory=list)  # the reward model's, when one is used
    dropped: list[Episode] = field(default_factory=list)  # played, not trained on (groups of equal rewards)
    gen_batches: int | None = None  # generation batches played (None: no dynamic filtering)
    padded_groups: int = 0  # groups of equal rewards trained on because the cap left the batch short
    generate_seconds: float = 0.0  # of `seconds`, those inside the engine (the rest: the gym, tokenizing)
    replayed_seeds: list[int] | None = None  # problems played again (`ftkit/rl/replay.py`); None: replay is off

    @property
    def played(self) -> list[Episode]:
        """Every episode of the step: what its reward and success rate describe."""
        return self.episodes + self.dropped

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


class EnginePolicy:
    """A runner policy backed by a generation engine, recording each episode's tokens.

    The runner calls it once per turn with the observations of the episodes still running and their
    envs; the env object identifies the episode (its text alone would not: a group's episodes share
    it), so each env gets its own `EpisodeTokens`. On the first turn every episode is running, in the
    order of the seeds, which is the order `episodes()` returns them in.
    """

    def __init__(self, engine: Engine, tokenizer, params: SamplingParams, play: PlayOptions, gym: GymSpec):
        self.engine, self.tokenizer, self.params = engine, tokenizer, params
        self.chat, self.system_prompt = gym.chat, gym.system_prompt
        self.max_context, self.gym = play.max_context, gym.id
        self._episodes: dict[int, EpisodeTokens] = {}
        self._first_turns: dict[str, EpisodeTokens] = {}  # each distinct first observation, tokenized
        self._ends: dict[int, list[int]] = {}
        self._cut: dict[int, list[int]] = {}  # the turns whose action hit the length limit
        self._order: list[int] = []
        self.generated_tokens = 0
        self.generate_seconds = 0.0  # time inside engine.generate
        self.context_cuts = 0  # episodes ended early because the next turn would not fit the context

    def as_runner_policy(self) -> EnvPolicy:
        return EnvPolicy(self._act, name="engine")

    def _act(self, observations: list[str], envs: list) -> list[str | None]:
        prompts, playing = [], []
        for observation, env in zip(observations, envs):
            key = id(env)
            episode = self._episodes.get(key)
            if episode is None:
                episode, before = self._start(key, observation), 0
            else:
                before = len(episode.input_ids)
                episode.add_observation(observation)
            if not self._fits(episode):
                if not self._ends[key]:
                    raise TrainingError(
                        f"the first observation of {self.gym} plus the longest action "
                        f"({len(episode.input_ids)} + {self.params.max_new_tokens} tokens) does not fit the "
                        f"model's context of {self.max_context} tokens: lower the action length "
                        "(rollout.max_completion_length)")
                episode.truncate(before)  # the unanswered observation is not part of what is trained on
                self.context_cuts += 1
                continue
            prompts.append(episode.prompt_ids())
            playing.append(env)
        started = time.perf_counter()
        completions = self.engine.generate(prompts, self.params) if prompts else []
        self.generate_seconds += time.perf_counter() - started
        actions: dict[int, str] = {}
        for env, completion in zip(playing, completions):
            key = id(env)
            actions[key] = completion.text
            # The ids as sampled are what is trained on; the text is the message the history records.
            self._episodes[key].add_action(completion.token_ids, completion.logprobs, completion.text)
            self._ends[key].append(len(self._episodes[key].input_ids) - 1)
            if completion.finish_reason == "length":
                self._cut[key].append(len(self._ends[key]) - 1)
            self.generated_tokens += len(completion.token_ids)
        # None ends an episode whose conversation no longer fits the model (the runner marks it truncated).
        return [actions.get(id(env)) for env in envs]

    def _start(self, key: int, observation: str) -> EpisodeTokens:
        """A new episode's tokens after its first observation. The episodes of a group share it, so it is
        tokenized once per distinct text and copied (tokenizing each one took a sizeable part of a tiny
        model's rollout once sampling was fast)."""
        first = self._first_turns.get(observation)
        if first is None:
            first = EpisodeTokens(self.tokenizer, chat=self.chat, system_prompt=self.system_prompt)
            first.add_observation(observation)
            self._first_turns[observation] = first
        self._episodes[key] = episode = first.copy()
        self._ends[key], self._cut[key] = [], []
        self._order.append(key)
        return episode

    def _fits(self, episode: EpisodeTokens) -> bool:
        return self.max_context is None or len(episode.input_ids) + self.params.max_new_tokens <= self.max_context

    def episodes(self, trajectories: list[Trajectory], groups: list[int], format_weight: float = 0.0) -> list[Episode]:
        """Pair the recorded token sequences with the runner's trajectories (same order)."""
        if len(self._order) != len(trajectories):
            raise TrainingError(f"recorded {len(self._order)} episodes for {len(trajectories)} trajectories")
        episodes = []
        for key, trajectory, group in zip(self._order, trajectories, groups):
            ends = self._ends[key]
            # A turn's format reward counts 1/turns of the weight: the episode gets the weighted *mean*,
            # so that a longer episode does not earn more for being long.
            turns = max(1, len(trajectory.turns))
            rewards = [turn.reward + format_weight * turn.info.get("format_reward", 0.0) / turns
                       for turn in trajectory.turns]
            episodes.append(Episode(trajectory, self._episodes[key], group, list(zip(ends, rewards)),
                                    self._cut[key]))
        return episodes


def add_model_reward(batch: RolloutBatch, scorer, tokenizer, *, weight: float, verifier_weight: float) -> None:
    """Score each episode with a reward model and make that (plus `verifier_weight` x the gym's reward)
    what the policy is trained on. The score lands on the episode's last action; the gym's own reward
    stays in the trajectory, so the two are logged apart."""
    prompts, answers = [], []
    for episode in batch.episodes:
        if episode.tokens.chat:  # TRL's conversational format: the conversation before the last answer, and it
            messages = episode.tokens.messages
            prompts.append(messages[:-1])
            answers.append(messages[-1:])
        else:  # the text, which the scorer tokenizes with its own BOS and end-of-text
            prompts.append(tokenizer.decode(episode.tokens.input_ids, skip_special_tokens=True))
            answers.append("")
    scores = scorer.score(prompts, answers)
    for episode, score in zip(batch.episodes, scores):
        positions = [(pos, verifier_weight * reward) for pos, reward in episode.reward_positions]
        if positions:
            last, reward = positions[-1]
            positions[-1] = (last, reward + weight * score)
        episode.reward_positions = positions
    batch.model_scores = scores


def add_overlong_penalty(batch: RolloutBatch, max_length: int, buffer_len: int, factor: float) -> None:
    """DAPO's soft overlong punishment on each action's reward (`algorithms.soft_overlong_penalty`): an
    action within `buffer_len` tokens of `max_length` loses up to `factor`, in proportion to how far in."""
    for episode in batch.episodes:
        lengths = torch.tensor(episode.action_lengths())
        penalties = alg.soft_overlong_penalty(lengths, max_length, buffer_len, factor).tolist()
        episode.reward_positions = [(position, reward + penalty)
                                    for (position, reward), penalty in zip(episode.reward_positions, penalties)]


def collect(engine: Engine, tokenizer, gym: GymSpec | str, seeds: list[int], params: SamplingParams,
            play: PlayOptions | None = None, *, options: list[dict[str, Any] | None] | None = None,
            **play_fields: Any) -> RolloutBatch:
    """Play each seed `play.group_size` times (groups next to each other) and return the episodes.

        collect(engine, tok, GymSpec("arithmetic", {"digits": 2}), [3, 9], SamplingParams(max_new_tokens=8),
                PlayOptions(group_size=4))

    `gym` says how the policy sees the gym (`chat`, `system_prompt`) and when episodes are cut
    (`max_turns`). `options` are the gyms' reset options, one per seed (a curriculum's level).
    PlayOptions' fields may also be given one by one as keywords (`group_size=4`), as callers outside
    RL do.
    """
    spec = GymSpec.of(gym)
    play = replace(play, **play_fields) if play is not None else PlayOptions(**play_fields)
    policy = EnginePolicy(engine, tokenizer, params, play, spec)
    group_size = play.group_size
    episode_seeds = [seed for seed in seeds for _ in range(group_size)]
    groups = [g for g in range(len(seeds)) for _ in range(group_size)]
    episode_options = None if options is None else [o for o in options for _ in range(group_size)]
    # The engine policy renders the conversation itself (EpisodeTokens), so the runner hands it plain text.
    as_text = replace(spec, chat=False, system_prompt=None)
    started = time.perf_counter()
    trajectories = run_episodes(as_text, policy.as_runner_policy(), episode_seeds, options=episode_options,
                                reuse_envs=True)
    seconds = time.perf_counter() - started
    for trajectory in trajectories:
        trajectory.system_prompt = spec.system_prompt
    episodes = policy.episodes(trajectories, groups, play.format_reward_weight)
    return RolloutBatch(episodes, policy.generated_tokens, seconds, policy.context_cuts,
                        generate_seconds=policy.generate_seconds)
