"""`ftkit collect`: every sub-command on tiny inputs, resume after a kill, cards, bad input, transforms."""

from __future__ import annotations

import json
import shlex

import pytest

from data_tools import collect as collect_mod
from data_tools.store import read_dataset, read_manifest, write_dataset
from ftkit import collect as model_collect
from ftkit.cli import main
from ftkit.collect import RolloutOptions
from gyms.spec import GymSpec


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and err.startswith("error: "), err
    return err



def _rollout_rows():
    """Two problems, four samples each, with known rewards (as `collect rollouts` writes them)."""
    rows = []
    for index, (prompt, answers) in enumerate([("1+2=", [("3", 1.0), ("4", 0.0), ("3", 1.0), ("5", 0.0)]),
                                               ("2+2=", [("4", 1.0), ("4", 1.0), ("4", 1.0), ("4", 1.0)])]):
        for sample, (completion, reward) in enumerate(answers):
            rows.append({"index": index, "sample": sample, "prompt": prompt, "completion": completion,
                         "reward": reward, "solved": reward == 1.0, "difficulty": "{}", "source": "ftkit/Arithmetic-v0"})
    return rows


def test_demos_write_a_card_that_rebuilds_the_same_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["collect", "demos", "--gym", "arithmetic", "digits=2", "--n", "20", "--seed", "3", "--out", "d", "--jsonl"]
    assert main(argv) == 0
    rows = read_dataset("d")["train"]
    assert len(rows) == 20 and all(r["completion"] == str(eval(r["prompt"][:-1])) for r in rows)  # noqa: S307
    assert len((tmp_path / "d" / "train.jsonl").read_text().splitlines()) == 20
    card = (tmp_path / "d" / "README.md").read_text()
    manifest = read_manifest("d")
    assert manifest["gym"] == "ftkit/Arithmetic-v0" and manifest["seed"] == 3 and manifest["counts"] == {"train": 20}
    for expected in ("| train | 20 |", "| prompt |", manifest["content_hash"], "ftkit/Arithmetic-v0"):
        assert expected in card
    command = card.split("## Rebuild\n\n```\n", 1)[1].split("\n", 1)[0]
    assert command == "ftkit " + shlex.join(argv)
    # Same command again: nothing to do. The card's command, run from scratch, gives the same hash.
    capsys.readouterr()
    assert main(argv) == 0 and "already complete" in capsys.readouterr().out
    (tmp_path / "d").rename(tmp_path / "old")
    assert main(shlex.split(command)[1:]) == 0
    assert read_manifest("d")["content_hash"] == read_manifest("old")["content_hash"]
    # A different command into the same folder is refused rather than overwriting it.
    assert main(["collect", "demos", "--gym", "arithmetic", "--n", "5", "--out", "d"]) == 2
    assert "already holds a dataset made by" in _error_line(capsys)


def test_multi_turn_demos_are_chat_messages(tmp_path):
    rows = collect_mod.demos(GymSpec("guess_number", {"max_number": 16}), 3, seed=0)
    assert all(r["solved"] and r["messages"][0]["role"] == "user" for r in rows)
    assert [m["role"] for m in rows[0]["messages"][:2]] == ["user", "assistant"]


