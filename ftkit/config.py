"""Recipes: typed configuration loaded from YAML, with dotted overrides from the command line.

    ftkit sft recipes/gpt2_math.yaml method=lora train.learning_rate=1e-4 output_dir=/tmp/x

A recipe is validated by pydantic models (one field, one documented meaning). OmegaConf parses the
`key.sub=value` overrides with YAML typing and merges them into the file; pydantic then rejects unknown
keys (with a did-you-mean), wrong types and out-of-range values, each as one line naming the key. The
`train:` section passes straight through to TRL's `SFTConfig`, so it is checked against that dataclass's
own fields and types rather than a copy of them that would drift.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ftkit.errors import ConfigError, did_you_mean
from ftkit.trackers import parse_names
from gyms.spec import GymSpec


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


# `report_to`, the same key in SFT, DPO, RM and RL recipes (ftkit/trackers.py): a list, or "a,b", or "none".
ReportTo = Annotated[list[str], BeforeValidator(parse_names)]
REPORT_TO_HELP = ("Experiment trackers that also get the metrics, with the resolved recipe as the run's config: "
                  "tensorboard (into the run folder's tensorboard/), trackio, wandb, mlflow, comet_ml; default "
                  "none (metrics.jsonl and the curves only). --report-to on the command line overrides it.")


class FallbackConfig(Section):
    name: str = Field(description="Model used when `model.name` cannot be fetched (offline): e.g. scratch:tiny.")
    train: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the `train:` section applied only with the fallback."
    )


class ModelConfig(Section):
    name: str = Field(description="A Hugging Face hub id (gpt2), a local model folder, a .gguf file, "
                      "package:<python package> (the model it ships) or scratch:<preset>.")
    gguf_file: str | None = Field(
        None, description="A .gguf file inside the folder or hub repo `name`; dequantised once into a cached folder."
    )
    revision: str | None = Field(None, description="Hub branch, tag or commit to load.")
    trust_remote_code: bool = Field(False, description="Run code shipped with a hub model. Off unless you trust it.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights' dtype when loading; auto keeps float32 on CPU."
    )
    fallback: FallbackConfig | None = Field(None, description="Used when `name` cannot be fetched.")


class LoraSection(Section):
    r: int = Field(16, gt=0, description="Rank of the low-rank update.")
    alpha: int = Field(32, gt=0, description="Scale: the update is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter's input.")
    target_modules: list[str] | str = Field("all-linear", description="Modules that get adapters.")
    modules_to_save: list[str] | None = Field(None, description="Modules trained in full beside the adapters.")


class QuantizationSection(Section):
    bits: Literal[4, 8] = Field(4, description="4 (NF4/FP4, QLoRA) or 8 (LLM.int8) bit base weights.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; NF4 is QLoRA's.")
    double_quant: bool = Field(True, description="Quantise the quantisation constants too (saves ~0.4 bit/param).")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Dtype 4-bit weights are dequantised to for matmuls; auto: bf16 on GPU, else fp32."
    )


class GymSection(Section):
    """The recipe's task, the same section in every kind of recipe: SFT trains on its oracle's
    demonstrations (unless `data.path` names a file), RL plays it, and evaluation scores on it."""

    id: str = Field(description="Gym id or short name (arithmetic, guess_number, rg:leg_counting...).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Arguments of the gym's constructor.")
    chat: bool = Field(False, description="Wrap observations and actions in the tokenizer's chat template.")
    system_prompt: str | None = Field(None, description="With chat: the first message of every episode (or SFT example).")
    max_turns: int | None = Field(None, gt=0, description="Cut multi-turn episodes after this many actions.")
    train_seed: int = Field(0, ge=0, description="Seed of the training problems (held-out ones are excluded).")

    @model_validator(mode="after")
    def _system_prompt_needs_chat(self) -> GymSection:
        if self.system_prompt is not None and not self.chat:
            raise ValueError("gym.system_prompt needs gym.chat: true (plain text has nowhere to put it)")
        return self

    def spec(self) -> GymSpec:
        """The task as the runner, evaluation, collection and rollouts take it (the seed stays here)."""
        return GymSpec(self.id, dict(self.kwargs), chat=self.chat, system_prompt=self.system_prompt,
                       max_turns=self.max_turns)


class DataConfig(Section):
    train_size: int = Field(10_000, gt=0, description="Number of the gym's oracle examples to train on.")
    path: str | None = Field(None, description="Training file: .jsonl, .json, .csv, .parquet or a datasets folder "
                                               "(instead of the gym's oracle).")
    eval_path: str | None = Field(None, description="Held-out file in the same format, for eval loss and accuracy.")
    format: Literal["auto", "prompt_completion", "messages", "text"] = Field(
        "auto", description="Dataset format; auto looks at the first row's keys."
    )
    prompt_field: str = Field("prompt", description="Column holding the prompt.")
    completion_field: str = Field("completion", description="Column holding the completion.")
    messages_field: str = Field("messages", description="Column holding chat messages.")
    text_field: str = Field("text", description="Column holding plain text (language-modelling format).")
    completion_only_loss: bool = Field(True, description="Loss on completions / assistant turns only.")


class StopCondition(Section):
    """Held-out accuracy, on all problems or on one difficulty, inside a band."""

    min_accuracy: float = Field(ge=0, le=1, description="Met at or above this accuracy.")
    max_accuracy: float = Field(1.0, ge=0, le=1, description="Top of the band: above it, a warning says it was overshot.")
    difficulty: dict[str, Any] = Field(
        default_factory=dict,
        description='Only the held-out problems of this difficulty, e.g. {op: "-"}; default all of them.',
    )

    @model_validator(mode="after")
    def _band(self) -> StopCondition:
        if self.min_accuracy > self.max_accuracy:
            raise ValueError(f"min_accuracy {self.min_accuracy} is above max_accuracy {self.max_accuracy}")
        return self


class EvalConfig(Section):
    gym: GymSection | None = Field(
        None, description="Another gym, or other settings, to score on; default the recipe's gym (or, for a "
                          "folder from `ftkit collect`, the gym it came from)."
    )
    n: int = Field(500, ge=0, description="Held-out problems scored after training (0 turns evaluation off).")
    seed: int = Field(1, ge=0, description="Seed of the held-out problems (training prompts are excluded).")
    batch_size: int = Field(128, gt=0, description="Prompts per generate() call.")
    max_new_tokens: int = Field(16, gt=0, description="Longest answer generated.")
    samples: int = Field(20, ge=0, description="Sample generations written to the run folder.")
    every_steps: int | None = Field(None, gt=0, description="Also score held-out accuracy every N steps.")
    during_training_n: int = Field(200, gt=0, description="Problems scored at each of those points.")
    stop_when: list[StopCondition] = Field(
        default_factory=list,
        description="End training at the first evaluation where every condition holds (needs every_steps): "
        "e.g. to leave a model half-trained, as the start of an RL run that learns best between 20% and 70%.",
    )

    @field_validator("stop_when", mode="before")
    @classmethod
    def _one_condition_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _stop_needs_evaluations(self) -> EvalConfig:
        if self.stop_when and not self.every_steps:
            raise ValueError("eval.stop_when needs eval.every_steps: it is checked at those evaluations")
        if self.gym is not None and "train_seed" in self.gym.model_fields_set:
            raise ValueError("eval.gym.train_seed: held-out problems are drawn from eval.seed")
        # as `_has_difficulty` matches them: values as text, so {digits: 3} and {digits: "3"} are one
        watched = [tuple(sorted((k, str(v)) for k, v in c.difficulty.items())) for c in self.stop_when]
        if len(set(watched)) < len(watched):
            raise ValueError("eval.stop_when: two conditions watch the same difficulty; merge them into one band")
        return self


class Recipe(Section):
    """A supervised fine-tuning recipe. Every field is documented once, here."""

    name: str = Field(description="Run name; the run folder defaults to runs/<name>.")
    kind: Literal["sft", "dpo", "rm"] = Field(
        "sft", description="sft (ftkit sft), dpo (ftkit dpo: preference pairs) or rm (ftkit rm: a reward model)."
    )
    output_dir: str | None = Field(None, description="Run folder (default runs/<name>).")
    method: Literal["full", "lora", "qlora"] = Field("full", description="What trains: all weights or adapters.")
    seed: int = Field(0, ge=0, description="Seed for weights' init, data order and dropout.")
    report_to: ReportTo = Field(default_factory=list, description=REPORT_TO_HELP)
    model: ModelConfig
    gym: GymSection | None = Field(
        None, description="The task: trained on from its oracle (without data.path) and scored on."
    )
    data: DataConfig = Field(default_factory=DataConfig)
    train: dict[str, Any] = Field(
        default_factory=dict, description="Passed to TRL's SFTConfig, DPOConfig or RewardConfig (by kind)."
    )
    lora: LoraSection = Field(default_factory=LoraSection)
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    merge_adapter: bool = Field(False, description="Also save LoRA merged into a plain model folder.")
    reward_head: Literal["linear", "likelihood"] = Field(
        "linear", description="ftkit rm: how the model scores an answer. linear: a new one-number head on the last "
        "token (TRL's RewardTrainer, as InstructGPT). likelihood: the model's own log-likelihood of the text, "
        "no new head (CPO's reference-free implicit reward); for tasks the body can already do, like arithmetic.",
    )

    @model_validator(mode="after")
    def _reward_head_is_for_rm(self) -> Recipe:
        if self.reward_head != "linear" and self.kind != "rm":
            raise ValueError(f"reward_head: {self.reward_head} is for reward models (kind: rm), not kind: {self.kind}")
        return self

    @model_validator(mode="after")
    def _data_source(self) -> Recipe:
        if self.gym is None and self.data.path is None:
            raise ValueError("set gym (examples from its oracle) or data.path (a dataset file)")
        # SFT shows the gym's text through the chat template with gym.chat; DPO and RM train on TRL's plain
        # text; multi-turn episodes are for ftkit rl.
        not_here = ("max_turns",) if self.kind == "sft" else ("chat", "system_prompt", "max_turns")
        for gym, where in ((self.gym, "gym"), (self.eval.gym, "eval.gym")):
            playing = [k for k in not_here if gym and getattr(gym, k)]
            if "max_turns" in playing:
                raise ValueError(f"{where}.max_turns: ftkit {self.kind} trains and scores on single-turn problems "
                                 "(max_turns is for ftkit rl)")
            if playing:
                raise ValueError(f"{where}.{playing[0]}: ftkit {self.kind} trains and scores on the gym's plain text "
                                 "(chat and system_prompt are for ftkit sft and ftkit rl)")
        return self

    @property
    def from_gym(self) -> bool:
        """Whether the training examples are the gym's oracle's (no data.path)."""
        return self.data.path is None

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


# Keys of SFTConfig that ftkit sets itself from other recipe fields.
_RESERVED_TRAIN_KEYS = {
    "output_dir": "set the top-level output_dir instead",
    "seed": "set the top-level seed instead",
    "completion_only_loss": "set data.completion_only_loss instead",
    "model_init_kwargs": "use the model section (model.dtype, model.revision) instead",
    "report_to": "set the top-level report_to instead (or --report-to), which ftkit rl takes too",
}


# The recipes shipped beside the package (an editable install or a clone run from another folder).
SHIPPED_RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def find_recipe(filename: str) -> Path | None:
    """A shipped recipe: recipes/<filename> in the working folder, else beside the package."""
    for folder in (Path("recipes"), SHIPPED_RECIPES):
        if (folder / filename).is_file():
            return folder / filename
    return None


def load_recipe(path: str | Path, overrides: list[str] | None = None, kind: str = "sft") -> Recipe:
    """Load a YAML recipe, apply `key.sub=value` overrides, and validate everything.

    `kind` is the command that runs it (sft, dpo or rm): a recipe written for another one is an error
    that names the right command.
    """
    raw = read_recipe_dict(path, overrides)
    if "algo" in raw:
        raise ConfigError(f"{path} is an RL recipe (it has `algo:`): run it with `ftkit rl {path}`")
    recipe_kind = raw.get("kind", "sft")
    if recipe_kind != kind and recipe_kind in TRL_CONFIGS:
        raise ConfigError(f"{path} is a {recipe_kind} recipe (kind: {recipe_kind}): run it with "
                          f"`ftkit {recipe_kind} {path}`")
    return validate_recipe(raw)


# The TRL config class that each kind of recipe's `train:` section is passed to.
TRL_CONFIGS = {"sft": "SFTConfig", "dpo": "DPOConfig", "rm": "RewardConfig"}


def read_recipe_dict(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """A recipe file as a plain dict with the overrides merged in, not yet validated."""
    raw = _read_yaml(Path(path))
    return merge_overrides(raw, overrides) if overrides else raw


def validate_section(raw: dict[str, Any], schema: type[BaseModel]):
    """Validate `raw` against a pydantic recipe model; the first problem becomes one ConfigError line."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, schema)) from None


