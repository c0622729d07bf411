"""Experiment trackers for every command: a recipe's `report_to` (or `--report-to`) names them.

    ftkit sft recipes/gpt2_math.yaml --report-to tensorboard     # then: tensorboard --logdir runs/
    ftkit rl --gym arithmetic report_to=[trackio,wandb]           # then: trackio show --project ftkit

ftkit's own files (metrics.jsonl, the curves) are written whatever the recipe says; a tracker gets a copy
of the same numbers in a tool made for looking at them. `ftkit sft`, `dpo` and `rm` hand the names to TRL,
whose trainer logs through transformers' integration callbacks; `ftkit rl` logs exactly what
metrics.jsonl holds, at the same steps, through Accelerate's trackers. Either way a run is named after
the recipe (`name`, TRL's `run_name`), carries the resolved recipe as its config (flat keys,
`recipe.train.learning_rate`), and lands in project "ftkit" (or the tracker's own environment variable:
WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME, COMET_PROJECT_NAME). TensorBoard writes into the run folder
(`runs/NAME/tensorboard/`); the others keep their own stores. A name that is no tracker, or one whose
library is missing, is a one-line error before the run folder is made.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from ftkit.errors import ConfigError, did_you_mean

PROJECT = "ftkit"
TENSORBOARD_DIR = "tensorboard"  # inside the run folder

# The trackers both TRL (transformers' integration callbacks) and Accelerate know:
# name -> (the module it needs, the pip install that brings it).
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "trackio": ("trackio", "trackio"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", "comet-ml"),
}

# Where a tracker reads its project when transformers' callback starts the run (Trainer has no argument
# for it, but trackio's: TrainingArguments.project); ftkit rl reads the same, so both land together.
PROJECT_ENV = {"wandb": "WANDB_PROJECT", "mlflow": "MLFLOW_EXPERIMENT_NAME", "comet_ml": "COMET_PROJECT_NAME"}


def parse_names(value: Any) -> list[str]:
    """`report_to` as given (a list, "tensorboard,wandb", "none" or nothing) -> checked tracker names.

        parse_names("tensorboard, trackio")   # ["tensorboard", "trackio"]
    """
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        name = str(item).strip()
        if name in ("", "none"):
            continue
        if name not in TRACKERS:
            raise ValueError(f'unknown tracker "{name}"{did_you_mean(name, list(TRACKERS))}; '
                             f"known: {', '.join(TRACKERS)} (or none)")
        if name not in names:
            names.append(name)
    return names


def installed(module: str) -> bool:
    """Whether a tracker's library can be imported (without importing it: some take seconds)."""
    return importlib.util.find_spec(module) is not None


def require(names: list[str]) -> None:
    """A one-line error naming the `pip install` for the first tracker whose library is missing."""
    for name in names:
        module, package = TRACKERS[name]
        if not installed(module):
            raise ConfigError(f"report_to {name}: the {module} package is not installed; pip install {package} "
                              f"(or drop {name} from report_to)")


def recipe_config(recipe) -> dict[str, Any]:
    """The resolved recipe as a tracker's config: flat `recipe.section.key` keys, lists as JSON text
    (TensorBoard's hyperparameters and MLflow's parameters take single values only)."""
    from ftkit.config import flatten  # here, not at the top: ftkit.config imports this module

    return flatten(recipe.model_dump(mode="json"), "recipe")


def numeric(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics.jsonl record, without its step: what trackers plot."""
    return {k: v for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def project(name: str) -> str:
    return os.environ.get(PROJECT_ENV.get(name, ""), PROJECT)


# ---------------------------------------------------------------------------------------------------
# ftkit sft, dpo, rm: TRL's report_to, and the recipe as the run's config


def trl_settings(recipe) -> dict[str, Any]:
    """TRL config arguments for the recipe's trackers ({"report_to": "none"} without any).

    Also sets the project's environment variable of each tracker that reads it there (unless the user
    set it): transformers' callbacks read it when the trainer is made."""
    names = recipe.report_to
    if not names:
        return {"report_to": "none"}
    for name in names:
        if name in PROJECT_ENV:
            os.environ.setdefault(PROJECT_ENV[name], PROJECT)
    return {"report_to": list(names), "run_name": recipe.name, "project": PROJECT}


