"""Build datasets from gyms and models: demonstrations, rollouts, rejection sampling and preference pairs.

    ftkit collect demos --gym arithmetic --n 1000 --out data/arith_demos
    ftkit collect rollouts --gym arithmetic --model runs/gpt2_math/model --n 500 --k 8 --out data/arith_rollouts
    ftkit collect filter data/arith_rollouts --min-reward 1 --out data/arith_rft
    ftkit collect pairs data/arith_rollouts --out data/arith_pairs

Each function here returns rows (plain dicts); `ftkit/cli/collect.py` writes them with
`data_tools.store.write_dataset`, which adds the card. Nothing here loads a model: the model plays its
rollouts in `ftkit.collect.rollouts`, which builds its rows with `rollout_row` and saves its progress with
`append_progress`. The rows' columns are the ones TRL reads:

| kind      | single-turn gym                          | multi-turn gym                            |
| --------- | ---------------------------------------- | ----------------------------------------- |
| demos     | prompt, completion                       | messages                                  |
| rollouts  | prompt, completion, reward, solved, ...  | messages, reward, solved, num_turns, ...  |
| filter    | prompt, completion (+ reward)            | messages (+ reward)                       |
| pairs     | prompt, chosen, rejected (+ rewards)     | prompt, chosen, rejected as messages      |

Problem `i` of a run seeded `seed` is the gym reset with `item_seed(seed, i)`, as in
`data_tools.gym_data`, so every row can be replayed and checked.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from data_tools.errors import DataError
from data_tools.gym_data import gym_examples, item_seed
from gyms.spec import GymSpec


def gym_version(gym: GymSpec | str) -> str:
    """The gym's registered id, whose -vN suffix is its version: "ftkit/Arithmetic-v0"."""
    return GymSpec.of(gym).full_id


# -- demos ------------------------------------------------------------------------------------------


