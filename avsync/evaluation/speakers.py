"""Who is on screen: clips grouped by speaker from dlib face descriptors (for speaker splits)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SAME_SPEAKER_DISTANCE = 0.57
"""Face-descriptor distance under which two clips are one speaker (dlib's own rule is 0.6)."""


def speaker_groups(videos: Sequence[str | os.PathLike[str]], threshold: float = SAME_SPEAKER_DISTANCE) -> list[int]:
    """Group clips by the person on screen (dlib face descriptors, average-linkage clusters).

    Each clip's descriptor is the mean of its largest face's descriptor at 20, 50 and 80 % of its
    length; clips without a detected face get a group of their own.

    Args:
        videos: the clips.
        threshold: descriptor distance under which clusters merge.

    Returns:
        A group label per clip (equal labels: same speaker).
    """
    import dlib
    import face_recognition_models
    from scipy.cluster.hierarchy import fcluster, linkage

    from avsync.io.media import read_video

    models = Path(face_recognition_models.__file__).parent / "models"
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    descriptors: list[np.ndarray | None] = []
    for video in videos:
        frames = read_video(video).frames
        found = []
        for share in (0.2, 0.5, 0.8):
            image = np.ascontiguousarray(frames[int(share * (len(frames) - 1))])
            faces = detector(image, 1)
            if faces:
                face = max(faces, key=lambda box: box.area())
                found.append(np.array(encoder.compute_face_descriptor(image, shape(image, face))))
        descriptors.append(np.mean(found, axis=0) if found else None)
    known = [i for i, d in enumerate(descriptors) if d is not None]
    labels = [0] * len(descriptors)
    if len(known) > 1:
        clusters = fcluster(linkage(np.stack([descriptors[i] for i in known]), "average"), threshold, "distance")
        for index, cluster in zip(known, clusters, strict=True):
            labels[index] = int(cluster)
    elif known:
        labels[known[0]] = 1
    next_label = max(labels) + 1
    for index, descriptor in enumerate(descriptors):
        if descriptor is None:
            labels[index], next_label = next_label, next_label + 1
    return labels
