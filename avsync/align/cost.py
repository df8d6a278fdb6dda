"""Cost matrix between every video frame and every reference frame, from a trained model.

Rows are video frames ``i`` (N), columns reference frames ``j`` (M), both 25 fps. The window of
frame ``i`` is the one centred on it (docs/design.md): mouth crops ``i-8 .. i+7`` and mel columns
``4(j-8) .. 4(j-8)+63``, edge frames repeated.

* :class:`~avsync.models.TwoTower`: ``encode_video`` over the N windows, ``encode_audio`` over the
  M windows, one ``score`` product: logits ``[N, M]``. The reference's embeddings can be made
  ahead (`embed_reference`) and kept across processes; the video's, while the shot is still being
  read (`VideoEmbedder`).
* Any other network (:class:`~avsync.models.PosterCNN`): ``score_candidates`` on the pairs inside
  a band ``|j - (offset + slope * i)| <= radius`` (all pairs when no band is given and the matrix
  is small).

The cost is ``-log sigmoid(logit)`` (the match's negative log-likelihood), then put on a robust
z-scale over the scored, usable cells: ``(c - median) / (1.4826 * MAD)``, so DTW penalties mean
the same for every model. Cells that carry no information get 0 (the median), so they never pull
the path anywhere: video frames without a usable face, silent reference frames (no vocal), and
pairs outside the band.

The networks are called on numpy arrays: the onnxruntime networks of `avsync.models.runtime`
(what `avsync align`, the shoot, `avsync check` and `avsync eval` load; this module never imports
torch) take them as they are; a torch network (training's callbacks, checkpoints without an
export, ``--device cuda``) gets them as tensors on its device (`_call`), so both run the same windows, batches and
normalisation.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from avsync.conventions import MELS_PER_FRAME, WINDOW_FRAMES
from avsync.features.lips import lip_geometry
from avsync.io.digest import array_checksum
from avsync.models import is_ensemble, video_input

HALF_WINDOW = WINDOW_FRAMES // 2
MAX_FULL_PAIRS = 250_000
"""Largest N * M a pair model scores without a band."""
WINDOW_BATCH = 16
"""Most windows a two-tower encoder embeds per forward pass: the activations of 256 windows held
180 MB more at the peak of a 30-s shot against a 3-minute track, 64 windows 38 MB more than 32 and
32 about 20 MB more than 16 (onnxruntime keeps its largest activations); 16 are as fast, and
onnxruntime's embeddings are the same to the bit (torch's round differently by batch: of the 612
real fold cases, one moved by 0.3 % of its frames)."""


def video_windows(video: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Video windows centred on the given frames: mouth clips, or lip-geometry windows.

    Args:
        video: uint8 [T, 64, 64] mouth crops, or float [T, C] lip geometry.
        rows: int [B] frame indices.

    Returns:
        float32 [B, 16, 64, 64] in 0..1 (crops), or float32 [B, 16, C] (geometry).
    """
    index = np.clip(rows[:, None] - HALF_WINDOW + np.arange(WINDOW_FRAMES)[None, :], 0, len(video) - 1)
    windows = video[index].astype(np.float32)
    if video.dtype == np.uint8:
        windows /= np.float32(255.0)
    return windows