def demos(gym: GymSpec | str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n oracle demonstrations: prompt/completion rows, or chat `messages` rows for a multi-turn gym
    (its episodes cut at `gym.max_turns`)."""
    spec = GymSpec.of(gym)
    if not spec.is_multi_turn:
        return [{**r, "difficulty": json.dumps(r["difficulty"], sort_keys=True)}
                for r in gym_examples(spec, n, seed)]
    return _multi_turn_demos(spec, n, seed)


def _multi_turn_demos(spec: GymSpec, n: int, seed: int) -> list[dict[str, Any]]:
    from gyms.runner import oracle_policy, run_episodes

    env = spec.make()
    has_oracle = env.unwrapped.has_oracle
    env.close()
    if not has_oracle:
        raise DataError(f'gym "{spec.id}" has no oracle, so it cannot generate demonstrations')
    seeds = [item_seed(seed, i) for i in range(n)]
    # The oracle ignores what it is shown, so chat or text makes the same episodes.
    trajectories = run_episodes(spec, oracle_policy(), seeds)
    return [{"messages": t.messages(), "reward": t.total_reward, "solved": t.solved, "num_turns": t.num_turns,
             "source": t.gym, "index": i, "seed": seed, "difficulty": _difficulty(t.reset_info)}
            for i, t in enumerate(trajectories)]


def _difficulty(info: dict[str, Any]) -> str:
    from gyms.runner import to_jsonable

    return json.dumps(to_jsonable(info.get("difficulty", {})), sort_keys=True)


# -- rollouts: the rows of `ftkit.collect.rollouts` and its progress file ---------------------------------


def rollout_row(t, index: int, sample: int, seed: int, model: str, chat: bool) -> dict[str, Any]:
    """One episode (a `gyms.runner.Trajectory`) as a row: prompt/completion, or messages when it is a chat."""
    row: dict[str, Any] = {"index": index, "sample": sample, "seed": seed, "reset_seed": t.seed}
    if t.num_turns == 1 and not chat:
        row.update(prompt=t.turns[0].observation, completion=t.turns[0].action)
    else:
        row["messages"] = t.messages()
    row.update(reward=t.total_reward, solved=t.solved, num_turns=t.num_turns, truncated=t.truncated,
               answer=str(t.info.get("answer", "")), difficulty=_difficulty(t.reset_info),
               source=t.gym, model=model)
    return row


def read_progress(path: str | Path) -> list[dict[str, Any]]:
    """Rows saved by earlier chunks; a last line cut by a kill is dropped (its chunk is replayed)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    # Keep whole chunks only: a kill can land in the middle of one.
    chunk_ends = [i for i, r in enumerate(rows) if r.get("_chunk_end")]
    rows = rows[: chunk_ends[-1] + 1] if chunk_ends else []
    return [{k: v for k, v in r.items() if k != "_chunk_end"} for r in rows]


def append_progress(path: str | Path, chunk: list[dict[str, Any]]) -> None:
    """Append one chunk's rows; the last carries `_chunk_end`, so a half-written chunk is recognisable."""
    with open(path, "a") as f:
        for i, row in enumerate(chunk):
            f.write(json.dumps({**row, "_chunk_end": True} if i == len(chunk) - 1 else row) + "\n")
        f.flush()
        os.fsync(f.fileno())


# -- filter: rejection sampling --------------------------------------------------------------------


def filter_rollouts(rows: list[dict[str, Any]], *, min_reward: float, max_per_prompt: int | None = None,
                    keep_metadata: bool = True) -> list[dict[str, Any]]:
    """Rollouts with reward >= min_reward, as an instruction dataset (one round of expert iteration).

    Identical completions of the same problem are kept once: ten copies of one answer would weigh that
    problem ten times in SFT. `max_per_prompt` caps how many distinct ones each problem keeps.
    """
    kept, seen, per_prompt = [], set(), defaultdict(int)
    for row in rows:
        if float(row.get("reward", 0.0)) < min_reward:
            continue
        key = _prompt_key(row), _completion_key(row)
        if key in seen or (max_per_prompt is not None and per_prompt[key[0]] >= max_per_prompt):
            continue
        seen.add(key)
        per_prompt[key[0]] += 1
        out = ({"prompt": row["prompt"], "completion": row["completion"]} if "prompt" in row and row.get("prompt")
               is not None else {"messages": row["messages"]})
        if keep_metadata:
            out.update({k: row[k] for k in ("reward", "index", "difficulty", "source") if k in row})
        kept.append(out)
    return kept


def _prompt_key(row: dict[str, Any]) -> str:
    if row.get("prompt") is not None:
        return json.dumps(row["prompt"])
    return json.dumps(_first_turn(row["messages"]))


def _completion_key(row: dict[str, Any]) -> str:
    return json.dumps(row["completion"] if row.get("prompt") is not None else row["messages"])


def _first_turn(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """System and first user message: what every episode of a problem starts with."""
    prefix = []
    for message in messages:
        prefix.append(message)
        if message["role"] == "user":
            break
    return prefix


# -- pairs: preferences from rollout groups ----------------------------------------------------------


def preference_pairs(rows: list[dict[str, Any]], *, min_margin: float = 1e-9, max_pairs_per_prompt: int = 4,
                     seed: int = 0) -> list[dict[str, Any]]:
    """(prompt, chosen, rejected) from the rollouts of each problem whose rewards differ.

    Within a problem's group, every distinct completion with a higher reward is paired with one with a
    lower reward (by at least `min_margin`); up to `max_pairs_per_prompt` pairs per problem are drawn
    at random (seeded), so problems with many samples do not dominate. Multi-turn rollouts give
    conversational pairs: the shared start as `prompt`, each episode's remaining turns as chosen/rejected.
    """
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[_prompt_key(row)].append(row)
    rng = random.Random(seed)
    pairs = []
    for key in sorted(groups):
        distinct = {_completion_key(r): r for r in groups[key]}.values()
        candidates = [(a, b) for a in distinct for b in distinct
                      if float(a["reward"]) - float(b["reward"]) >= min_margin]
        rng.shuffle(candidates)
        pairs += [_pair(a, b) for a, b in candidates[:max_pairs_per_prompt]]
    return pairs


def _pair(chosen: dict[str, Any], rejected: dict[str, Any]) -> dict[str, Any]:
    meta = {"chosen_reward": float(chosen["reward"]), "rejected_reward": float(rejected["reward"]),
            "index": chosen.get("index"), "difficulty": chosen.get("difficulty"), "source": chosen.get("source")}
    if chosen.get("prompt") is not None:
        return {"prompt": chosen["prompt"], "chosen": chosen["completion"], "rejected": rejected["completion"], **meta}
    prompt = _first_turn(chosen["messages"])
    return {"prompt": prompt, "chosen": chosen["messages"][len(prompt):],
            "rejected": rejected["messages"][len(prompt):], **meta}


# -- import: someone else's file, mapped to ftkit's columns ---------------------------------------------


def import_rows(records, *, prompt: str | None = None, completion: str | None = None,
                messages: str | None = None, prompt_template: str | None = None,
                completion_template: str | None = None) -> list[dict[str, Any]]:
    """Map records (`data_tools.readers.Record`s) to prompt/completion or messages rows.

    Either name the columns (`prompt="question", completion="answer"`, or `messages="conversation"`), or
    give Jinja templates over the record's columns (`prompt_template="Q: {{ question }}\\nA:"`); rendered
    in a sandbox, so a template can read columns but not call into Python. Without any of them the
    columns are detected as `ftkit sft` detects them. Errors name the file and line.
    """
    if messages or (not any((prompt, completion, prompt_template, completion_template))):
        from data_tools.formats import to_sft_dataset

        fields = {"messages_field": messages} if messages else {}
        return to_sft_dataset(records, format="messages" if messages else "auto", **fields).to_list()
    render_prompt = _template(prompt_template) if prompt_template else None
    render_completion = _template(completion_template) if completion_template else None
    rows = []
    for record in records:
        rows.append({"prompt": _field(record, prompt, render_prompt, "prompt"),
                     "completion": _field(record, completion, render_completion, "completion")})
    if not rows:
        raise DataError("the input has no rows")
    return rows


def _template(text: str):
    from jinja2 import StrictUndefined, TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    try:
        return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(text)
    except TemplateSyntaxError as exc:
        raise DataError(f"template {text!r}: {exc.message}") from None


def _field(record, column: str | None, template, what: str) -> str:
    from jinja2 import UndefinedError

    if template is not None:
        try:
            return template.render(**record.data)
        except UndefinedError as exc:
            raise DataError(f"{record.where}: the {what} template uses a column this row lacks ({exc.message}); "
                            f"its columns are {sorted(record.data)}") from None
    column = column or what
    if column not in record.data:
        raise DataError(f"{record.where}: no column {column!r} (columns: {sorted(record.data)}); "
                        f"name it with --{what}-column or use --{what}-template")
    value = record.data[column]
    if not isinstance(value, str):
        value = "" if value is None else str(value)
    return value
