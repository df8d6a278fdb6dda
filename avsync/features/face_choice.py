"""Which face to follow among several: a named choice or a point of the frame.

Kept apart from the tracker (numpy, OpenCV) so that a command checks ``--face`` before any heavy
import.
"""

from __future__ import annotations

FACE_CHOICES = ("largest", "left", "right")


def face_point(face: str) -> tuple[float, float] | None:
    """The point an ``X,Y`` face choice names (fractions of the frame), None for a named choice.

    Raises:
        ValueError: neither one of `FACE_CHOICES` nor two numbers in 0..1.
    """
    if face in FACE_CHOICES:
        return None
    try:
        x, y = (float(part) for part in face.split(","))
    except ValueError:
        raise ValueError(f"face must be {', '.join(FACE_CHOICES)} or X,Y (fractions of the frame), got {face!r}") from None
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(f"face X,Y must lie in 0..1 (fractions of the frame), got {face!r}")
    return x, y