def validate_recipe(raw: dict[str, Any]) -> Recipe:
    """Validate a recipe given as a plain dict (what the YAML file holds)."""
    reject_moved_keys(raw, MOVED_GYM_KEYS, "one gym section for every recipe kind")
    recipe = validate_section(raw, Recipe)
    recipe.train = validate_train_args(recipe.train, "train", recipe.kind)
    if recipe.model.fallback is not None:
        fallback = recipe.model.fallback
        fallback.train = validate_train_args(fallback.train, "model.fallback.train", recipe.kind)
    return recipe


# Where the gym keys of SFT, DPO and RM recipes went when every kind of recipe got one `gym:` section.
MOVED_GYM_KEYS = {
    "data.gym": "gym.id",
    "data.gym_kwargs": "gym.kwargs",
    "data.train_seed": "gym.train_seed",
    "eval.gym": "eval.gym.id",  # a gym id there is the old spelling; a mapping is the new section
    "eval.gym_kwargs": "eval.gym.kwargs",
}


def reject_moved_keys(raw: dict[str, Any], moved: dict[str, str], why: str,
                      notes: dict[str, str] | None = None) -> None:
    """A key of an earlier recipe shape (`moved`: "section.old" -> its new key) is a one-line error that
    names the new key, rather than an unknown-key error that leaves the user guessing."""
    for old, new in moved.items():
        section, key = old.split(".")
        values = raw.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        if new.startswith(f"{old}.") and (values[key] is None or isinstance(values[key], dict)):
            continue  # the key is now a section, and this is one
        raise ConfigError(f'recipe key "{old}" is now "{new}" ({why})' + (notes or {}).get(old, ""))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"no such recipe file: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping of keys to values, got {type(raw).__name__}")
    return raw


