"""The arguments of sampling from a GPT, checked one way for chaingrad's GPT and its torch twin."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

__all__ = ["generate_length"]


def generate_length(prompt: Sequence[int], block_size: int, max_len: Any, temperature: Any) -> int:
    """generate()'s arguments checked: how many tokens to sample at most, max_len or, when it is None,
    as many as fit in the block after the prompt. A ValueError says what is wrong."""
    room = block_size - len(prompt) + 1
    if not prompt or room < 1:
        raise ValueError(f"generate(): the prompt needs 1 to {block_size} tokens, got {len(prompt)}")
    max_len = room if max_len is None else max_len
    if isinstance(max_len, bool) or not isinstance(max_len, int) or not 0 <= max_len <= room:
        raise ValueError(f"generate(): max_len must be an int in 0..{room} for this prompt, got {max_len!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not temperature > 0:
        raise ValueError(f"generate(): temperature must be a positive number, got {temperature!r}")
    return max_len
