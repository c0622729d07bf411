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

__all__ = ["GymInfo", "TextEnv", "list_gyms", "make", "oracle", "register_gym", "resolve_id"]

register_gym(
    "ftkit/Arithmetic-v0",
    "gyms.arithmetic:ArithmeticEnv",
    short_name="arithmetic",
    description="integer +, -, * with a chosen number of digits; answers plain or digit-reversed",
)
