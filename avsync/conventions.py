"""The time grid every part of avsync shares.

Video is resampled to `FPS` frames per second before landmarks, crops and the model; audio to
`SAMPLE_RATE` Hz mono. Each video frame owns `MELS_PER_FRAME` log-mel columns (a 10 ms hop), and
the models read windows of `WINDOW_FRAMES` video frames (and the `WINDOW_FRAMES * MELS_PER_FRAME`
mel columns at the same time) of `MOUTH_SIZE`-pixel mouth crops and `N_MELS` mel bands. Change these only with retrained models and a cleared cache.
"""

FPS = 25.0
"""Model frame rate: every video is resampled to it (by timestamp)."""
SAMPLE_RATE = 16000
"""Audio sample rate of the features (Hz)."""
MELS_PER_FRAME = 4
"""Log-mel columns per video frame (hop 160 samples = 10 ms at 16 kHz)."""
WINDOW_FRAMES = 16
"""Video frames in one model window (0.64 s)."""
N_MELS = 80
"""Mel bands of the audio feature."""
MOUTH_SIZE = 64
"""Side of a mouth crop in pixels."""
