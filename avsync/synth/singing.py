"""Synthetic singing: a song score (sung syllables on a tempo grid, chords) and its audio stems.

The vocal is formant synthesis: a glottal pulse train with vibrato, portamento and jitter through
vowel formant resonators, with plosive bursts, fricative noise and nasal murmurs as consonants.
The accompaniment is chord pads or plucks, a bass line and a drum kit on the tempo grid. The
drums play on every bar whatever the voice does, so they carry no information about when the
singer's mouth is open.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import signal

SAMPLE_RATE = 44100
VOWELS = ("a", "e", "i", "o", "u")
# (frequency Hz, bandwidth Hz) of the first five formants of each vowel (adult singer).
VOWEL_FORMANTS: dict[str, tuple[tuple[float, float], ...]] = {
    "a": ((800, 80), (1200, 90), (2800, 120), (3500, 150), (4500, 200)),
    "e": ((450, 70), (2000, 100), (2650, 120), (3500, 150), (4500, 200)),
    "i": ((300, 60), (2300, 100), (3000, 120), (3600, 150), (4500, 200)),
    "o": ((480, 70), (820, 80), (2800, 120), (3500, 150), (4500, 200)),
    "u": ((330, 60), (700, 80), (2500, 120), (3500, 150), (4500, 200)),
}
NASAL_FORMANTS = ((260, 60), (1000, 200), (2200, 300), (3300, 300))
LIQUID_FORMANTS = ((360, 80), (1300, 120), (2700, 150), (3500, 200))


@dataclass(frozen=True)
class Consonant:
    """How a syllable-initial consonant sounds and how long it lasts.

    Args:
        kind: ``plosive``, ``fricative``, ``nasal``, ``liquid`` or ``aspirate``.
        voiced: the vocal folds vibrate during it.
        duration_s: length before the vowel starts.
        band_hz: noise band (low, high) of the burst or frication, if any.
    """

    kind: str
    voiced: bool
    duration_s: float
    band_hz: tuple[float, float] | None = None


CONSONANTS: dict[str, Consonant] = {
    "p": Consonant("plosive", False, 0.075, (500, 2000)),
    "b": Consonant("plosive", True, 0.06, (500, 2000)),
    "t": Consonant("plosive", False, 0.07, (3000, 7000)),
    "d": Consonant("plosive", True, 0.055, (2500, 6000)),
    "k": Consonant("plosive", False, 0.075, (1500, 3500)),
    "g": Consonant("plosive", True, 0.06, (1500, 3500)),
    "s": Consonant("fricative", False, 0.11, (4500, 10000)),
    "sh": Consonant("fricative", False, 0.11, (2200, 6000)),
    "f": Consonant("fricative", False, 0.09, (1500, 9000)),
    "h": Consonant("aspirate", False, 0.07),
    "m": Consonant("nasal", True, 0.09),
    "n": Consonant("nasal", True, 0.08),
    "l": Consonant("liquid", True, 0.06),
}
# Syllable-initial consonant and how often it starts a sung syllable ("" = vowel only).
ONSET_WEIGHTS: dict[str, float] = {
    "": 0.16, "m": 0.1, "b": 0.06, "p": 0.05, "n": 0.09, "l": 0.1, "d": 0.07, "t": 0.08,
    "k": 0.06, "g": 0.03, "s": 0.08, "sh": 0.03, "f": 0.04, "h": 0.05,
}  # fmt: skip
VOWEL_WEIGHTS = {"a": 0.3, "e": 0.2, "i": 0.18, "o": 0.2, "u": 0.12}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
# Chord progressions as scale degrees, one chord per bar.
PROGRESSIONS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 3, 4, 3), (0, 5, 3, 4), (0, 3, 0, 4))
BEATS_PER_BAR = 4


@dataclass(frozen=True)
class Syllable:
    """One syllable of the score (sung, or mouthed without sound in a fake-talk span).

    Args:
        start: time the consonant starts (seconds); equals `vowel_start` without consonant.
        vowel_start: time the vowel starts (on the beat grid, humanised).
        end: time the sound has died away.
        consonant: key of `CONSONANTS`, or ``""``.
        vowel: one of `VOWELS`.
        pitch_hz: sung fundamental frequency (0 for a mouthed, unsung syllable).
        loudness: relative level in ``(0, 1]``.
    """

    start: float
    vowel_start: float
    end: float
    consonant: str
    vowel: str
    pitch_hz: float
    loudness: float

    def to_json(self) -> dict[str, float | str]:
        """The syllable as a JSON object (times rounded to 0.1 ms)."""
        return {
            "start": round(self.start, 4), "vowel_start": round(self.vowel_start, 4), "end": round(self.end, 4),
            "consonant": self.consonant, "vowel": self.vowel, "pitch_hz": round(self.pitch_hz, 2),
            "loudness": round(self.loudness, 3),
        }  # fmt: skip


@dataclass(frozen=True)
class Chord:
    """A chord of the accompaniment: MIDI `notes` sounding from `start` to `end` (seconds)."""

    start: float
    end: float
    notes: tuple[int, ...]


@dataclass(frozen=True)
class Voice:
    """The singer's voice: register, vibrato and timbre.

    Args:
        low_midi: lowest note of the melody range.
        vibrato_hz: vibrato rate.
        vibrato_semitones: vibrato depth (peak).
        formant_scale: formant frequencies are multiplied by it (vocal tract length).
        breathiness: level of aspiration noise mixed into voiced sound.
    """

    low_midi: int
    vibrato_hz: float
    vibrato_semitones: float
    formant_scale: float
    breathiness: float


@dataclass(frozen=True)
class Score:
    """What the song plays: its grid, chords, the singer's voice and the sung syllables.

    Args:
        seconds: length of the song excerpt.
        tempo_bpm: beats per minute.
        grid_origin: time of the first bar line (negative: the excerpt starts mid-song).
        key_midi: tonic of the key.
        minor: minor key rather than major.
        chords: chords covering the whole excerpt.
        voice: the singer.
        syllables: the sung syllables in time order.
    """

    seconds: float
    tempo_bpm: float
    grid_origin: float
    key_midi: int
    minor: bool
    chords: tuple[Chord, ...]
    voice: Voice
    syllables: tuple[Syllable, ...]

    @property
    def beat_s(self) -> float:
        """Length of one beat in seconds."""
        return 60.0 / self.tempo_bpm


def midi_to_hz(midi: float) -> float:
    """Frequency of a (fractional) MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _scale_note(key_midi: int, scale: tuple[int, ...], degree: int) -> int:
    octave, step = divmod(degree, len(scale))
    return key_midi + 12 * octave + scale[step]