def audio_windows(log_mel: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Log-mel windows centred on the given reference frames.

    Args:
        log_mel: float [80, 4M].
        cols: int [B] reference frame indices.

    Returns:
        float32 [B, 80, 64].
    """
    width = WINDOW_FRAMES * MELS_PER_FRAME
    index = np.clip(MELS_PER_FRAME * (cols[:, None] - HALF_WINDOW) + np.arange(width)[None, :], 0, log_mel.shape[1] - 1)
    return np.ascontiguousarray(log_mel[:, index].transpose(1, 0, 2), dtype=np.float32)


def _is_torch(network: Any) -> bool:
    """Whether a network is a torch module (it has parameters), not an onnxruntime one."""
    return hasattr(network, "parameters")


def _call(network: Any, method: str, *arrays: np.ndarray) -> np.ndarray:
    """``network.method(*arrays)`` as float32 numpy: a torch network gets tensors on its device, in inference mode."""
    if not _is_torch(network):
        return getattr(network, method)(*arrays)
    import torch  # loaded already: the network is a torch module

    device = next(network.parameters()).device
    with torch.inference_mode():
        result = getattr(network, method)(*(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays))
        return result.float().cpu().numpy()


def model_logits(
    model: Any,
    mouth_crops: np.ndarray,
    log_mel: np.ndarray,
    *,
    band: tuple[float, float, int] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Match logits of every (video frame, reference frame) pair the model is asked to score.

    Args:
        model: a TwoTower (all pairs, through embeddings), a LipSync (``sequence_logits``) or any
            network with ``score_candidates`` (pairs inside ``band``); torch's or onnxruntime's
            (`avsync.models.runtime`).
        mouth_crops: uint8 [N, 64, 64] of the video (float [N, C] lip geometry for a network whose
            ``video_input`` is ``"lips"``).
        log_mel: float [80, 4M] of the reference.
        band: ``(offset, slope, radius)`` for pair models; None scores every pair (only up to
            ``MAX_FULL_PAIRS``). Ignored by the TwoTower, whose full matrix is cheap.
        batch_size: windows (TwoTower, at most `WINDOW_BATCH`) or pairs (pair models) per forward pass.
        progress: show a tqdm bar.

    Returns:
        float32 [N, M]; NaN where not scored.
    """
    if mouth_crops.ndim not in (2, 3):
        raise ValueError(f"video features must be grayscale crops [T, 64, 64] or lip geometry [T, C], got {mouth_crops.shape}")
    was_training = _is_torch(model) and model.training
    if _is_torch(model):
        model.eval()
    try:
        if hasattr(model, "sequence_logits"):  # LipSync: whole sequences at once
            return model.sequence_logits(mouth_crops, log_mel)
        if hasattr(model, "encode_video"):
            return _two_tower_logits(model, mouth_crops, log_mel, min(batch_size, WINDOW_BATCH), progress)
        return _pair_logits(model, mouth_crops, log_mel, band, batch_size, progress)
    finally:
        if was_training:
            model.train(True)


EmbeddingStore = Callable[[dict, Callable[[], np.ndarray]], np.ndarray]
"""Keeps a reference's embeddings beyond the process: ``(key, compute) -> embeddings`` loads them
by `key` or stores what `compute` returns (`avsync.features.cache.FeatureCache.embedding`)."""

_song_embeddings: weakref.WeakKeyDictionary[Any, tuple[str, np.ndarray]] = weakref.WeakKeyDictionary()
"""Per two-tower model, the audio embeddings of the last reference it embedded, keyed by the
reference's content and the weights' versions: many shots aligned against one song
(`avsync.pipeline.shots`) embed the song once."""


class _StreamedVideo:
    """The mouth crops a `VideoEmbedder` received so far and one model's embeddings of their complete windows."""

    def __init__(self) -> None:
        self.crops: np.ndarray | None = None
        self.batches: list[np.ndarray] = []


_streamed: weakref.WeakKeyDictionary[Any, _StreamedVideo] = weakref.WeakKeyDictionary()
"""Per two-tower model, the video embeddings `VideoEmbedder` made of a shot while it was being read."""


class VideoEmbedder:
    """Embeds a shot's mouth crops with `model`'s two-tower networks while the shot is still being
    read (`avsync.pipeline.shot_features`: the lips worker sends its crops as they are cut); the
    cost of that shot (`cost_matrix`) then embeds only the windows still missing.

    A window is embedded once its 16 frames have all arrived, in the batches the cost would use
    (`WINDOW_BATCH` rows from row 0), so the embeddings are the ones it would compute: the cost
    uses them only when its crops begin with exactly the crops received here.

    Args:
        model: any network `cost_matrix` takes; only onnxruntime's two-tower networks (an
            ensemble's members too) that read mouth crops embed anything.
    """

    def __init__(self, model: Any) -> None:
        members = model.members if is_ensemble(model) else [model]
        self._towers = [network for network in members
                        if hasattr(network, "encode_video") and video_input(network) != "lips" and not _is_torch(network)]  # fmt: skip
        self._crops: np.ndarray | None = None
        self._count = 0
        for tower in self._towers:
            _streamed[tower] = _StreamedVideo()

    def add(self, mouth_crops: np.ndarray) -> None:
        """The next mouth crops of the shot, in order.

        Args:
            mouth_crops: uint8 ``[K, 64, 64]``.
        """
        if not self._towers or not len(mouth_crops):
            return
        capacity = 0 if self._crops is None else len(self._crops)
        if self._count + len(mouth_crops) > capacity:  # grown by doubling: the crops are copied a few times, not every call
            grown = np.empty((max(2 * capacity, self._count + len(mouth_crops), 256), *mouth_crops.shape[1:]), np.uint8)
            if self._crops is not None:
                grown[: self._count] = self._crops[: self._count]
            self._crops = grown
        self._crops[self._count : self._count + len(mouth_crops)] = mouth_crops
        self._count += len(mouth_crops)
        received = self._crops[: self._count]
        for tower in self._towers:
            streamed = _streamed[tower]
            streamed.crops = received
            start = len(streamed.batches) * WINDOW_BATCH
            while start + WINDOW_BATCH - 1 + (WINDOW_FRAMES - HALF_WINDOW - 1) < self._count:  # the batch's last window complete
                rows = np.arange(start, start + WINDOW_BATCH)
                streamed.batches.append(_call(tower, "encode_video", video_windows(received, rows)))
                start += WINDOW_BATCH


def _video_embeddings(model: Any, mouth_crops: np.ndarray, batch_size: int, progress: bool) -> np.ndarray:
    """A two-tower model's embeddings of every video window ``[N, D]``: those a `VideoEmbedder`
    made while the shot was read (when the crops are the ones it received), then the rest."""
    streamed = _streamed.pop(model, None)
    done: list[np.ndarray] = []
    if streamed is not None and streamed.crops is not None and batch_size == WINDOW_BATCH and streamed.batches:
        received = streamed.crops
        if len(received) <= len(mouth_crops) and np.array_equal(received, mouth_crops[: len(received)]):
            done = streamed.batches
    starts_v = range(len(done) * batch_size, len(mouth_crops), batch_size)
    bar = tqdm(total=len(starts_v), desc="embed", unit="batch", disable=not progress, leave=False)
    for start in starts_v:
        rows = np.arange(start, min(len(mouth_crops), start + batch_size))
        done.append(_call(model, "encode_video", video_windows(mouth_crops, rows)))
        bar.update()
    bar.close()
    return np.concatenate(done)


def _two_tower_logits(model: Any, mouth_crops: np.ndarray, log_mel: np.ndarray, batch_size: int, progress: bool) -> np.ndarray:
    video_emb = _video_embeddings(model, mouth_crops, batch_size, progress)
    audio_emb = _reference_embeddings(model, log_mel, batch_size)
    return _call(model, "score", video_emb, audio_emb)


def _reference_embeddings(model: Any, log_mel: np.ndarray, batch_size: int, store: EmbeddingStore | None = None) -> np.ndarray:
    """A two-tower model's audio embeddings of every reference frame float32 ``[M, D]``, remembered
    per model (and kept by `store` for a network that names its weights, ``weights_id``)."""
    # a torch model's weights' version counters too: training changes them in place between two calls
    weights = ",".join(str(tensor._version) for tensor in itertools.chain(model.parameters(), model.buffers())) if _is_torch(model) else ""
    checksum = array_checksum(log_mel)
    key = f"{checksum}{log_mel.shape}{log_mel.dtype}{weights}"
    remembered = _song_embeddings.get(model)
    if remembered is not None and remembered[0] == key:
        return remembered[1]
    m = log_mel.shape[1] // MELS_PER_FRAME

    def compute() -> np.ndarray:
        return np.concatenate([_call(model, "encode_audio", audio_windows(log_mel, np.arange(start, min(m, start + batch_size))))
                               for start in range(0, m, batch_size)])  # fmt: skip

    weights_id = getattr(model, "weights_id", None)
    if store is not None and weights_id is not None:
        embeddings = store({"log_mel": checksum, "shape": list(log_mel.shape), "dtype": str(log_mel.dtype), "network": weights_id}, compute)
    else:
        embeddings = compute()
    _song_embeddings[model] = (key, embeddings)
    return embeddings


def embed_reference(model: Any, log_mel: np.ndarray, batch_size: int = WINDOW_BATCH, store: EmbeddingStore | None = None) -> None:
    """Embed a reference ahead of its video, for the two-tower networks in `model` (an ensemble's
    members too); `cost_matrix` then reuses the embeddings. Other networks need nothing ahead.

    Args:
        model: any network `cost_matrix` takes.
        log_mel: float [80, 4M] of the reference.
        batch_size: windows per forward pass.
        store: keeps the embeddings beyond this process (`EmbeddingStore`; the song cache of
            `avsync align`), for networks that name their weights (the ONNX exports); None: only
            remembered in memory.
    """
    for network in model.members if is_ensemble(model) else [model]:
        if hasattr(network, "encode_video") and hasattr(network, "encode_audio"):
            was_training = _is_torch(network) and network.training
            if _is_torch(network):
                network.eval()
            try:
                _reference_embeddings(network, log_mel, min(batch_size, WINDOW_BATCH), store)
            finally:
                if was_training:
                    network.train(True)


def _pair_logits(model: Any, mouth_crops: np.ndarray, log_mel: np.ndarray, band: tuple[float, float, int] | None,
                 batch_size: int, progress: bool) -> np.ndarray:
    n, m = len(mouth_crops), log_mel.shape[1] // MELS_PER_FRAME
    if band is None:
        if n * m > MAX_FULL_PAIRS:
            raise ValueError(f"{n}x{m} pairs are too many to score one by one; give a band")
        first = np.zeros(n, np.int64)  # every column for every row
        width = m
    else:
        offset, slope, radius = band
        first = np.floor(offset + slope * np.arange(n) - radius).astype(np.int64)
        width = 2 * int(radius) + 1
    logits = np.full((n, m), np.nan, np.float32)
    rows_per_batch = max(1, batch_size // width)
    starts = range(0, n, rows_per_batch)
    for start in tqdm(starts, desc="score pairs", unit="batch", disable=not progress, leave=False):
        rows = np.arange(start, min(n, start + rows_per_batch))
        cols = first[rows, None] + np.arange(width)[None, :]  # [R, K]
        inside = (cols >= 0) & (cols < m)
        clipped = np.clip(cols, 0, m - 1)
        mel = audio_windows(log_mel, clipped.ravel())
        mel = mel.reshape(len(rows), width, *mel.shape[1:])
        scores = _call(model, "score_candidates", video_windows(mouth_crops, rows), mel)
        r, k = np.nonzero(inside)
        logits[rows[r], cols[r, k]] = scores[r, k]
    return logits


def logit_cost(logits: np.ndarray) -> np.ndarray:
    """``-log sigmoid(logit)``, the match's negative log-likelihood (NaN stays NaN).

    Args:
        logits: float [N, M].

    Returns:
        float64 [N, M].
    """
    cost = logits.astype(np.float64)  # one array of the matrix's size, worked on in place (27 MB for a take in a song)
    np.negative(cost, out=cost)
    with np.errstate(invalid="ignore"):
        return np.logaddexp(0.0, cost, out=cost)


def normalise_cost(raw: np.ndarray, video_valid: np.ndarray | None = None, ref_active: np.ndarray | None = None, *,
                   in_place: bool = False) -> np.ndarray:  # fmt: skip
    """Put a raw cost on a robust z-scale, with 0 where it is uninformative.

    Args:
        raw: float [N, M], lower = better match, NaN where not scored.
        video_valid: bool [N], False for video frames without a usable face.
        ref_active: bool [M], False for silent reference frames.
        in_place: write the result into `raw` (float64) instead of a new array: a caller that
            owns it saves a matrix-sized copy.

    Returns:
        float64 [N, M], finite; median 0 and MAD-scaled spread 1 over the informative cells.
    """
    raw = np.asarray(raw, np.float64)
    if in_place and not raw.flags.writeable:
        raise ValueError("in_place needs a writeable float64 cost")
    usable = np.isfinite(raw)
    if video_valid is not None:
        usable &= np.asarray(video_valid, bool)[:, None]
    if ref_active is not None:
        usable &= np.asarray(ref_active, bool)[None, :]
    if usable.sum() < 2:
        return np.zeros(raw.shape)
    # in place where possible: a 30-s shot against a 3-minute track is 3.4 M cells, 27 MB a copy
    deviations = raw[usable]
    median = np.median(deviations, overwrite_input=True)
    np.abs(np.subtract(deviations, median, out=deviations), out=deviations)
    spread = 1.4826 * np.median(deviations, overwrite_input=True)
    del deviations
    if spread <= 0:
        spread = float(raw[usable].std()) or 1.0
    cost = np.subtract(raw, median, out=raw if in_place else None)
    cost /= spread
    cost[~usable] = 0.0
    return cost


def cost_matrix(
    model: Any,
    mouth_crops: np.ndarray,
    log_mel: np.ndarray,
    *,
    landmarks: np.ndarray | None = None,
    video_valid: np.ndarray | None = None,
    ref_active: np.ndarray | None = None,
    band: tuple[float, float, int] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """The normalised DTW cost of a video against a reference (see the module docstring).

    Args:
        model: TwoTower, LipSync, pair network, or an `Ensemble` of them (the weighted sum of its
            members' normalised costs, normalised again); torch's or onnxruntime's.
        mouth_crops: uint8 [N, 64, 64].
        log_mel: float [80, 4M].
        landmarks: float [N, 68, 2], NaN where no face: the lip geometry of networks that read it
            (`avsync.models.video_input`) is made from them.
        video_valid: bool [N] usable-face mask (``VisualFeatures.valid``).
        ref_active: bool [M] voiced reference frames (``avsync.features.audio.voiced_frames``).
        band: ``(offset, slope, radius)`` for pair networks.
        batch_size: windows or pairs per forward pass.
        progress: show a tqdm bar.

    Returns:
        float64 [N, M].
    """
    if is_ensemble(model):
        total = None  # summed in place: one matrix besides the member's at a time
        for member, weight in zip(model.members, model.weights, strict=True):
            cost = cost_matrix(member, mouth_crops, log_mel, landmarks=landmarks, video_valid=video_valid,
                               ref_active=ref_active, band=band, batch_size=batch_size, progress=progress)  # fmt: skip
            cost *= weight
            total = cost if total is None else np.add(total, cost, out=total)
            del cost
        return normalise_cost(total, video_valid, ref_active, in_place=True)
    video = mouth_crops
    if video_input(model) == "lips":
        if landmarks is None:
            raise ValueError(f"{type(model).__name__} reads lip geometry: pass the landmarks")
        video = lip_geometry(landmarks)
    raw = logit_cost(model_logits(model, video, log_mel, band=band, batch_size=batch_size, progress=progress))
    return normalise_cost(raw, video_valid, ref_active, in_place=True)
