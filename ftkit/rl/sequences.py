"""A multi-turn episode as one token sequence, with the environment's tokens masked out of the loss.

    python -c "from ftkit.rl.sequences import EpisodeTokens; help(EpisodeTokens)"

In a multi-turn episode the policy's context grows turn by turn: observation, action, observation,
action... RL trains on the whole sequence at once, but only the tokens the policy sampled carry a loss:
the observations (and any chat-template text around them) were written by the environment, and the
policy must not be pushed to predict them. The sequence only ever grows: the first observation's ids
are `Formatter.prompt_ids` (what evaluation shows the model for the same problem), each action's ids
are kept exactly as sampled (re-tokenizing their text can split it differently, and a template may trim
or rewrite it), and each later observation adds `Formatter.next_turn_ids`: the template's text between
the answer and the next generation prompt. The engine continues from these ids, so the tokens trained
on are exactly the tokens the policy was shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ftkit.chat import Formatter


@dataclass
class EpisodeTokens:
    """Token ids of one episode, which of them the policy produced, and their sampling log-probs.

    >>> from ftkit.scratch import build_tokenizer
    >>> ep = EpisodeTokens(build_tokenizer())
    >>> ep.add_observation("7*8=")
    >>> ep.add_action([53, 54], [-0.1, -0.2])
    >>> ep.policy_mask
    [0, 0, 0, 0, 1, 1]

    With `chat=True`, observations are user messages (after `system_prompt`) and actions assistant
    messages, and the text the chat template puts around them counts as environment text. `messages`
    is the conversation so far, each action as the text the gym was given.
    """

    tokenizer: object
    chat: bool = False
    system_prompt: str | None = None
    input_ids: list[int] = field(default_factory=list)
    policy_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    _last_action: list[int] = field(default_factory=list)  # the ids of the latest action, as sampled

    def add_observation(self, text: str) -> None:
        """Append what the environment said; the policy is not trained to predict it."""
        formatter = Formatter(self.tokenizer, chat=self.chat, system_prompt=self.system_prompt)
        if not self.input_ids:
            ids = formatter.prompt_ids(text)
            history = formatter.messages(text)
        else:
            before = self.messages[:-1]  # the conversation up to the user message the last action answered
            ids = formatter.next_turn_ids(before, text, self._last_action)
            history = [*self.messages, {"role": "user", "content": text}]
        self._append(ids, policy=False)
        self.messages = history

    def add_action(self, token_ids: list[int], logprobs: list[float], text: str | None = None) -> None:
        """Append the tokens the policy sampled (with their log-probs); these are the ones trained on.

        `text` is the action as the gym read it (default: the ids decoded without special tokens).
        """
        if len(token_ids) != len(logprobs):
            raise ValueError(f"{len(token_ids)} action tokens but {len(logprobs)} log-probs")
        self._append(list(token_ids), policy=True, logprobs=list(logprobs))
        content = text if text is not None else self.tokenizer.decode(token_ids, skip_special_tokens=True)
        self.messages.append({"role": "assistant", "content": content})
        self._last_action = list(token_ids)

    def truncate(self, length: int) -> None:
        """Drop everything after the first `length` tokens (an observation the policy never answered)."""
        if length < len(self.input_ids) and self.messages and self.messages[-1]["role"] == "user":
            self.messages.pop()  # the user message whose tokens are dropped
        del self.input_ids[length:], self.policy_mask[length:], self.logprobs[length:]

    def copy(self) -> EpisodeTokens:
        """An independent copy: growing one does not grow the other."""
        return replace(self, input_ids=list(self.input_ids), policy_mask=list(self.policy_mask),
                       logprobs=list(self.logprobs), messages=[dict(m) for m in self.messages],
                       _last_action=list(self._last_action))

    def prompt_ids(self) -> list[int]:
        """The whole sequence so far: what the engine continues from on the next turn."""
        return list(self.input_ids)

    def _append(self, ids: list[int], policy: bool, logprobs: list[float] | None = None) -> None:
        self.input_ids.extend(ids)
        self.policy_mask.extend([int(policy)] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))