def _overlaps(start: float, end: float, spans: list[tuple[float, float]]) -> tuple[float, float] | None:
    for span in spans:
        if start < span[1] and end > span[0]:
            return span
    return None


def _weighted_choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    probabilities = np.array([weights[key] for key in keys])
    return keys[int(rng.choice(len(keys), p=probabilities / probabilities.sum()))]


def compose_score(
    rng: np.random.Generator, seconds: float, silent_spans: list[tuple[float, float]] | None = None
) -> Score:
    """Compose a song excerpt: tempo, key, chords and sung phrases separated by rests.

    Syllable vowels start on a half-beat grid (humanised by a few ms) with varied note lengths,
    so onsets share the drums' tempo without following their pattern.

    Args:
        rng: the random source (the only one; same state, same score).
        seconds: length of the excerpt.
        silent_spans: (start, end) spans in seconds where the singer must not sing.

    Returns:
        The score.
    """
    silent = sorted(silent_spans or [])
    tempo = float(rng.uniform(76, 138))
    beat = 60.0 / tempo
    bar = beat * BEATS_PER_BAR
    grid_origin = -float(rng.uniform(0, bar))
    minor = bool(rng.random() < 0.4)
    scale = MINOR_SCALE if minor else MAJOR_SCALE
    high_voice = bool(rng.random() < 0.55)
    low_midi = int(rng.integers(55, 61) if high_voice else rng.integers(44, 50))
    voice = Voice(
        low_midi=low_midi,
        vibrato_hz=float(rng.uniform(4.8, 6.5)),
        vibrato_semitones=float(rng.uniform(0.15, 0.6)),
        formant_scale=float(rng.uniform(1.05, 1.17) if high_voice else rng.uniform(0.92, 1.03)),
        breathiness=float(rng.uniform(0.02, 0.12)),
    )
    key_midi = low_midi
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    chords = []
    n_bars = int(np.ceil((seconds - grid_origin) / bar))
    for index in range(n_bars):
        degree = progression[index % len(progression)]
        root = _scale_note(key_midi - 12, scale, degree)
        notes = tuple(_scale_note(key_midi - 12, scale, degree + step) for step in (0, 2, 4))
        if rng.random() < 0.3:
            notes += (_scale_note(key_midi - 12, scale, degree + 6),)
        start = grid_origin + index * bar
        chords.append(Chord(start, start + bar, (root - 12,) + notes))

    syllables: list[Syllable] = []
    half = beat / 2
    first = max(0.25, float(rng.uniform(0.3, min(2.0, seconds / 4))))
    cursor = grid_origin + np.ceil((first - grid_origin) / half) * half
    degree = int(rng.integers(2, 6))
    previous_end = -1.0
    while cursor < seconds - 0.4:
        phrase_length = int(rng.integers(3, 10))
        for _ in range(phrase_length):
            note_beats = float(rng.choice([0.5, 1.0, 1.5, 2.0, 3.0], p=[0.28, 0.34, 0.14, 0.16, 0.08]))
            vowel_start = cursor + float(rng.normal(0, 0.012))
            consonant = _weighted_choice(rng, ONSET_WEIGHTS)
            vowel = _weighted_choice(rng, VOWEL_WEIGHTS)
            consonant_s = CONSONANTS[consonant].duration_s if consonant else 0.0
            if syllables and vowel_start - consonant_s < previous_end + 0.02:
                # The consonant takes its time from the end of the previous note, if that is long enough.
                last = syllables[-1]
                cut_to = vowel_start - consonant_s - 0.02
                if cut_to - last.vowel_start >= 0.12:
                    syllables[-1] = replace(last, end=min(last.end, cut_to))
                else:
                    consonant, consonant_s = "", 0.0
                    vowel_start = max(vowel_start, previous_end + 0.02)
            end = vowel_start + note_beats * beat * float(rng.uniform(0.72, 0.95))
            start = vowel_start - consonant_s
            blocked = _overlaps(start, end + 0.05, silent)
            if blocked is not None or end > seconds - 0.05:
                if blocked is not None:
                    cursor = grid_origin + np.ceil((blocked[1] + 0.2 - grid_origin) / half) * half
                break
            degree = int(np.clip(degree + rng.choice([-2, -1, 0, 1, 2], p=[0.15, 0.27, 0.16, 0.27, 0.15]), 0, 10))
            pitch = midi_to_hz(_scale_note(key_midi, scale, degree))
            syllables.append(Syllable(start, vowel_start, end, consonant, vowel, pitch, float(rng.uniform(0.65, 1.0))))
            previous_end = end
            cursor += note_beats * beat
        else:
            cursor += float(rng.choice([1, 2, 2, 3, 4])) * beat
            continue
        cursor = max(cursor, previous_end) + float(rng.choice([1, 2, 2, 3])) * beat
        cursor = grid_origin + np.ceil((cursor - grid_origin) / half) * half
    return Score(seconds, tempo, grid_origin, key_midi, minor, tuple(chords), voice, tuple(syllables))