def test_rollouts_resume_after_a_kill_without_duplicates(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(model_collect, "ROLLOUT_CHUNK", 3)
    options = RolloutOptions(n=7, k=2, seed=0, max_new_tokens=3)
    one_digit = GymSpec("arithmetic", {"digits": 1})
    whole = model_collect.rollouts(one_digit, tiny_model, options)
    progress = tmp_path / "progress.jsonl"

    def kill_after_first_chunk(done, n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model_collect.rollouts(one_digit, tiny_model, options, progress_file=progress, on_chunk=kill_after_first_chunk)
    assert len(progress.read_text().splitlines()) == 6  # one chunk: 3 problems x 2 samples
    with open(progress, "a") as f:
        f.write('{"index": 3, "sampl')  # a line cut by the kill
    resumed = model_collect.rollouts(one_digit, tiny_model, options, progress_file=progress)
    assert resumed == whole  # same rows, same order, nothing twice
    assert len(whole) == 14 and sorted({(r["index"], r["sample"]) for r in whole}) == [(i, s) for i in range(7) for s in range(2)]
    assert {"prompt", "completion", "reward", "solved", "model", "difficulty"} <= set(whole[0])


def test_rollouts_command_writes_a_reward_dataset(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["collect", "rollouts", "--gym", "arithmetic", "digits=1", "--model", tiny_model, "--n", "4",
                 "--k", "2", "--max-new-tokens", "3", "--out", "r"]) == 0
    manifest = read_manifest("r")
    assert manifest["counts"] == {"train": 8} and manifest["k"] == 2 and manifest["model"] == tiny_model
    assert "## Rewards" in (tmp_path / "r" / "README.md").read_text()
    assert not (tmp_path / "r.partial.jsonl").exists()


def test_filter_and_pairs_from_rollouts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dataset("r", {"train": _rollout_rows()}, {"kind": "rollouts", "command": "test", "gym": "ftkit/Arithmetic-v0"})
    assert main(["collect", "filter", "r", "--min-reward", "1", "--out", "f"]) == 0
    kept = read_dataset("f")["train"]
    # one copy of each distinct right answer per problem
    assert [(r["prompt"], r["completion"]) for r in kept] == [("1+2=", "3"), ("2+2=", "4")]
    assert main(["collect", "pairs", "r", "--out", "p"]) == 0
    pairs = read_dataset("p")["train"]
    assert {(p["prompt"], p["chosen"], p["rejected"]) for p in pairs} == {("1+2=", "3", "4"), ("1+2=", "3", "5")}
    assert read_manifest("p")["inputs"] == {"r": read_manifest("r")["content_hash"]}


def test_pairs_need_groups_that_disagree(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    same = [r for r in _rollout_rows() if r["prompt"] == "2+2="]
    write_dataset("r", {"train": same}, {"kind": "rollouts", "command": "test"})
    assert main(["collect", "pairs", "r", "--out", "p"]) == 2
    assert "different rewards" in _error_line(capsys)


def test_import_maps_columns_and_templates(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qa.csv").write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n")
    assert main(["collect", "import", "qa.csv", "--prompt-column", "question", "--completion-column", "answer",
                 "--out", "a"]) == 0
    assert read_dataset("a")["train"][0] == {"prompt": "What is 2+2?", "completion": "4"}
    assert main(["collect", "import", "qa.csv", "--prompt-template", "Q: {{ question }}\nA:",
                 "--completion-template", " {{ answer }}", "--out", "b"]) == 0
    assert read_dataset("b")["train"][1] == {"prompt": "Q: Capital of France?\nA:", "completion": " Paris"}
    # A template naming a column the row lacks, and a malformed JSONL line: file and row in one line.
    assert main(["collect", "import", "qa.csv", "--prompt-template", "{{ questio }}", "--completion-column",
                 "answer", "--out", "c"]) == 2
    assert "qa.csv:2" in _error_line(capsys)
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a",\n')
    assert main(["collect", "import", "bad.jsonl", "--out", "d"]) == 2
    assert "bad.jsonl:2" in _error_line(capsys)
    assert main(["collect", "import", "missing.csv", "--out", "e"]) == 2
    assert "no such file" in _error_line(capsys)


def test_label_by_scripted_keystrokes_resumes_where_it_stopped(tmp_path):
    from data_tools.label import candidates, label, pairs_from_labels, read_labels

    rows = [{"prompt": f"{i}+1=", "completion": c} for i in range(3) for c in (str(i + 1), "9")]
    cands = candidates(rows, seed=0)
    assert len(cands) == 3
    labels_file = tmp_path / "labels.jsonl"
    keys = iter(["a", "q"])
    shown = []
    assert label(cands, labels_file, ask=lambda _: next(keys), show=shown.append) is False
    assert len(read_labels(labels_file)) == 1
    keys = iter(["x", "b", "e", "corrected"])  # an unknown key is asked again
    assert label(cands, labels_file, ask=lambda _: next(keys), show=shown.append) is True
    assert any("unknown key" in s for s in shown)
    labels = read_labels(labels_file)
    assert [labels[c["id"]]["choice"] for c in cands] == ["a", "b", "edit"]
    pairs = pairs_from_labels(cands, labels)
    assert pairs[0] == {"prompt": cands[0]["prompt"], "chosen": cands[0]["a"], "rejected": cands[0]["b"],
                        "source": "human", "id": cands[0]["id"]}
    assert pairs[1]["chosen"] == cands[1]["b"]
    assert [p["chosen"] for p in pairs[2:]] == ["corrected", "corrected"]


def test_label_command_writes_pairs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dataset("r", {"train": _rollout_rows()}, {"kind": "rollouts", "command": "test"})
    monkeypatch.setattr("builtins.input", lambda _: "a")
    assert main(["collect", "label", "r", "--out", "h"]) == 0
    pairs = read_dataset("h")["train"]
    assert pairs and all(p["source"] == "human" for p in pairs)
    assert (tmp_path / "h" / "labels.jsonl").is_file()


def test_dedup_decontaminate_split_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = [{"prompt": "the cat sat on the mat today", "completion": "yes"},
            {"prompt": "the cat sat on the mat today", "completion": "yes"},
            {"prompt": "the cat sat on the mat today!", "completion": "yes"},
            {"prompt": "rev 123+456=", "completion": "975"},
            {"prompt": "a completely different sentence about dogs", "completion": "no"}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["collect", "dedup", "rows.jsonl", "--out", "x"]) == 0
    assert len(read_dataset("x")["train"]) == 4
    assert main(["collect", "dedup", "rows.jsonl", "--near", "0.5", "--out", "y"]) == 0  # Jaccard 5/8
    assert len(read_dataset("y")["train"]) == 3 and read_manifest("y")["report"]["exact_removed"] == 1
    (tmp_path / "eval.jsonl").write_text('{"prompt": "rev 123+456="}\n')
    assert main(["collect", "decontaminate", "rows.jsonl", "--against", "eval.jsonl", "--out", "z"]) == 0
    assert "rev 123+456=" not in [r["prompt"] for r in read_dataset("z")["train"]]
    assert read_manifest("z")["report"]["removed"] == 1
    assert main(["collect", "split", "rows.jsonl", "--validation", "0.34", "--out", "s"]) == 0
    splits = read_dataset("s")
    train_prompts = {r["prompt"] for r in splits["train"]}
    assert splits["validation"] and not train_prompts & {r["prompt"] for r in splits["validation"]}
    assert main(["collect", "split", "rows.jsonl", "--validation", "2", "--out", "t"]) == 2
    assert "between 0 and 1" in _error_line(capsys)


def test_transforms_on_known_duplicates_and_contamination():
    from data_tools.transforms import decontaminate, dedup_exact, dedup_near, filter_rows

    base = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    rows = [{"text": base}, {"text": base}, {"text": base + " nu"}, {"text": "something else entirely, unrelated"}]
    kept, report = dedup_exact(rows)
    assert report["removed"] == 1 and len(kept) == 3
    kept, report = dedup_near(kept, 0.8)
    assert [r["text"] for r in kept] == [base, "something else entirely, unrelated"]
    assert report["examples"][0]["_duplicate_of"] == 0
    long_eval = "we ask: alpha beta gamma delta epsilon zeta eta theta, and more"
    kept, report = decontaminate(rows, [long_eval], n=8, fields=("text",))
    assert report["removed"] == 3 and kept == [{"text": "something else entirely, unrelated"}]
    kept, _ = decontaminate(rows, [long_eval], n=9, fields=("text",))  # no 9-word overlap
    assert len(kept) == 4
    kept, report = filter_rows([{"text": "a", "reward": 0.2}, {"text": "bb", "reward": 0.9}], min_reward=0.5)
    assert kept == [{"text": "bb", "reward": 0.9}] and report["removed"] == 1


def test_sft_reads_a_collected_folder(tmp_path, tiny_recipe, monkeypatch):
    from ftkit import sft
    from ftkit.config import validate_recipe

    monkeypatch.chdir(tmp_path)
    assert main(["collect", "demos", "--gym", "arithmetic", "digits=2", "--n", "32", "--out", "demos"]) == 0
    recipe = validate_recipe(tiny_recipe(data={"path": "demos"}, gym=None))
    summary = sft.main(recipe)
    # Scored on the gym the folder was collected from, with its settings (2-digit problems).
    assert summary["steps"] == 4 and summary["eval_n"] == 16
    assert list(summary["eval_by_difficulty"]) == ["digits=2 op=+"]
