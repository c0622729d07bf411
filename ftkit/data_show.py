"""`ftkit data show`: the examples SFT trains on, as the model sees them, with the trained tokens marked.

    ftkit data show recipes/gpt2_math.yaml --n 3
    ftkit data show recipes/gpt2_math.yaml train.max_length=12      # what a shorter cut would do
    ftkit data show data/chats.jsonl --model runs/smol/model --n 2

For a recipe the examples are built by the very function `ftkit sft` trains on
(`ftkit.sft_data.training_set`), from its model's tokenizer alone: no weights are loaded. For a dataset
file or folder, `--model` names the model whose tokenizer and chat template to use. Trained tokens are
printed green and bold and the others dim; where the output is not a terminal, trained spans are
marked ⟦like this⟧ instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from ftkit.errors import ConfigError
from ftkit.sft_data import IGNORE, Example, Limits, TrainingSet

RECIPE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ShowOptions:
    """What to show, and for a dataset (not a recipe, which says it itself) how to tokenize it."""

    n: int = 3  # examples printed
    model: str | None = None  # a dataset's model: its tokenizer and chat template
    chat: bool = False  # a dataset's prompt/completion rows through the chat template
    system_prompt: str | None = None  # with chat: the system message before each prompt
    max_length: int | None = None  # cut each example as train.max_length would


def show_data(target: str, overrides: list[str] | None = None, options: ShowOptions = ShowOptions(),
              console: Console | None = None) -> TrainingSet:
    """Print the first `options.n` training examples of a recipe or dataset; returns all of them.

        ftkit data show recipes/gpt2_math.yaml --n 3

        examples = ftkit.data_show.show_data("recipes/gpt2_math.yaml", options=ShowOptions(n=0)).examples
    """
    if options.n < 0:
        raise ConfigError(f"--n must be 0 or more, got {options.n}")
    if Path(target).suffix in RECIPE_SUFFIXES:
        if options != ShowOptions(n=options.n):
            raise ConfigError("--model, --chat, --system-prompt and --max-length are for a dataset; a recipe says "
                              "them itself (override them as key=value, e.g. gym.chat=true train.max_length=64)")
        training, tokenizer = recipe_examples(target, overrides)
    else:
        if overrides:
            raise ConfigError(f"key=value overrides ({' '.join(overrides)}) are for a recipe; {target} is a dataset")
        training, tokenizer = dataset_examples(target, options)
    print_examples(training, tokenizer, options.n, console)
    return training


def recipe_examples(path: str, overrides: list[str] | None = None) -> tuple[TrainingSet, object]:
    """The examples `ftkit sft PATH OVERRIDES...` would train on, and the tokenizer they are for."""
    from ftkit.config import read_recipe_dict, validate_recipe
    from ftkit.sft_data import data_model, training_set

    raw = read_recipe_dict(path, overrides)
    kind = raw.get("kind", "sft")
    if "algo" in raw or kind != "sft":
        what = "an RL recipe (it has algo:)" if "algo" in raw else f"a {kind} recipe (kind: {kind})"
        raise ConfigError(f"{path} is {what}: ftkit data show shows the examples of SFT recipes")
    recipe = validate_recipe(raw)
    model = data_model(recipe.model)
    return training_set(recipe, model), model.tokenizer


def dataset_examples(path: str, options: ShowOptions) -> tuple[TrainingSet, object]:
    """A dataset file or folder's rows as `options.model`'s ids, tokenized as SFT tokenizes a recipe's."""
    from data_tools.formats import sft_records
    from data_tools.readers import load_records
    from ftkit.chat import Formatter
    from ftkit.config import ModelConfig
    from ftkit.sft_data import data_model, tokenize_rows

    if options.model is None:
        raise ConfigError(f"ftkit data show {path} needs --model: the model whose tokenizer (and chat template) "
                          "the examples are for")
    model = data_model(ModelConfig(name=options.model))
    chat = options.chat or options.system_prompt is not None
    formatter = Formatter(model.tokenizer, chat=chat, system_prompt=options.system_prompt)
    rows = sft_records(load_records(path))
    limits = Limits(options.max_length, context=model.context)
    chat = chat or any("messages" in r.data for r in rows)
    return TrainingSet(tokenize_rows(rows, formatter, limits), limits, chat), model.tokenizer


def print_examples(training: TrainingSet, tokenizer, n: int = 3, console: Console | None = None) -> None:
    """Each of the first n examples: where it is from, its token counts, its text with the trained tokens
    marked, and a warning when train.max_length cuts it; then how many examples are cut in all."""
    console = console or Console(highlight=False, soft_wrap=True)
    plain = not console.is_terminal
    examples = training.examples
    for i, example in enumerate(examples[:n]):
        trained = [label != IGNORE for label in training.labels(example)]
        console.print(f"example {i + 1} of {len(examples)} ({example.where}): {len(example.input_ids)} tokens, "
                      f"{sum(trained)} trained", markup=False, style=None if plain else "bold")
        console.print(marked_text(example, trained, tokenizer, plain), markup=False)
        if example.is_cut:
            console.print(f"warning: cut from {example.length} to {len(example.input_ids)} tokens by "
                          f"train.max_length={training.limits.max_length}", markup=False,
                          style=None if plain else "yellow")
    note = training.cut_note()
    console.print(note or f"{len(examples)} examples, none cut by train.max_length", markup=False)


def marked_text(example: Example, trained: list[bool], tokenizer, plain: bool) -> Text | str:
    """The example's text (special tokens shown), its trained spans ⟦marked⟧ (plain) or green and bold."""
    spans: list[tuple[bool, list[int]]] = []
    for token, is_trained in zip(example.input_ids, trained):
        if spans and spans[-1][0] == is_trained:
            spans[-1][1].append(token)
        else:
            spans.append((is_trained, [token]))
    pieces = [(is_trained, tokenizer.decode(ids, skip_special_tokens=False)) for is_trained, ids in spans]
    if plain:
        return "".join(f"\u27e6{text}\u27e7" if is_trained else text for is_trained, text in pieces)
    out = Text()
    for is_trained, text in pieces:
        out.append(text, style="bold green" if is_trained else "dim")
    return out