def mouthed_syllables(rng: np.random.Generator, spans: list[tuple[float, float]]) -> list[Syllable]:
    """Quick spoken syllables to mouth silently inside `spans` (talking, not singing).

    Args:
        rng: the random source.
        spans: (start, end) spans in seconds.

    Returns:
        Syllables with ``pitch_hz = 0`` filling each span with short words and pauses.
    """
    syllables = []
    for span_start, span_end in spans:
        cursor = span_start + float(rng.uniform(0.05, 0.2))
        while True:
            consonant = _weighted_choice(rng, ONSET_WEIGHTS)
            consonant_s = CONSONANTS[consonant].duration_s if consonant else 0.0
            vowel_start = cursor + consonant_s
            end = vowel_start + float(rng.uniform(0.1, 0.28))
            if end > span_end - 0.05:
                break
            syllables.append(Syllable(cursor, vowel_start, end, consonant, _weighted_choice(rng, VOWEL_WEIGHTS), 0.0,
                                      float(rng.uniform(0.5, 0.9))))  # fmt: skip
            cursor = end + (float(rng.uniform(0.15, 0.4)) if rng.random() < 0.25 else 0.02)
    return syllables


@lru_cache(maxsize=64)
def _resonators(formants: tuple[tuple[float, float], ...], scale: float, sample_rate: int) -> np.ndarray:
    """Second-order sections of a cascade of unity-DC-gain formant resonators."""
    sections = []
    for frequency, bandwidth in formants:
        frequency = min(frequency * scale, 0.45 * sample_rate)
        radius = np.exp(-np.pi * bandwidth / sample_rate)
        a1, a2 = -2 * radius * np.cos(2 * np.pi * frequency / sample_rate), radius**2
        sections.append([1 + a1 + a2, 0.0, 0.0, 1.0, a1, a2])
    return np.array(sections)


