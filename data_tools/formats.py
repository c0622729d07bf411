"""Check records against one of TRL's dataset formats and build the `datasets.Dataset` SFT trains on.

    >>> from data_tools.formats import to_sft_dataset
    >>> from data_tools.readers import Record
    >>> ds = to_sft_dataset([Record({"question": "2+2=", "answer": "4"}, "qa.jsonl:1")],
    ...                     prompt_field="question", completion_field="answer")
    >>> ds.column_names, ds[0]
    (['prompt', 'completion'], {'prompt': '2+2=', 'completion': '4'})

The three formats are the ones TRL's `SFTTrainer` reads as they are:

| format              | columns                  | what the model learns                                 |
| ------------------- | ------------------------ | ----------------------------------------------------- |
| `messages`          | `messages`               | the assistant turns of a chat (chat template applied) |
| `prompt_completion` | `prompt`, `completion`   | the completion, given the prompt                      |
| `text`              | `text`                   | every token (plain language modelling)                |

A bad record raises `DataError("<where>: <what is wrong and what was expected>")`, where `<where>` is the
record's file and line from `data_tools.readers`. Only the format's columns are kept: extra columns
of mixed types would make `datasets` fail later with an Arrow error that names no line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import datasets

from data_tools.errors import DataError
from data_tools.readers import Record
from gyms.errors import did_you_mean

FORMATS = ("prompt_completion", "messages", "text")
ROLES = ("system", "user", "assistant")


def detect_format(
    keys: Iterable[str],
    *,
    prompt_field: str = "prompt",
    completion_field: str = "completion",
    messages_field: str = "messages",
    text_field: str = "text",
) -> str:
    """Name the format a record's keys point to: messages, then prompt/completion, then text.

    >>> detect_format(["prompt", "completion", "id"])
    'prompt_completion'

    Either of the prompt and completion keys is enough, so that a record missing the other one is
    reported as such rather than as "no format found". Raises `DataError` when no key matches.
    """
    keys = list(keys)
    if messages_field in keys:
        return "messages"
    if prompt_field in keys or completion_field in keys:
        return "prompt_completion"
    if text_field in keys:
        return "text"
    raise DataError(
        f"cannot tell the format from keys {_key_list(keys)}; expected "
        f'"{messages_field}", "{prompt_field}" and "{completion_field}", or "{text_field}" '
        "(or name your columns with messages_field=, prompt_field=, completion_field=, text_field=)"
    )


def to_sft_dataset(
    records: list[Record],
    format: str = "auto",
    prompt_field: str = "prompt",
    completion_field: str = "completion",
    messages_field: str = "messages",
    text_field: str = "text",
) -> datasets.Dataset:
    """Validate every record and return a Dataset with only the format's columns, under TRL's names.

    >>> to_sft_dataset([Record({"text": "Once upon a time"}, "a.jsonl:1")]).column_names
    ['text']

    `format="auto"` picks the format from the first record (see `detect_format`) and every later
    record must match it. A remapped field (say `prompt_field="question"`) still comes out as the
    `prompt` column, because that is the name `SFTTrainer` looks for.
    """
    rows = sft_records(records, format, prompt_field=prompt_field, completion_field=completion_field,
                       messages_field=messages_field, text_field=text_field)
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for column, value in row.data.items():
            columns.setdefault(column, []).append(value)
    return datasets.Dataset.from_dict(columns)


def sft_records(
    records: list[Record],
    format: str = "auto",
    *,
    prompt_field: str = "prompt",
    completion_field: str = "completion",
    messages_field: str = "messages",
    text_field: str = "text",
) -> list[Record]:
    """`to_sft_dataset`'s checks, as records: each one's columns under TRL's names, and still its `where`.

    >>> sft_records([Record({"question": "2+2=", "answer": "4"}, "qa.jsonl:1")],
    ...             prompt_field="question", completion_field="answer")
    [Record(data={'prompt': '2+2=', 'completion': '4'}, where='qa.jsonl:1')]

    What tokenizes the rows later (ftkit's SFT) can then name the file and line of a record that the
    tokenizer or the chat template rejects.
    """
    # TRL's column name -> the user's key for it.
    fields = {
        "prompt": prompt_field,
        "completion": completion_field,
        "messages": messages_field,
        "text": text_field,
    }
    if not records:
        raise DataError("empty dataset (no records): nothing to fine-tune on")
    chosen = _resolve_format(format, records[0], fields)
    rows = []
    for record in records:
        _check_keys(record, chosen, fields, auto=format == "auto")
        rows.append(Record(_CONVERTERS[chosen](record, fields), record.where))
    return rows


def _resolve_format(format: str, first: Record, fields: dict[str, str]) -> str:
    if format in FORMATS:
        return format
    if format != "auto":
        raise DataError(
            f'unknown dataset format "{format}"; expected auto, {", ".join(FORMATS)}'
            f"{did_you_mean(format, ('auto', *FORMATS))}"
        )
    try:
        return _detect(first.data, fields)
    except DataError as e:
        raise DataError(f"{first.where}: {e}") from None


def _detect(keys: Iterable[str], fields: dict[str, str]) -> str:
    return detect_format(keys, **{f"{name}_field": key for name, key in fields.items()})


# --- keys -----------------------------------------------------------------------------------------

_REQUIRED = {"prompt_completion": ("prompt", "completion"), "messages": ("messages",), "text": ("text",)}


def _check_keys(record: Record, chosen: str, fields: dict[str, str], *, auto: bool) -> None:
    """Raise if the record lacks a key its format needs, saying so as a mix of formats where it is one."""
    wanted = [fields[name] for name in _REQUIRED[chosen]]
    missing = [key for key in wanted if key not in record.data]
    if not missing:
        return
    if auto:
        _raise_if_other_format(record, chosen, fields)
    names = ", ".join(f'"{key}"' for key in missing)
    # Nothing of the format is there at all: most likely the columns just have other names.
    hint = (
        f"; to read other columns pass {', '.join(f'{n}_field=' for n in _REQUIRED[chosen])}"
        if missing == wanted
        else did_you_mean(missing[0], record.data)
    )
    raise DataError(
        f"{record.where}: missing key{'s' if len(missing) > 1 else ''} {names} "
        f"(expected {'/'.join(wanted)}; found keys: {_key_list(record.data)}){hint}"
    )


def _raise_if_other_format(record: Record, chosen: str, fields: dict[str, str]) -> None:
    try:
        other = _detect(record.data, fields)
    except DataError:
        return  # no format at all: the plain "missing key" message says more
    if other != chosen:
        raise DataError(
            f"{record.where}: looks like {other} data but earlier records are {chosen}; "
            "every record of a dataset must use the same format"
        )


# --- one converter per format: check one record's values, return its row in TRL's column names ---


def _prompt_completion_row(record: Record, fields: dict[str, str]) -> dict[str, str]:
    prompt = _require_str(record, fields["prompt"], allow_empty=True)
    completion = _require_str(record, fields["completion"], allow_empty=False)
    return {"prompt": prompt, "completion": completion}


def _text_row(record: Record, fields: dict[str, str]) -> dict[str, str]:
    return {"text": _require_str(record, fields["text"], allow_empty=False)}


def _messages_row(record: Record, fields: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    key = fields["messages"]
    messages = record.data[key]
    # Parquet and saved datasets hand back lists; a tuple would be as good, a string or dict would not.
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DataError(
            f'{record.where}: "{key}" must be a non-empty list of {{"role": ..., "content": ...}} '
            f"objects, got {_type_name(messages)}"
        )
    checked = [_check_message(record.where, f"{key}[{i}]", m) for i, m in enumerate(messages)]
    if not any(m["role"] == "assistant" for m in checked):
        raise DataError(
            f'{record.where}: "{key}" has no "assistant" message; SFT learns from the assistant '
            "turns, so each conversation needs at least one"
        )
    return {"messages": checked}


def _check_message(where: str, label: str, message: Any) -> dict[str, str]:
    """Return the message as {"role", "content"} only; extra keys would clash in Arrow's schema."""
    if not isinstance(message, dict):
        raise DataError(
            f'{where}: {label} must be an object {{"role": ..., "content": ...}}, got {_type_name(message)}'
        )
    for key in ("role", "content"):
        if key not in message:
            hint = _SHAREGPT_HINT if {"from", "value"} <= message.keys() else ""
            raise DataError(f'{where}: {label} has no "{key}" key (found keys: {_key_list(message)}){hint}')
    role, content = message["role"], message["content"]
    if role not in ROLES:
        raise DataError(f"{where}: {label}.role is {_quoted(role)}; expected one of {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise DataError(f"{where}: {label}.content must be a string, got {_type_name(content)}")
    return {"role": role, "content": content}


_SHAREGPT_HINT = (
    '; this looks like ShareGPT ("from"/"value"): rename them to "role"/"content" and the roles '
    "human/gpt to user/assistant"
)

_CONVERTERS = {"prompt_completion": _prompt_completion_row, "messages": _messages_row, "text": _text_row}


# --- helpers --------------------------------------------------------------------------------------


def _require_str(record: Record, key: str, *, allow_empty: bool) -> str:
    value = record.data[key]
    if not isinstance(value, str):
        raise DataError(f'{record.where}: "{key}" must be a string, got {_type_name(value)}')
    # An empty completion or text teaches nothing and usually means a column went missing upstream.
    if not allow_empty and not value.strip():
        raise DataError(f'{record.where}: "{key}" is empty; expected non-empty text')
    return value


def _type_name(value: Any) -> str:
    """A type name in the user's terms: JSON's null rather than Python's NoneType."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)) and not value:
        return "an empty list"
    return type(value).__name__


def _quoted(value: Any) -> str:
    """The bad value itself as JSON, kept to one short line (json.dumps escapes newlines)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:36] + "..."


def _key_list(keys: Iterable[Any]) -> str:
    names = [str(k) for k in keys]
    return ", ".join(names) if names else "(none)"