def merge_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    try:
        merged = OmegaConf.merge(OmegaConf.create(raw), parse_key_values(overrides))
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot apply overrides {' '.join(overrides)}: {str(exc).splitlines()[0]}") from None
    except TypeError:  # OmegaConf's word for `key.0.sub=value` into a list: dotted keys reach mappings only
        raise ConfigError(f"cannot apply overrides {' '.join(overrides)}: a dotted key cannot reach inside a list; "
                          "give the whole list, e.g. 'eval.stop_when=[{min_accuracy: 0.4}]'") from None


def _explain(exc: ValidationError, root: type[BaseModel]) -> str:
    """Turn pydantic's first error into one line that names the key and says what was expected."""
    # An unknown key usually explains the "missing" error beside it (a typo), so report it first.
    err = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or "recipe"
    if err["type"] == "extra_forbidden":
        known = _fields_at(root, loc[:-1])
        return f'unknown recipe key "{key}"{did_you_mean(loc[-1], known)}; known keys here: {", ".join(known)}'
    if err["type"] == "missing":
        return f'missing recipe key "{key}"'
    got = err.get("input")
    got_text = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    message = err["msg"].removeprefix("Value error, ")
    return f'recipe key "{key}": {message}{got_text}'


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the section reached by following `loc` from `model` (for did-you-mean)."""
    for part in loc:
        if part.isdigit():  # an item of a list of sections (eval.stop_when.0): the section is the item's type
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        inner = next((t for t in typing.get_args(field.annotation) or [field.annotation] if _is_section(t)), None)
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


# ---------------------------------------------------------------------------------------------------
# The `train:` section, checked against TRL's SFTConfig (or DPOConfig, RewardConfig)


def trl_config_class(kind: str = "sft"):
    import trl

    return getattr(trl, TRL_CONFIGS[kind])


def sft_config_fields(kind: str = "sft") -> dict[str, Any]:
    """The TRL config's field names (SFTConfig for kind sft) mapped to their resolved type annotations."""
    config = trl_config_class(kind)
    hints = typing.get_type_hints(config)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config) if f.init}


