"""Splitting work across machines: ``--shard I/N`` of `avsync prepare` and `avsync align`.

Work items go to shards by a hash of a stable key (a clip id, a shot's file name), not by
position, so an item stays in its shard when the list grows.
"""

from __future__ import annotations

import hashlib

from avsync.errors import AvsyncError


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"I/N"`` (0 <= I < N): this machine takes shard I of N.

    Raises:
        AvsyncError: malformed or out of range.
    """
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as exc:
        raise AvsyncError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from exc
    if count < 1 or not 0 <= index < count:
        raise AvsyncError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return index, count


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether the item named `key` belongs to shard ``(index, count)``."""
    index, count = shard
    return int(hashlib.blake2b(key.encode(), digest_size=8).hexdigest(), 16) % count == index
