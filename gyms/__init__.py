"""Text gyms: Gymnasium environments that a language model plays by writing text.

    >>> import gyms
    >>> env = gyms.make("arithmetic", digits=2)
    >>> obs, info = env.reset(seed=0)
    >>> _, reward, terminated, _, _ = env.step(info["answer"])
    >>> reward, terminated
    (1.0, True)

Every ftkit gym is registered here, in one place, under the `ftkit/` namespace; bump the `-vN` of an id
when a gym's behaviour changes, so that results recorded against the old version stay comparable.
"""

from __future__ import annotations

from gyms.base import TextEnv
from gyms.registry import GymInfo, list_gyms, make, oracle, register_gym, resolve_id
from gyms.spec import GymSpec

__all__ = ["GymInfo", "GymSpec", "TextEnv", "list_gyms", "make", "oracle", "register_gym", "resolve_id"]

register_gym(
    "ftkit/Arithmetic-v0",
    "gyms.arithmetic:ArithmeticEnv",
    short_name="arithmetic",
    description="integer +, -, * with a chosen number of digits; answers plain or digit-reversed",
)
register_gym(
    "ftkit/Countdown-v0",
    "gyms.countdown:CountdownEnv",
    short_name="countdown",
    description="reach a target from given numbers with + - * / (each number at most once)",
)
register_gym(
    "ftkit/GuessNumber-v0",
    "gyms.guess_number:GuessNumberEnv",
    short_name="guess_number",
    description="find a hidden number from 'higher' / 'lower' feedback in few guesses (multi-turn)",
    multi_turn=True,
)
register_gym(
    "ftkit/Wordle-v0",
    "gyms.wordle:WordleEnv",
    short_name="wordle",
    description="find a hidden five-letter word from per-letter feedback in six guesses (multi-turn)",
    multi_turn=True,
)
register_gym(
    "ftkit/Calculator-v0",
    "gyms.calculator:CalculatorEnv",
    short_name="calculator",
    description="word problems with a calculator tool: calc: <expression>, then answer: <n> (multi-turn)",
    multi_turn=True,
)
