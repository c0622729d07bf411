"""The examples SFT trains on, as the token ids the model sees and which of them it is trained on.

    ftkit data show recipes/gpt2_math.yaml --n 3     # what this module builds, with the trained tokens marked

`ftkit sft` and `ftkit data show` build them with one function, `training_set(recipe, model)`. The rows
(a gym's oracle examples, or a file's records) go through `ftkit.chat.Formatter`, so a model is trained
on exactly the ids that evaluation, collection and RL show it: with `gym.chat` a gym example is the
conversation [system prompt?, user: prompt, assistant: answer]; a `messages` file is a conversation
with every assistant message trained; a prompt/completion file is one prompt and its answer; a `text`
file is trained on every token.

ftkit tokenizes every example itself and hands TRL's SFTTrainer `input_ids` and `labels` (-100 on the
tokens not trained on), which TRL uses as they are: no chat template needs TRL's `{% generation %}`
markers, and `data.completion_only_loss: false` is simply labels equal to the ids.

An example longer than `train.max_length` is cut as TRL would cut it (`train.truncation_mode`) and
counted; one still longer than the model's context after that is an error naming its record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from data_tools.readers import Record
from ftkit.chat import Formatter, Tokenized
from ftkit.config import ModelConfig, Recipe
from ftkit.errors import ConfigError, DataError, ModelError

IGNORE = -100  # the label of a token the loss skips (PyTorch's cross-entropy ignore_index, and TRL's)


@dataclass
class DataModel:
    """What turns a recipe's text into its model's ids, found without loading the model's weights:
    `data_model(ModelConfig(name="scratch:tiny"))`."""

    tokenizer: Any
    context: int | None  # the longest sequence the model takes (None: its config does not say)
    used: str  # the model spec the tokenizer is from: the recipe's, or its fallback's
    train_overrides: dict[str, Any] = field(default_factory=dict)  # the fallback's `train:` settings


def data_model(cfg: ModelConfig) -> DataModel:
    """The tokenizer and context length of the model a recipe trains (its fallback's when the hub model
    cannot be had, as `ftkit.models.resolve_model` decides); a scratch preset is not built."""
    from ftkit.evaluate import context_length
    from ftkit.models import SCRATCH_PREFIX, _is_hub_id, load_tokenizer, resolve_model
    from ftkit.scratch import build_tokenizer, preset

    if cfg.name.startswith(SCRATCH_PREFIX):
        return DataModel(build_tokenizer(), preset(cfg.name.removeprefix(SCRATCH_PREFIX)).n_positions, cfg.name)
    try:
        path = resolve_model(cfg.model_copy(update={"fallback": None}), work_dir=".").path
    except ModelError:
        if cfg.fallback is None or not _is_hub_id(cfg.name):
            raise
        fallback = ModelConfig(name=cfg.fallback.name, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype)
        return dataclasses.replace(data_model(fallback), train_overrides=dict(cfg.fallback.train))
    return DataModel(load_tokenizer(path, cfg), context_length(_model_config(path, cfg)), cfg.name)


def _model_config(path: str, cfg: ModelConfig):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError):  # a LoRA adapter folder has no config.json of its own
        return None


@dataclass(frozen=True)
class Limits:
    """How long an example may be: cut to `max_length` (from the end with `keep_end`), then no longer
    than `context`. None: no limit."""

    max_length: int | None = None
    keep_end: bool = False
    context: int | None = None

    @classmethod
    def of(cls, recipe: Recipe, model: DataModel) -> Limits:
        """The limits `ftkit sft` trains with: TRL's SFTConfig defaults, the recipe's `train:`, the fallback's."""
        from ftkit.config import trl_config_class

        defaults = {f.name: f.default for f in dataclasses.fields(trl_config_class("sft"))}
        args = {**defaults, **recipe.train, **model.train_overrides}
        if args.get("packing"):  # TRL packs examples into max_length chunks instead of cutting them
            return cls()
        return cls(args.get("max_length"), args.get("truncation_mode") == "keep_end", model.context)


@dataclass
class Example:
    """One training example: its ids, 1 per trained id, and where it came from (a file's line, a gym's item)."""

    where: str
    input_ids: list[int]
    trained: list[int]
    length: int  # before the cut to train.max_length
    prompt: str | None = None  # a text prompt, kept out of the held-out problems

    @property
    def is_cut(self) -> bool:
        return self.length > len(self.input_ids)


