"""Ground truth of a synthetic song (``truth.json``): per-frame mouth and voice state, spans, syllables.

File format (JSON object)::

    {"id": "song000", "speaker": "singer000", "fps": 25.0, "n_frames": 750, "seconds": 30.0,
     "sample_rate": 44100, "mouth_lead_s": 0.04, "params": {...generation settings...},
     "song": {"tempo_bpm": ..., "key_midi": ..., "minor": ..., "vocal_to_accompaniment_db": ...},
     "identity": {...}, "spans": [{"kind": "card", "start": 4.0, "end": 5.5}, ...],
     "syllables": [{"start", "vowel_start", "end", "consonant", "vowel", "pitch_hz", "loudness"}, ...],
     "mouthed_syllables": [...same, silent syllables of fake-talk spans...],
     "frames": {"mouth_open": [T floats 0..1], "mouth_width": [T], "vowel": [T str, "" if none],
                "phone": [T str], "vocal_active": [T bool], "face_visible": [T bool],
                "lips_follow_vocal": [T bool], "mouth_box": [T [x0, y0, x1, y1]]}}

Frame k shows time ``k / fps``. Span kinds: ``card`` and ``offscreen`` (face hidden:
``face_visible`` false), ``fake_talk`` (the mouth talks, the voice is silent:
``lips_follow_vocal`` false), ``break`` (instrumental: no voice, mouth closed). ``mouth_box`` is
the frame-pixel box outside which no pixel depends on the mouth shape (lips, teeth and jaw).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError
from avsync.io.files import atomic_path

FRAME_FIELDS = ("mouth_open", "mouth_width", "vowel", "phone", "vocal_active", "face_visible", "lips_follow_vocal", "mouth_box")


@dataclass
class SongTruth:
    """Per-frame ground truth of one song (arrays have length T = n_frames).

    Args:
        id: song id.
        fps: video frame rate.
        mouth_open: float32 ``[T]`` lip opening 0..1 as rendered.
        mouth_width: float32 ``[T]`` mouth width relative to the resting mouth.
        vowel: ``[T]`` vowel being sung or mouthed, ``""`` otherwise.
        phone: ``[T]`` vowel or consonant being articulated, ``""`` at rest.
        vocal_active: bool ``[T]`` the vocal stem sounds during the frame.
        face_visible: bool ``[T]`` the mouth is in the picture and uncovered.
        lips_follow_vocal: bool ``[T]`` false where the lips move to syllables that are not sung.
        mouth_box: float32 ``[T, 4]`` (x0, y0, x1, y1) frame pixels that the mouth shape can change.
        meta: everything else in the file (speaker, spans, syllables, params, ...).
    """

    id: str
    fps: float
    mouth_open: np.ndarray
    mouth_width: np.ndarray
    vowel: list[str]
    phone: list[str]
    vocal_active: np.ndarray
    face_visible: np.ndarray
    lips_follow_vocal: np.ndarray
    mouth_box: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return len(self.mouth_open)

    def to_json(self) -> dict:
        """The ``truth.json`` object."""
        frames = {
            "mouth_open": [round(float(v), 4) for v in self.mouth_open],
            "mouth_width": [round(float(v), 4) for v in self.mouth_width],
            "vowel": list(self.vowel),
            "phone": list(self.phone),
            "vocal_active": [bool(v) for v in self.vocal_active],
            "face_visible": [bool(v) for v in self.face_visible],
            "lips_follow_vocal": [bool(v) for v in self.lips_follow_vocal],
            "mouth_box": [[round(float(v), 1) for v in box] for box in self.mouth_box],
        }
        return {"id": self.id, "fps": self.fps, "n_frames": self.n_frames, **self.meta, "frames": frames}

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write ``truth.json`` atomically."""
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")


def load_truth(path: str | os.PathLike[str]) -> SongTruth:
    """Read a ``truth.json``.

    Args:
        path: the file.

    Returns:
        The truth.

    Raises:
        AvsyncError: missing, unreadable or malformed file.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        frames = data.pop("frames")
        truth = SongTruth(
            id=data.pop("id"),
            fps=float(data.pop("fps")),
            mouth_open=np.asarray(frames["mouth_open"], dtype=np.float32),
            mouth_width=np.asarray(frames["mouth_width"], dtype=np.float32),
            vowel=list(frames["vowel"]),
            phone=list(frames["phone"]),
            vocal_active=np.asarray(frames["vocal_active"], dtype=bool),
            face_visible=np.asarray(frames["face_visible"], dtype=bool),
            lips_follow_vocal=np.asarray(frames["lips_follow_vocal"], dtype=bool),
            mouth_box=np.asarray(frames["mouth_box"], dtype=np.float32).reshape(-1, 4),
        )
        n_frames = data.pop("n_frames")
        truth.meta = data
    except FileNotFoundError as exc:
        raise AvsyncError("truth file not found", path) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AvsyncError(f"not a valid truth.json ({type(exc).__name__}: {exc})", path) from exc
    lengths = {len(getattr(truth, name)) for name in FRAME_FIELDS}
    if lengths != {n_frames}:
        raise AvsyncError(f"per-frame fields have lengths {sorted(lengths)}, expected n_frames={n_frames}", path)
    return truth