def attach_to_trainer(trainer, recipe, resumed_at: int = 0) -> None:
    """After TRL's trainer is made: TensorBoard into runs/NAME/tensorboard/ (transformers would pick
    checkpoints/runs/DATE_HOST/), and the recipe added to each tracker's config when training begins.
    `resumed_at`: the step of the checkpoint a --resume starts from (see `purge_after`)."""
    if not recipe.report_to:
        return
    from transformers import TrainerCallback

    config = recipe_config(recipe)
    if "tensorboard" in recipe.report_to and trainer.is_world_process_zero():
        from transformers.integrations import TensorBoardCallback

        tracker = tensorboard_tracker(recipe, **purge_after(resumed_at))
        tracker.start()
        tracker.store_init_configuration(config)  # the same hyperparameters and hparams.yml as ftkit rl's
        trainer.pop_callback(TensorBoardCallback)
        trainer.add_callback(TensorBoardCallback(tb_writer=tracker.tracker))

    class RecipeAsConfig(TrainerCallback):
        """Runs after the integration callbacks (added later), so each tracker's run exists by then."""

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                for name in recipe.report_to:
                    _CONFIG_WRITERS.get(name, lambda _: None)(config)

    trainer.add_callback(RecipeAsConfig())


def log_to_trainer_trackers(trainer, record: dict[str, Any]) -> None:
    """An evaluation ftkit made during training (held-out accuracy), to the trackers TRL's trainer logs to.

    Through each integration callback's on_log, as the trainer's own evaluation is, so it lands in the
    same run under `eval/...` (transformers writes `eval_x` as `eval/x`). Only while training: at its
    end the callbacks close their runs (trackio, MLflow), so the final evaluation is in metrics.jsonl
    and report.html only.
    """
    if not trainer.is_world_process_zero():
        return
    logs = {f"eval_{key}": value for key, value in numeric(record).items() if key != "epoch"}
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__module__.startswith("transformers.integrations"):
            callback.on_log(trainer.args, trainer.state, trainer.control, logs=dict(logs))


def _wandb_config(config: dict[str, Any]) -> None:
    import wandb

    wandb.config.update(config, allow_val_change=True)


def _trackio_config(config: dict[str, Any]) -> None:
    import trackio

    trackio.config.update(config)  # a plain dict once trackio.init has run


def _mlflow_config(config: dict[str, Any]) -> None:
    import mlflow

    items = list(config.items())
    batch = mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH  # log_params takes at most this many at once
    for start in range(0, len(items), batch):
        mlflow.log_params(dict(items[start: start + batch]))


def _comet_config(config: dict[str, Any]) -> None:
    import comet_ml

    experiment = comet_ml.get_running_experiment()
    if experiment is not None:
        experiment.log_parameters(config)


# TensorBoard's is written when the writer is made (attach_to_trainer).
_CONFIG_WRITERS = {"wandb": _wandb_config, "trackio": _trackio_config, "mlflow": _mlflow_config,
                   "comet_ml": _comet_config}


# ---------------------------------------------------------------------------------------------------
# ftkit rl: Accelerate's trackers


def tensorboard_tracker(recipe, **writer_kwargs):
    """Accelerate's TensorBoard tracker writing into runs/NAME/tensorboard/ (its run name is the folder
    it makes under the logging folder); `writer_kwargs` go to torch's SummaryWriter."""
    from accelerate.tracking import TensorBoardTracker

    return TensorBoardTracker(TENSORBOARD_DIR, str(recipe.run_dir), **writer_kwargs)


def purge_after(step: int) -> dict[str, int]:
    """SummaryWriter's purge_step for a run resumed from the checkpoint at `step`: the killed run may have
    logged steps after its checkpoint, which the resumed one logs again; TensorBoard hides the old ones
    instead of drawing two values at those steps."""
    return {"purge_step": step + 1} if step > 0 else {}


def accelerate_trackers(recipe) -> list | None:
    """`Accelerator(log_with=...)` for the recipe's trackers, each named after the run; None without any.

    Checks first that every tracker's library is there: Accelerate would silently leave one out."""
    names = recipe.report_to
    if not names:
        return None
    require(names)
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    run_name = {"wandb": {"name": recipe.name}, "trackio": {"name": recipe.name},
                "mlflow": {"run_name": recipe.name}}
    return [tensorboard_tracker(recipe) if name == "tensorboard" else
            LOGGER_TYPE_TO_CLASS[name](project(name), **run_name.get(name, {})) for name in names]


def start(accelerator, recipe, resumed_at: int = 0) -> None:
    """Start the Accelerator's trackers with the recipe as their config (nothing without trackers);
    `resumed_at`: the step of the checkpoint a --resume starts from (see `purge_after`)."""
    if not accelerator.log_with:
        return
    from accelerate.tracking import TensorBoardTracker

    for tracker in accelerator.log_with:
        if isinstance(tracker, TensorBoardTracker):  # its SummaryWriter is made by init_trackers
            tracker.init_kwargs.update(purge_after(resumed_at))
    accelerator.init_trackers(PROJECT, config=recipe_config(recipe))


def log(accelerator, record: dict[str, Any]) -> None:
    """A metrics.jsonl record's numbers, at its step, to every tracker (main process only, as Accelerate does)."""
    if accelerator.trackers:
        accelerator.log(numeric(record), step=record["step"])
