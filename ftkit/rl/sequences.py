"""A multi-turn episode as one token sequence, with the environment's tokens masked out of the loss.

    python -c "from ftkit.rl.sequences import EpisodeTokens; help(EpisodeTokens)"

In a multi-turn episode the policy's context grows turn by turn: observation, action, observation,
action... RL trains on the whole sequence at once, but only the tokens the policy sampled carry a loss:
the observations (and any chat-template text around them) were written by the environment, and the
policy must not be pushed to predict them. The builder keeps the exact token ids the engine sampled
(re-tokenizing their text can split it differently) and gives the engine the sequence so far as token
ids for the next turn, so the tokens trained on are exactly the tokens the policy was shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EpisodeTokens:
    """Token ids of one episode, which of them the policy produced, and their sampling log-probs.

    >>> from ftkit.scratch import build_tokenizer
    >>> ep = EpisodeTokens(build_tokenizer())
    >>> ep.add_observation("7*8=")
    >>> ep.add_action([53, 54], [-0.1, -0.2])
    >>> ep.policy_mask
    [0, 0, 0, 0, 1, 1]

    With `chat=True`, observations are user messages and actions assistant messages, and the text the
    chat template puts around them counts as environment text.
    """

    tokenizer: object
    chat: bool = False
    system_prompt: str | None = None
    input_ids: list[int] = field(default_factory=list)
    policy_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    _rendered: str = ""  # chat only: the template's text for the conversation so far

    def add_observation(self, text: str) -> None:
        """Append what the environment said; the policy is not trained to predict it."""
        if not self.chat:
            self._append(self._tokenize(text), policy=False)
            return
        if not self.messages and self.system_prompt:
            self.messages.append({"role": "system", "content": self.system_prompt})
        self.messages.append({"role": "user", "content": text})
        rendered = self.tokenizer.apply_chat_template(self.messages, tokenize=False, add_generation_prompt=True)
        self._append(self._tokenize(self._new_text(rendered)), policy=False)
        self._rendered = rendered

    def add_action(self, token_ids: list[int], logprobs: list[float], text: str | None = None) -> None:
        """Append the tokens the policy sampled (with their log-probs); these are the ones trained on."""
        if len(token_ids) != len(logprobs):
            raise ValueError(f"{len(token_ids)} action tokens but {len(logprobs)} log-probs")
        self._append(list(token_ids), policy=True, logprobs=list(logprobs))
        if self.chat:
            content = text if text is not None else self.tokenizer.decode(token_ids, skip_special_tokens=True)
            self.messages.append({"role": "assistant", "content": content})
            self._rendered += self.tokenizer.decode(token_ids)

    def truncate(self, length: int) -> None:
        """Drop everything after the first `length` tokens (an observation the policy never answered)."""
        if self.chat and length < len(self.input_ids):
            self.messages.pop()  # the user message whose tokens are dropped
            self._rendered = self.tokenizer.decode(self.input_ids[:length])
        del self.input_ids[length:], self.policy_mask[length:], self.logprobs[length:]

    def prompt_ids(self) -> list[int]:
        """The whole sequence so far: what the engine continues from on the next turn."""
        return list(self.input_ids)

    def _append(self, ids: list[int], policy: bool, logprobs: list[float] | None = None) -> None:
        self.input_ids.extend(ids)
        self.policy_mask.extend([int(policy)] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _new_text(self, rendered: str) -> str:
        """The template's text after what is already in the sequence."""
        if not rendered.startswith(self._rendered):
            raise ValueError(
                "the chat template renders earlier turns differently once a new turn is added, so the "
                "episode cannot grow as one token sequence; use a template whose output only appends"
            )
        return rendered[len(self._rendered) :]