def validate_train_args(train: dict[str, Any], where: str, kind: str = "sft") -> dict[str, Any]:
    """Check each key of a `train:` mapping against TRL's config: known name, right type, sane range."""
    fields = sft_config_fields(kind)
    checked = {}
    for key, value in train.items():
        if key in _RESERVED_TRAIN_KEYS:
            raise ConfigError(f'recipe key "{where}.{key}" is set by ftkit: {_RESERVED_TRAIN_KEYS[key]}')
        if key not in fields:
            raise ConfigError(
                f'unknown recipe key "{where}.{key}"{did_you_mean(key, fields)} '
                f"(the train section takes TRL {TRL_CONFIGS[kind]}'s fields)"
            )
        checked[key] = _check_type(f"{where}.{key}", fields[key], value)
        _check_range(f"{where}.{key}", key, checked[key])
    return checked


def _check_type(key: str, annotation: Any, value: Any) -> Any:
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        expected = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        reason = exc.errors()[0]["msg"]
        raise ConfigError(f'recipe key "{key}": expected {expected}, got {value!r} ({reason})') from None


# Ranges that SFTConfig does not check itself but that make a run meaningless.
_POSITIVE = {"learning_rate", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
             "gradient_accumulation_steps", "logging_steps", "save_steps", "eval_steps", "max_length"}
