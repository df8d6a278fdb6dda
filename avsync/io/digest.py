"""Content digests: the keys of the feature cache and of the embeddings remembered per song.

BLAKE2b, hex: no media or feature code imported, so a caller that only needs an array's key
(`avsync.align.cost`) does not load the feature cache (and PyAV, OpenCV and dlib with it).
"""

from __future__ import annotations

import hashlib

import numpy as np


def digest(data: bytes | memoryview, size: int = 16) -> str:
    """BLAKE2b of `data`, `size` bytes, as hex."""
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def array_checksum(array: np.ndarray) -> str:
    """BLAKE2b (128-bit, hex) of an array's bytes (C order)."""
    return digest(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data if array.size else b"")
