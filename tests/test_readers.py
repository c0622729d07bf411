"""Tests for data_tools.readers (files -> records) and data_tools.formats (records -> SFT Dataset).

python -m pytest tests/test_readers.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_tools.formats import FORMATS, detect_format, to_sft_dataset
from data_tools.readers import Record, load_records
from ftkit.errors import DataError, FtkitError

ROWS = [
    {"prompt": "2+2=", "completion": "4"},
    {"prompt": "3+5=", "completion": "8"},
    {"prompt": "", "completion": "hello"},
]
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def raises(match: str):
    """pytest.raises for a DataError whose message contains `match` literally and is one line."""
    return pytest.raises(DataError, match=re.escape(match))


# --- readers: each file type round-trips ----------------------------------------------------------


def test_jsonl_round_trip_with_line_numbers_counting_blank_lines(tmp_path):
    path = write(tmp_path / "train.jsonl", json.dumps(ROWS[0]) + "\n\n  \n" + json.dumps(ROWS[1]) + "\n")
    records = load_records(path)
    assert [r.data for r in records] == ROWS[:2]
    assert [r.where for r in records] == [f"{path}:1", f"{path}:4"]


def test_json_list_round_trip(tmp_path):
    path = write(tmp_path / "train.json", json.dumps(ROWS, indent=2))
    records = load_records(str(path))
    assert [r.data for r in records] == ROWS
    assert records[2].where == f"{path} item 2"


def test_json_file_holding_json_lines_is_read_line_by_line(tmp_path):
    # Dataset.to_json writes JSON Lines even when the file is named .json.
    path = tmp_path / "train.json"
    datasets.Dataset.from_list(ROWS).to_json(path)
    records = load_records(path)
    assert [r.data for r in records] == ROWS
    assert records[1].where == f"{path}:2"


def test_csv_round_trip_with_the_line_each_row_starts_on(tmp_path):
    text = 'prompt,completion\n"two\nlines",a\n\nq,b\n'
    path = write(tmp_path / "train.csv", text)
    records = load_records(path)
    assert [r.data for r in records] == [
        {"prompt": "two\nlines", "completion": "a"},
        {"prompt": "q", "completion": "b"},
    ]
    # The first row spans lines 2-3, line 4 is blank, the second row is line 5.
    assert [r.where for r in records] == [f"{path}:2", f"{path}:5"]


def test_parquet_round_trip(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path, row_group_size=2)  # several batches
    records = load_records(path)
    assert [r.data for r in records] == ROWS
    assert records[2].where == f"{path} row 2"


def test_saved_dataset_folder_round_trip(tmp_path):
    path = tmp_path / "train_ds"
    datasets.Dataset.from_list([{"messages": CHAT}]).save_to_disk(path)
    records = load_records(path)
    assert records == [Record({"messages": CHAT}, f"{path} row 0")]


def test_saved_dataset_dict_uses_train_split(tmp_path):
    path = tmp_path / "ds"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
    ).save_to_disk(path)
    records = load_records(path)
    assert len(records) == 3
    assert records[1].where == f"{path}[train] row 1"


# --- readers: errors name the file and the line ---------------------------------------------------


def test_missing_file(tmp_path):
    with raises(f"no such file: {tmp_path / 'nope.jsonl'}"):
        load_records(tmp_path / "nope.jsonl")


def test_unsupported_extension_lists_the_supported_ones(tmp_path):
    with raises('unsupported file type ".txt"; supported: .jsonl') as info:
        load_records(write(tmp_path / "train.txt", "hi"))
    assert ".parquet" in str(info.value) and "save_to_disk" in str(info.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("e.jsonl", ""),
        ("e.jsonl", "\n \n"),
        ("e.json", "[]"),
        ("e.json", " "),
        ("e.csv", "prompt,completion\n"),
    ],
)
def test_empty_dataset(tmp_path, name, text):
    path = write(tmp_path / name, text)
    with raises(f"{path}: empty dataset (no rows)"):
        load_records(path)


def test_bad_json_line_after_blank_line_names_physical_line(tmp_path):
    path = write(tmp_path / "train.jsonl", json.dumps(ROWS[0]) + '\n\n{"prompt": "x",}\n')
    with raises(f"{path}:3: not valid JSON (") as info:
        load_records(path)
    assert "\n" not in str(info.value)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = write(tmp_path / "train.jsonl", json.dumps(ROWS[0]) + "\n[1, 2]\n")
    with raises(f"{path}:2: expected a JSON object"):
        load_records(path)


def test_jsonl_bad_utf8_names_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with raises(f"{path}:2: not UTF-8 text"):
        load_records(path)


def test_json_list_with_a_non_object_item(tmp_path):
    path = write(tmp_path / "train.json", json.dumps([ROWS[0], "oops"]))
    with raises(f"{path} item 1: expected a JSON object"):
        load_records(path)


def test_malformed_json_file_names_the_line(tmp_path):
    path = write(tmp_path / "train.json", '[\n  {"prompt": "a"},\n  {"prompt": }\n]')
    with raises(f"{path}:3: not valid JSON"):
        load_records(path)


def test_csv_ragged_row(tmp_path):
    path = write(tmp_path / "train.csv", "prompt,completion\na,b\n\nc,d,e\n")
    with raises(f"{path}:4: row has 3 fields but the header has 2"):
        load_records(path)


def test_unreadable_parquet(tmp_path):
    path = write(tmp_path / "train.parquet", "not parquet at all")
    with raises(f"{path}: not a readable Parquet file"):
        load_records(path)


def test_folder_that_is_not_a_saved_dataset(tmp_path):
    with raises(f"{tmp_path}: is a folder but not a dataset saved with Dataset.save_to_disk"):
        load_records(tmp_path)


def test_saved_dataset_dict_without_train_lists_splits(tmp_path):
    path = tmp_path / "ds"
    datasets.DatasetDict({"dev": datasets.Dataset.from_list(ROWS)}).save_to_disk(path)
    with raises('has no "train" split (splits: dev)'):
        load_records(path)


# --- formats --------------------------------------------------------------------------------------


def records(rows: list[dict], name: str = "x.jsonl") -> list[Record]:
    return [Record(row, f"{name}:{i}") for i, row in enumerate(rows, start=1)]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["messages", "prompt"], "messages"),
        (["prompt", "completion", "text"], "prompt_completion"),
        (["completion"], "prompt_completion"),
        (["text", "id"], "text"),
    ],
)
def test_detect_format(keys, expected):
    assert detect_format(keys) == expected
    assert expected in FORMATS


def test_detect_format_with_no_known_key():
    with raises('cannot tell the format from keys question, answer; expected "messages"'):
        detect_format(["question", "answer"])


def test_prompt_completion_keeps_only_its_columns():
    ds = to_sft_dataset(records([{**row, "id": i} for i, row in enumerate(ROWS)]))
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["prompt", "completion"]
    assert ds.to_list() == ROWS


def test_remapped_fields_come_out_under_trl_names():
    rows = [{"question": "2+2=", "answer": "4"}]
    ds = to_sft_dataset(records(rows), prompt_field="question", completion_field="answer")
    assert ds.column_names == ["prompt", "completion"]
    assert ds[0] == {"prompt": "2+2=", "completion": "4"}

    ds = to_sft_dataset(records([{"conversations": CHAT}]), messages_field="conversations")
    assert ds.column_names == ["messages"]


def test_messages_dataset_has_trl_conversational_schema():
    extra = [{**m, "name": "x"} for m in CHAT]  # extra keys are dropped
    ds = to_sft_dataset(records([{"messages": CHAT}, {"messages": extra}]))
    assert ds.column_names == ["messages"]
    assert ds[1]["messages"] == CHAT
    # What TRL's is_conversational looks for (importing trl here would cost seconds).
    assert ds.features["messages"] == datasets.List(
        {"role": datasets.Value("string"), "content": datasets.Value("string")}
    )


def test_text_dataset():
    ds = to_sft_dataset(records([{"text": "Once upon a time", "source": "x"}]), format="text")
    assert ds.column_names == ["text"]


def test_missing_key_lists_found_keys():
    with raises(
        'x.jsonl:1: missing keys "prompt", "completion" (expected prompt/completion; found keys: question, answer)'
        "; to read other columns pass prompt_field=, completion_field="
    ):
        to_sft_dataset(records([{"question": "q", "answer": "a"}]), format="prompt_completion")


def test_missing_key_suggests_a_close_name():
    with raises(
        'missing key "completion" (expected prompt/completion; found keys: prompt, completions)'
        ' (did you mean "completions"?)'
    ):
        to_sft_dataset(records([{"prompt": "q", "completions": "a"}]))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "q", "completion": 4}, 'x.jsonl:1: "completion" must be a string, got int'),
        ({"prompt": None, "completion": "a"}, 'x.jsonl:1: "prompt" must be a string, got null'),
        ({"prompt": "q", "completion": "  "}, 'x.jsonl:1: "completion" is empty'),
    ],
)
def test_prompt_completion_value_errors(row, message):
    with raises(message):
        to_sft_dataset(records([row]))


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [CHAT[1], {"role": "bot", "content": "4"}],
            'messages[1].role is "bot"; expected one of system, user, assistant',
        ),
        ([CHAT[1], {"role": "assistant", "content": 4}], "messages[1].content must be a string, got int"),
        ([CHAT[1], {"role": "assistant"}], 'messages[1] has no "content" key (found keys: role)'),
        ([{"from": "human", "value": "hi"}], "this looks like ShareGPT"),
        ([CHAT[1], "hi"], "messages[1] must be an object"),
        ([CHAT[0], CHAT[1]], 'x.jsonl:1: "messages" has no "assistant" message'),
        ([], '"messages" must be a non-empty list'),
        ("hi", '"messages" must be a non-empty list of {"role": ..., "content": ...} objects, got str'),
    ],
)
def test_messages_validation(messages, message):
    with raises(message):
        to_sft_dataset(records([{"messages": messages}]))


def test_mixed_formats_name_the_first_odd_record():
    rows = [ROWS[0], ROWS[1], {"messages": CHAT}]
    with raises("x.jsonl:3: looks like messages data but earlier records are prompt_completion"):
        to_sft_dataset(records(rows))


def test_first_record_with_no_format_is_named():
    with raises("x.jsonl:1: cannot tell the format from keys q, a"):
        to_sft_dataset(records([{"q": "1", "a": "2"}]))


def test_empty_records():
    with raises("empty dataset"):
        to_sft_dataset([])


def test_unknown_format_suggests_a_close_one():
    with raises('unknown dataset format "mesages"') as info:
        to_sft_dataset(records(ROWS), format="mesages")
    assert 'did you mean "messages"' in str(info.value)


def test_file_to_dataset_end_to_end(tmp_path):
    path = write(tmp_path / "chat.jsonl", jsonl([{"messages": CHAT}, {"messages": CHAT[:2]}]))
    with pytest.raises(FtkitError, match=re.escape(f'{path}:2: "messages" has no "assistant" message')):
        to_sft_dataset(load_records(path))