@lru_cache(maxsize=64)
def _band(low_hz: float, high_hz: float, sample_rate: int) -> np.ndarray:
    """Butterworth band-pass sections for a noise band."""
    return signal.butter(2, [low_hz, min(high_hz, 0.45 * sample_rate)], btype="bandpass", fs=sample_rate, output="sos")


def _glottal_flow(phase: np.ndarray) -> np.ndarray:
    """Rosenberg glottal flow pulse at cycle phase in [0, 1) (opening 40 %, closing 16 %)."""
    opening, closing = 0.4, 0.16
    flow = np.zeros_like(phase)
    rising = phase < opening
    flow[rising] = 0.5 * (1 - np.cos(np.pi * phase[rising] / opening))
    falling = (phase >= opening) & (phase < opening + closing)
    flow[falling] = np.cos(np.pi * (phase[falling] - opening) / (2 * closing))
    return flow


def _ramp_envelope(n: int, attack: int, release: int) -> np.ndarray:
    envelope = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    if attack:
        envelope[:attack] = np.linspace(0, 1, attack, endpoint=False) ** 1.5
    if release:
        envelope[n - release :] = np.linspace(1, 0, release) ** 1.5
    return envelope


def _syllable_sound(
    syllable: Syllable, previous_pitch: float | None, voice: Voice, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """Audio of one sung syllable from its `start` to its `end` (float64 [n])."""
    consonant = CONSONANTS.get(syllable.consonant)
    n = max(1, round((syllable.end - syllable.start) * sample_rate))
    vowel_at = round((syllable.vowel_start - syllable.start) * sample_rate)
    t = np.arange(n) / sample_rate
    # Fundamental: portamento from the previous note, delayed vibrato, slow drift and jitter.
    semitones = np.zeros(n)
    if previous_pitch is not None:
        glide = 12 * np.log2(previous_pitch / syllable.pitch_hz)
        semitones += glide * np.exp(-np.maximum(t - vowel_at / sample_rate, 0) / 0.025) * (t < vowel_at / sample_rate + 0.15)
    vowel_t = np.maximum(t - vowel_at / sample_rate, 0)
    vibrato_ramp = np.clip((vowel_t - 0.15) / 0.3, 0, 1)
    semitones += voice.vibrato_semitones * vibrato_ramp * np.sin(2 * np.pi * voice.vibrato_hz * vowel_t + rng.uniform(0, 6.3))
    drift = signal.sosfilt(signal.butter(1, 6, fs=sample_rate, output="sos"), rng.standard_normal(n)) * 1.5
    semitones += drift + 0.04 * rng.standard_normal(n)
    f0 = syllable.pitch_hz * 2.0 ** (semitones / 12)
    phase = np.mod(np.cumsum(f0) / sample_rate + rng.uniform(0, 1), 1.0)
    flow = _glottal_flow(phase)
    source = np.diff(flow, prepend=flow[0]) * (sample_rate / f0)
    breath = signal.sosfilt(_band(1500, 8000, sample_rate), rng.standard_normal(n)) * flow
    source = source + voice.breathiness * 4 * breath
    voiced = signal.sosfilt(_resonators(VOWEL_FORMANTS[syllable.vowel], voice.formant_scale, sample_rate), source)
    voiced /= np.sqrt(np.mean(voiced[vowel_at:] ** 2)) + 1e-9
    sound = np.zeros(n)
    release = min(round(0.07 * sample_rate), (n - vowel_at) // 2)
    vowel_envelope = np.zeros(n)
    vowel_envelope[vowel_at:] = _ramp_envelope(n - vowel_at, round(0.035 * sample_rate), release)
    swell = 1 + 0.12 * np.sin(np.pi * np.clip(vowel_t / max(t[-1] - vowel_at / sample_rate, 1e-3), 0, 1))
    sound += voiced * vowel_envelope * swell
    if consonant is None or vowel_at == 0:
        return sound * syllable.loudness
    head = slice(0, vowel_at)
    fade = np.clip((np.arange(vowel_at) - (vowel_at - 0.01 * sample_rate)) / (0.01 * sample_rate), 0, 1)
    noise = rng.standard_normal(vowel_at)
    if consonant.kind in ("nasal", "liquid"):
        formants = NASAL_FORMANTS if consonant.kind == "nasal" else LIQUID_FORMANTS
        murmur = signal.sosfilt(_resonators(formants, voice.formant_scale, sample_rate), source)
        murmur /= np.sqrt(np.mean(murmur**2)) + 1e-9
        level = 0.35 if consonant.kind == "nasal" else 0.55
        sound[head] += level * murmur[head] * _ramp_envelope(vowel_at, round(0.015 * sample_rate), 0)
    elif consonant.kind == "plosive":
        burst_n = round(0.012 * sample_rate)
        aspiration_n = 0 if consonant.voiced else round(0.03 * sample_rate)
        burst_at = max(0, vowel_at - burst_n - aspiration_n)
        burst = signal.sosfilt(_band(*consonant.band_hz, sample_rate), noise[: burst_n + aspiration_n])
        burst *= np.concatenate([np.ones(burst_n) * 1.8, np.linspace(0.6, 0.2, aspiration_n)])
        sound[burst_at : burst_at + len(burst)] += burst / (np.std(burst[:burst_n]) + 1e-9) * 0.6
        if consonant.voiced:
            voice_bar = signal.sosfilt(_band(80, 400, sample_rate), source[head]) * 0.3
            sound[head] += voice_bar / (np.std(voice_bar) + 1e-9) * 0.08
    elif consonant.kind == "fricative":
        hiss = signal.sosfilt(_band(*consonant.band_hz, sample_rate), noise)
        level = 0.25 if syllable.consonant == "f" else 0.5
        sound[head] += level * hiss / (np.std(hiss) + 1e-9) * _ramp_envelope(vowel_at, vowel_at // 3, vowel_at // 4)
    else:  # aspirate: breath noise shaped by the coming vowel
        breath_noise = signal.sosfilt(_resonators(VOWEL_FORMANTS[syllable.vowel], voice.formant_scale, sample_rate), noise)
        sound[head] += 0.2 * breath_noise / (np.std(breath_noise) + 1e-9) * _ramp_envelope(vowel_at, vowel_at // 2, 0)
    sound[head] *= 1 - 0.5 * fade
    return sound * syllable.loudness


def synthesize_vocal(score: Score, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Render the sung syllables of `score` (dry, no reverb).

    Args:
        score: the song.
        rng: the random source for jitter and noise.
        sample_rate: output rate in Hz.

    Returns:
        float32 ``[round(seconds * sample_rate)]``, RMS about 0.1 while singing.
    """
    vocal = np.zeros(round(score.seconds * sample_rate))
    previous: Syllable | None = None
    for syllable in score.syllables:
        near = previous is not None and syllable.start - previous.end < 0.2
        sound = _syllable_sound(syllable, previous.pitch_hz if near else None, score.voice, rng, sample_rate)
        first = round(syllable.start * sample_rate)
        sound = sound[: len(vocal) - first]
        vocal[first : first + len(sound)] += sound
        previous = syllable
    return (vocal * 0.1).astype(np.float32)


def _drum_kit(rng: np.random.Generator, sample_rate: int) -> dict[str, np.ndarray]:
    """One-shot drum sounds: kick, snare and closed hi-hat."""
    t = np.arange(round(0.35 * sample_rate)) / sample_rate
    kick_phase = 2 * np.pi * np.cumsum(45 + 110 * np.exp(-t / 0.03)) / sample_rate
    kick = np.sin(kick_phase) * np.exp(-t / 0.12)
    snare_noise = signal.sosfilt(_band(1200, 7000, sample_rate), rng.standard_normal(len(t)))
    snare = 0.5 * snare_noise / np.std(snare_noise[:2000]) * np.exp(-t / 0.07) + 0.6 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
    hat_t = t[: round(0.08 * sample_rate)]
    hat_noise = signal.sosfilt(signal.butter(4, 7000, btype="highpass", fs=sample_rate, output="sos"), rng.standard_normal(len(hat_t)))
    hat = hat_noise / np.std(hat_noise) * np.exp(-hat_t / 0.018) * 0.35
    return {"kick": kick, "snare": snare * 0.7, "hat": hat}


def _add_at(track: np.ndarray, sound: np.ndarray, time: float, gain: float, sample_rate: int) -> None:
    first = round(time * sample_rate)
    if first >= len(track) or first + len(sound) <= 0:
        return
    skip = max(0, -first)
    part = sound[skip : len(track) - first]
    track[first + skip : first + skip + len(part)] += gain * part


@lru_cache(maxsize=256)
def _tone(midi: int, seconds: float, decay_s: float, harmonics: int, sample_rate: int) -> np.ndarray:
    """A plucked/pad tone: decaying harmonics (higher ones decay faster)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    frequency = midi_to_hz(midi)
    tone = np.zeros_like(t)
    for k in range(1, harmonics + 1):
        if k * frequency < 0.45 * sample_rate:
            tone += np.sin(2 * np.pi * k * frequency * t + k) / k * np.exp(-t * k / decay_s)
    attack = min(len(t), round(0.006 * sample_rate))
    tone[:attack] *= np.linspace(0, 1, attack)
    tone[-attack:] *= np.linspace(1, 0, attack)
    return tone


def synthesize_accompaniment(score: Score, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Render chords (pad or plucked), bass and drums of `score`.

    Args:
        score: the song.
        rng: the random source for the drum sounds, pattern and humanisation.
        sample_rate: output rate in Hz.

    Returns:
        float32 ``[round(seconds * sample_rate)]``, unit RMS.
    """
    n = round(score.seconds * sample_rate)
    drums, bass, harmony = np.zeros(n), np.zeros(n), np.zeros(n)
    kit = _drum_kit(rng, sample_rate)
    beat = score.beat_s
    step = beat / 4
    plucked = bool(rng.random() < 0.5)
    extra_kicks = [s for s in (6, 10, 14, 3) if rng.random() < 0.35]
    hat_steps = range(0, 16, 1 if rng.random() < 0.3 else 2)
    for chord in score.chords:
        for s in range(16):
            time = chord.start + s * step + float(rng.normal(0, 0.004))
            if s in (0, 8) or s in extra_kicks:
                _add_at(drums, kit["kick"], time, float(rng.uniform(0.8, 1.0)), sample_rate)
            if s in (4, 12):
                _add_at(drums, kit["snare"], time, float(rng.uniform(0.75, 1.0)), sample_rate)
            if s in hat_steps:
                _add_at(drums, kit["hat"], time, float(rng.uniform(0.4, 1.0)) * (1.0 if s % 4 == 0 else 0.7), sample_rate)
        root, notes = chord.notes[0], chord.notes[1:]
        for beat_index in range(BEATS_PER_BAR):
            bass_note = root + (7 if beat_index == 2 and rng.random() < 0.3 else 0)
            _add_at(bass, _tone(bass_note, beat * 0.95, 0.5, 3, sample_rate), chord.start + beat_index * beat, 1.0, sample_rate)
        if plucked:
            for beat_index in range(BEATS_PER_BAR * 2):
                note = notes[int(rng.integers(len(notes)))] + 12
                _add_at(harmony, _tone(note, beat * 1.5, 0.6, 6, sample_rate), chord.start + beat_index * beat / 2, 0.6, sample_rate)
        else:
            length = chord.end - chord.start
            pad = sum(_tone(note + 12, length, 4.0, 5, sample_rate) for note in notes)
            pad = pad * _ramp_envelope(len(pad), round(0.15 * sample_rate), round(0.2 * sample_rate))
            _add_at(harmony, pad, chord.start, 0.5, sample_rate)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / (np.sqrt(np.mean(x**2)) + 1e-9)

    accompaniment = 1.0 * unit(drums) + 0.7 * unit(bass) + float(rng.uniform(0.5, 0.9)) * unit(harmony)
    return unit(accompaniment).astype(np.float32)


def add_reverb(vocal: np.ndarray, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Convolve with a synthetic room: exponentially decaying noise (random RT60 0.6-2.0 s).

    Args:
        vocal: float ``[N]`` dry signal.
        rng: the random source for the impulse response.
        sample_rate: rate in Hz.

    Returns:
        float32 ``[N]``: dry signal plus the reverberant tail (cut at N).
    """
    rt60 = float(rng.uniform(0.6, 2.0))
    predelay = round(float(rng.uniform(0.01, 0.04)) * sample_rate)
    t = np.arange(round(rt60 * sample_rate)) / sample_rate
    tail = rng.standard_normal(len(t)) * np.exp(-6.91 * t / rt60)
    tail = signal.sosfilt(signal.butter(1, 5000, fs=sample_rate, output="sos"), tail)
    impulse = np.concatenate([np.zeros(predelay), tail / np.sqrt(np.sum(tail**2))])
    wet = signal.fftconvolve(vocal.astype(np.float64), impulse)[: len(vocal)]
    wet_gain = float(rng.uniform(0.3, 0.7))
    return (vocal + wet_gain * wet).astype(np.float32)


@dataclass
class Stems:
    """The audio of one song, all float32 ``[N]`` at `sample_rate`; ``mix = vocal_reverb + accompaniment``.

    Args:
        vocal: dry vocal.
        vocal_reverb: vocal with room reverb.
        accompaniment: chords, bass and drums.
        mix: what the listener hears (and the video's audio track).
        sample_rate: rate in Hz.
        vocal_to_accompaniment_db: RMS level of the reverberant vocal over the accompaniment.
    """

    vocal: np.ndarray
    vocal_reverb: np.ndarray
    accompaniment: np.ndarray
    mix: np.ndarray
    sample_rate: int
    vocal_to_accompaniment_db: float


def render_stems(score: Score, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> Stems:
    """Render every stem of `score` and mix them at a random vocal-to-accompaniment ratio.

    All stems share one gain so that the mix peaks at -1 dBFS and ``mix = vocal_reverb +
    accompaniment`` holds sample by sample.

    Args:
        score: the song.
        rng: the random source.
        sample_rate: rate in Hz.

    Returns:
        The stems.
    """
    vocal = synthesize_vocal(score, rng, sample_rate)
    vocal_reverb = add_reverb(vocal, rng, sample_rate)
    accompaniment = synthesize_accompaniment(score, rng, sample_rate)
    ratio_db = float(rng.uniform(-1.0, 7.0))
    vocal_rms = float(np.sqrt(np.mean(vocal_reverb.astype(np.float64) ** 2))) or 1.0
    accompaniment = accompaniment * (vocal_rms / 10 ** (ratio_db / 20))
    mix = vocal_reverb + accompaniment
    gain = 0.89 / max(float(np.max(np.abs(mix))), 1e-9)
    return Stems(
        vocal=(vocal * gain).astype(np.float32),
        vocal_reverb=(vocal_reverb * gain).astype(np.float32),
        accompaniment=(accompaniment * gain).astype(np.float32),
        mix=(mix * gain).astype(np.float32),
        sample_rate=sample_rate,
        vocal_to_accompaniment_db=ratio_db,
    )