_NON_NEGATIVE = {"weight_decay", "warmup_steps", "max_grad_norm", "save_total_limit"}


def _check_range(key: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if name in _POSITIVE and value <= 0:
        raise ConfigError(f'recipe key "{key}": must be > 0, got {value}')
    if name in _NON_NEGATIVE and value < 0:
        raise ConfigError(f'recipe key "{key}": must be >= 0, got {value}')


def recipe_to_yaml(recipe: BaseModel) -> str:
    """The resolved recipe (SFT or RL) as YAML, for the run folder (every default filled in)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def parse_key_values(items: list[str]) -> dict[str, Any]:
    """`["digits=4", "ops=[+,-]"]` -> `{"digits": 4, "ops": ["+", "-"]}`, values typed as YAML."""
    for item in items:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f'"{item}" is not key=value (e.g. train.learning_rate=1e-4)')
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(items))  # type: ignore[return-value]
    except yaml.YAMLError as exc:  # a value that is not valid YAML, e.g. {a:1} without a space
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"cannot parse {' '.join(items)}: a value is not valid YAML ({problem}); "
                          "write mappings with a space after each colon, e.g. gym.kwargs={digits: 2}") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse {' '.join(items)}: {str(exc).splitlines()[0]}") from None


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"train.learning_rate": 1e-4, ...}: a recipe (or any nested mapping) as dotted keys, for a tracker's
    config or a report's recipe diff; lists and empty mappings become JSON text, as trackers take single
    values only.

        flatten({"train": {"learning_rate": 1e-4}, "stop": ["."]})   # {"train.learning_rate": 0.0001, "stop": '["."]'}
    """
    if isinstance(tree, dict) and (tree or not prefix):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    scalar = isinstance(tree, (str, int, float, bool)) or tree is None
    return {prefix: tree if scalar else json.dumps(tree)}
