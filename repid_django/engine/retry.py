"""Retry policies: any ``callable(retry_number) -> seconds`` is one."""

from __future__ import annotations

from typing import Protocol


class RetryPolicyT(Protocol):
    """Returns the delay in seconds before retry number ``retry_number`` (1 for the first)."""

    def __call__(self, retry_number: int = 1) -> int | float: ...


def default_retry_policy_factory(
    min_backoff: int = 1,
    max_backoff: int = 86_400,
    multiplier: int = 1,
    max_exponent: int = 64,
) -> RetryPolicyT:
    """Exponential back-off: ``min(max_backoff, min_backoff * multiplier * 2 ** n)``.

    ``n`` is ``retry_number - 1`` capped at ``max_exponent``, so the first retry waits
    ``min_backoff * multiplier`` seconds and every next one twice as long, up to ``max_backoff``.
    """
    if min_backoff < 0 or max_backoff < 0:
        raise ValueError("min_backoff and max_backoff must be >= 0 seconds")
    if min_backoff > max_backoff:
        raise ValueError(f"min_backoff ({min_backoff}) must not exceed max_backoff ({max_backoff})")
    if multiplier < 1:
        raise ValueError("multiplier must be >= 1")
    if max_exponent < 0:
        raise ValueError("max_exponent must be >= 0")

    def policy(retry_number: int = 1) -> int:
        exponent = min(max(retry_number - 1, 0), max_exponent)
        return int(min(max_backoff, min_backoff * multiplier * 2**exponent))

    return policy


default_retry_policy: RetryPolicyT = default_retry_policy_factory()