@dataclass
class TrainingSet:
    """The examples of one dataset, ready for TRL: `training_set(recipe, data_model(recipe.model)).dataset()`."""

    examples: list[Example]
    limits: Limits = Limits()
    chat: bool = False  # whether the model is shown chat-template text (gym.chat, or a messages dataset)
    completion_only_loss: bool = True  # False: every token is trained on

    @property
    def prompts(self) -> set[str]:
        return {e.prompt for e in self.examples if e.prompt is not None}

    def labels(self, example: Example) -> list[int]:
        if not self.completion_only_loss:
            return list(example.input_ids)
        return [i if t else IGNORE for i, t in zip(example.input_ids, example.trained)]

    def kept(self) -> list[Example]:
        """The examples TRL trains on: it drops those left with no trained token by the cut."""
        return [e for e in self.examples if any(label != IGNORE for label in self.labels(e))]

    def dataset(self):
        """A `datasets.Dataset` of `input_ids` and `labels`, which TRL's SFTTrainer takes as they are."""
        from datasets import Dataset

        kept = self.kept()
        if not kept:
            raise DataError(f"none of the {len(self.examples)} examples keeps a trained token after the cut to "
                            f"train.max_length={self.limits.max_length}: raise train.max_length "
                            "(`ftkit data show` shows the examples)")
        return Dataset.from_dict({"input_ids": [e.input_ids for e in kept], "labels": [self.labels(e) for e in kept]})

    def cut_note(self) -> str | None:
        """One line saying how many examples train.max_length cuts, or None when it cuts none."""
        cut = sum(e.is_cut for e in self.examples)
        if not cut:
            return None
        dropped = len(self.examples) - len(self.kept())
        lost = f" ({dropped} of them lose every trained token and are left out)" if dropped else ""
        return (f"{cut} of {len(self.examples)} examples are cut by train.max_length={self.limits.max_length}"
                f"{lost}, see ftkit data show")


def training_set(recipe: Recipe, model: DataModel, path: str | None = None) -> TrainingSet:
    """The examples `ftkit sft` trains on (`path`: another file of the recipe's, such as data.eval_path).

        examples = training_set(recipe, data_model(recipe.model)).examples
    """
    rows = recipe_rows(recipe, path)
    formatter, limits = recipe_formatter(recipe, model.tokenizer), Limits.of(recipe, model)
    chat = formatter.chat or any("messages" in r.data for r in rows)
    return TrainingSet(tokenize_rows(rows, formatter, limits), limits, chat, recipe.data.completion_only_loss)


def recipe_formatter(recipe: Recipe, tokenizer) -> Formatter:
    """Text to ids as the recipe's gym section says: chat (with its system prompt) or plain text."""
    gym = recipe.gym
    return Formatter(tokenizer, chat=bool(gym and gym.chat), system_prompt=gym.system_prompt if gym else None)


def recipe_rows(recipe: Recipe, path: str | None = None) -> list[Record]:
    """A recipe's training rows, in TRL's column names: from `path`, else data.path, else the gym's oracle."""
    path = path or recipe.data.path
    if path is None:
        return gym_rows(recipe)
    from data_tools.formats import sft_records
    from data_tools.readers import load_records

    d = recipe.data
    return sft_records(load_records(path), d.format, prompt_field=d.prompt_field, completion_field=d.completion_field,
                       messages_field=d.messages_field, text_field=d.text_field)


def gym_rows(recipe: Recipe) -> list[Record]:
    """The gym's oracle examples the recipe trains on (data.train_size of them, from gym.train_seed)."""
    from data_tools.gym_data import gym_examples

    gym, ev = recipe.gym, recipe.eval
    if gym.train_seed == ev.seed and (ev.gym is None or ev.gym.spec().full_id == gym.spec().full_id):
        raise ConfigError(f"gym.train_seed and eval.seed are both {gym.train_seed}: give the held-out "
                          "problems a seed of their own")
    return [Record({"prompt": r["prompt"], "completion": r["completion"]},
                   f"{gym.id} (gym.train_seed {r['seed']}) item {r['index']}")
            for r in gym_examples(gym.spec(), recipe.data.train_size, gym.train_seed)]


def tokenize_rows(rows: list[Record], formatter: Formatter, limits: Limits = Limits()) -> list[Example]:
    """Each row as ids and its trained mask, cut to `limits.max_length`; a `DataError` names the row
    whose conversation the chat template rejects, or that is still longer than the model's context."""
    examples = []
    for row in rows:
        try:
            tokens = tokenize_row(row.data, formatter)
        except DataError as exc:
            raise DataError(f"{row.where}: {exc}") from None
        ids, trained = _cut(tokens, limits)
        if limits.context is not None and len(ids) > limits.context:
            fix = (f"train.max_length={limits.max_length} does not cut it to fit: set train.max_length="
                   f"{limits.context} or less" if limits.max_length else f"set train.max_length={limits.context}")
            raise DataError(f"{row.where}: the example is {len(ids)} tokens, longer than the model's context of "
                            f"{limits.context} tokens; {fix}, or shorten it")
        prompt = row.data.get("prompt")
        examples.append(Example(row.where, ids, trained, len(tokens.input_ids),
                                prompt if isinstance(prompt, str) else None))
    return examples


def tokenize_row(data: dict[str, Any], formatter: Formatter) -> Tokenized:
    """One row (TRL's column names: messages, prompt/completion, or text) as ids and its trained mask."""
    if "messages" in data:
        return formatter.conversation(data["messages"])
    if "text" in data:  # plain language modelling: every token, and the end of the text
        tokenizer = formatter.tokenizer
        ids = tokenizer(data["text"])["input_ids"] + [tokenizer.eos_token_id]
        return Tokenized(ids, [1] * len(ids))
    return formatter.example(data["prompt"], data["completion"])


def _cut(tokens: Tokenized, limits: Limits) -> tuple[list[int], list[int]]:
    ids, trained, n = tokens.input_ids, tokens.trained, limits.max_length
    if n is None or len(ids) <= n:
        return ids, trained
    return (ids[-n:], trained[-n:]) if limits.keep_end else (ids[:n], trained[:n])
