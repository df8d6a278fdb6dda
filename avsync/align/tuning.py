"""The alignment's tuning constants in one place: what each means and where its value came from.

The DTW's own step constraints and penalties stay on `avsync.align.dtw.DTWConfig` (tempo 0.9-1.1,
tempo penalty 1.0, freeze and cut penalties 15); its docstring and docs/results_log.md ("DTW
penalties") give their measurements. Every other value the alignment package tunes is here; the
modules import them from here (`avsync.align.robust`, `place`, `timemap`, `analysis`). Frames are
25-fps frames; z-units are those of the normalised cost (`avsync.align.cost`: median 0, robust
spread 1, uninformative cells 0).

Each docstring says which cases the value was chosen on, how many, which alternatives were
measured and with what numbers. Where no alternative was ever measured it says so, with the commit
that set the value: f5591a5 (2026-11-25) is the aligner's first version, whose message says
"thresholds not yet calibrated", and most of the bridging thresholds have not been revisited since.
The unit tests named (tests/test_robustness.py, tests/test_place.py) show that a rule works at its
value on constructed or synthetic costs; they do not show that the value is the best one. Several
values were chosen on the same real cases their gains are reported on (the 204 warped cases of the
leave-speakers-out folds, docs/real_faces.md); none names a separate set of cases that confirmed it. All were
chosen with models reading dlib's landmarks, the default until 2026-12-06; none was re-chosen when
the face mesh's became the default (the shipped pair's measurements on the mesh are in
docs/real_faces.md).

Not here, on purpose:

- `avsync.pipeline.report.CONFIDENCE_RELIABLE` (3.2) and `CONFIDENCE_UNCERTAIN` (1.0): the
  report's levels for an offset's confidence. They label the result for the reader and change
  nothing in the alignment. Fitted in af7cd36 on the 204 pooled real fold cases (above 3.2: 23 of
  24 offsets within +-1 frame; below 1.0: 72 % of 79 wrong); their docstrings and
  docs/real_faces.md ("Confidence") have the measurements.
- `avsync.align.cost.MAX_FULL_PAIRS` and `WINDOW_BATCH`: limits on memory and work, not accuracy.
- `avsync.align.robust.robust_alignment`'s ``passes=2``: set by hand in f5591a5, not measured.
- `avsync.align.robust.offset_confidence`'s 1.4826: the factor that turns a median absolute
  deviation into a standard deviation for normal data; not tuned.
"""

from __future__ import annotations

# --- Which video frames are scored (`avsync.align.robust.scored_rows`) ---

MIN_WINDOW_FACE_SHARE = 0.75
"""A video frame is scored only if this share of its 16-frame window has a usable face.

Set by hand in f5591a5 (first version, "thresholds not yet calibrated"), not measured."""

# --- Lips that do not follow the vocal (`avsync.align.robust.match_margin`, `weak_match_rows`) ---

MATCH_WINDOW = 25
"""Frames (1 s) over which the matched cost along the path is averaged (`match_margin`); also the
fewest informative rows before `weak_match_rows` and `silent_talk_rows` look at all, the window of
the voiced share in `silent_talk_rows`, and (halved, 12 frames) how far flags are widened before
bridging (`robust_alignment`).

Set by hand in f5591a5, not measured."""

COMPETITOR_RADIUS = 50
"""Shifts (reference frames, 2 s) of the path whose matches compete with the path's own
(`match_margin`). `avsync.align.analysis` also widens a placed take's band by this much on each
side, so the competitors are inside it.

Set by hand in 619bfc8 (2026-11-25, the match margin), not measured: that commit's tests on
constructed costs with diagonal-correlated false-lip noise pass at this value; no other radius was
compared."""

COMPETITOR_EXCLUSION = 5
"""Shifts up to this many frames are the path's own valley (a window model's match is a few
frames wide), not competitors.

Set by hand in 619bfc8, not measured (same tests as `COMPETITOR_RADIUS`)."""

WEAK_MATCH_FRACTION = 0.35
"""Rows whose match margin is below this fraction of the clip's typical (median) margin do not
follow the vocal.

Set by hand in f5591a5 for an earlier statistic (the path cell against the median of its row's
+-25 neighbours); 619bfc8 moved it to the match margin with the value unchanged. Not measured:
no other fraction was compared on any cases."""

MIN_TYPICAL_MATCH = 0.5
"""The clip's typical match margin (z-units) needed before weak stretches are looked for at all;
below it the whole clip is uncertain and nothing is singled out.

Set by hand in f5591a5 (for the earlier statistic, kept by 619bfc8), not measured. Seen once in
19a074c: a clean synthetic song whose typical margin was just above it had 34 % of its rows weak,
61 % after widening; that led to the second `MAX_UNRELIABLE_SHARE` check, not to a new value."""

MAX_UNRELIABLE_SHARE = 0.5
"""At most this share of the video is singled out as not following the vocal (by
`weak_match_rows`, and again after widening and the passes of `robust_alignment`); beyond it
nothing is singled out and the confidence speaks for the clip.

The value was set by hand in f5591a5, not measured against others. 19a074c added the check after
widening because of one clean synthetic song that had 61 % of its rows flagged (`MIN_TYPICAL_MATCH`)."""

# --- Path detours (`avsync.align.robust.path_detours`) ---

MAX_DETOUR = 100
"""Longest detour (frames, 4 s) of the path that `path_detours` looks for.

Set by hand in bcd9a2f (2026-11-25), not measured: the detours were seen on synthetic songs (a
trained model's chance matches in vocal gaps and fake talk; no counts recorded) and the tests (a
lured detour bridged, a real freeze followed) pass at this value; no other length was compared."""

DETOUR_TOLERANCE = 2
"""Frames within which a detour counts as back on the offset it left.

Set by hand in bcd9a2f, not measured (same tests as `MAX_DETOUR`)."""

# --- Reported spans (`avsync.align.robust.unreliable_spans`, `silent_talk_rows`) ---

SPAN_MERGE_GAP = 8
"""Unreliable stretches closer than this many frames are reported as one span; runs of talking
lips closer than this are merged before `MIN_TALK_FRAMES` is applied.

Set by hand in f5591a5, not measured."""

MIN_SPAN_FRAMES = 3
"""Shorter unreliable stretches are not reported (they are still bridged).

Set by hand in f5591a5, not measured."""

# --- When the time map replaces the constant offset (`avsync.align.robust.warp_gain`) ---

MIN_WARP_GAIN = 0.2
"""Mean cost (z-units per informative frame) by which the smoothed time map must beat the constant
offset before it replaces it. The map, not the DTW path: a path always finds some cheaper wiggle
through a weak cost, which smoothing removes.

Chosen on real faces: the 204 warped cases of the leave-speakers-out folds (shipped LipSync +
TwoTower; 114 of them from speakers neither member trained on), the same cases the gains are
reported on (docs/results_log.md, "Warp rule"; docs/real_faces.md).
83957dd (2026-12-01) introduced the rule on the DTW path at 0.3, chosen among 7 thresholds on the
114 unseen cases: frames within +-1 0.436 -> 0.480 (shift 0.55 -> 0.70, tempo 0.44 -> 0.42,
cut+freeze 0.32 -> 0.31). 54b392c (2026-12-02) judged the map instead, at 0.2, chosen among
0.1-0.5: frames within +-1 (all 204 / unseen 114) path rule at 0.3 0.527 / 0.490; map rule at
0.1 0.538 / 0.506, 0.2 0.546 / 0.511, 0.3 0.542 / 0.500, 0.4 0.541 / 0.502, 0.5 0.521 / 0.484;
offset accuracy unchanged (the rule only picks the map); synthetic `make eval` unchanged
(0.91 / 1.55 / 0.80). Map gains, 10th-90th percentile (median): pure shift -0.11 to 0.23 (0.00),
tempo drift 0.04-0.98 (0.52), cut+freeze 0.02-0.92 (0.42). Placed takes use
`PLACED_MIN_WARP_GAIN`."""

PLACED_MIN_WARP_GAIN = 0.4
"""`MIN_WARP_GAIN` for a placed take: a band inside a long song offers a path more chance wiggles
than a clip's own reference does.

Chosen in 1313831 (2026-12-06) among 0.2 / 0.4 / 0.6 / 1.0 on the takes benchmark's seeds 0-1
(`make eval-takes` synthetic songs, shipped model; 37 takes placed right that were not re-timed,
32 warped): under 2 % re-timed on 84 % of the unwarped takes at 0.2 and on all 37 from 0.4;
frames within +-1 of the warped takes 0.23 / 0.18 / 0.15 / 0.11, so 0.4 costs the warped takes
5 points against 0.2. Synthetic takes only; not measured on real takes."""

RETIMED_TOLERANCE = 1.0
"""Frames (25 fps) a time map may depart from the constant offset before a frame counts as
re-timed (`retimed_fraction`: the report's ``retimed_fraction`` and the benchmarks' share
re-timed). A definition of what is measured, not a decision of the aligner.

Set by hand in f5591a5, not measured."""

# --- Lips moving over a voiceless reference (`avsync.align.robust.lip_activity`, `silent_talk_rows`) ---

LIP_ACTIVITY_WINDOW = 13
"""Frames (about 0.5 s) over which lip activity, the spread of the inner-lip opening, is measured.

Set by hand in 19a074c (2026-11-29), not measured against other windows."""

MAX_SILENT_VOICED_SHARE = 0.1
"""A row's aligned reference is voiceless when at most this share of the second around it
(`MATCH_WINDOW`) is voiced.

Set by hand in 19a074c, not measured against other shares."""

TALK_ACTIVITY_FRACTION = 0.5
"""Lips move when their activity reaches this fraction of their typical activity while the
reference is voiced.

Set in 19a074c between the activities seen on synthetic songs (singing median 0.03-0.055, talking
over a voiceless reference 0.03-0.05, lips at rest between lines 0.005-0.015), not by comparing
fractions. The rule as a whole, with the three values of this group (shipped model; 8 synthetic
20-s songs with 3 s of talking between lines, vocal stem as reference; the report in issue 3's
thread): 8 of 8
talking spans flagged (0 of 8 before), offsets unchanged; no flags from it on 8 clean or break
songs nor on 38 real clips against their own audio."""

MIN_TALK_FRAMES = 12
"""Shortest stretch (about 0.5 s) of moving lips over a voiceless reference that is flagged.

Set by hand in 19a074c, not measured against other lengths (the rule's check: `TALK_ACTIVITY_FRACTION`)."""

# --- Placing a take in a long reference (`avsync.align.place`) ---

MIN_TAKE_OVERLAP = 0.5
"""A candidate offset keeps at least this share of the take's frames on the reference.

Set by hand in 54fe417 (2026-12-06), not measured against other shares. That commit's probe
measured placement as a whole (shipped model, in-memory features, 24 takes cut from 40-120-s
synthetic songs): the 16 takes of 5-30 s placed within a frame before and after it, 5 of them
re-timed by 36-75 % before and 1 after (40 %, a 5-s take); 3-s takes 4 of 8 placed (3 before)."""

MIN_INFORMATIVE_CELLS = 25
"""A candidate offset needs this many informative cells (a face and a voiced reference frame,
1 s at 25 fps) before its sum means anything.

Set by hand in 54fe417, not measured. A take with no offset reaching it is aligned over the whole
song without placement (5e11e46: a 0.8-s real clip against a 7-minute reference had none)."""

BAND_TEMPO = 0.1
"""Largest tempo deviation the band holds (the DTW's default 0.9-1.1): a take drifting at 10 %
moves 0.1 frame per frame away from the placed line.

Derived from `DTWConfig`'s default tempo range in 54fe417, not measured on its own."""

BAND_EDIT_FRAMES = 60
"""Frames the band holds beyond the drift: a cut or freeze of up to 2 s plus the placement's own
error (a drifted take's best constant line crosses its path somewhere inside it).

Set by hand in 54fe417, not measured against other widths (the probe of `MIN_TAKE_OVERLAP`
measured the band as a whole)."""

NO_MATCH_CONFIDENCE = 2.8
"""A video whose best offset stands out less than this (`avsync.align.robust.offset_confidence`)
is "no match": nothing in the reference stands out for it. Searching a whole song tries thousands
of offsets, so chance alone stands out more than for a clip against its own music.

Set in 05a87ad (2026-12-01) and measured the same evening on 3-minute tracks, before placement
existed (d4f65da: docs/shots.md, "The no-match threshold"; experiments/probes/no_match.py; shipped
model): each clip's video against a track of other clips' audio, with and without its own audio
inserted at a random place. At 2.8, 1 of 34 real clips
(>= 4 s) and 0 of 10 synthetic songs scored above it against a track without them; every clip
placed against a track with it was placed right (16 of 34 real, 10 of 10 synthetic). Thresholds
2.0 / 2.5 / 3.0 / 3.2 would place 18 (16 right) / 16 / 16 / 14 of the 34 real clips in the track
and 6 / 2 / 1 / 0 of the 34 not in it (synthetic: 1 / 1 / 0 / 0 of 10 not in it). Not re-chosen
since placement (54fe417) nor for songs longer than 3 minutes, which try more offsets."""

# --- From the path to the time map (`avsync.align.timemap.path_to_time_map`) ---

JITTER_WINDOW = 9
"""Frames over which a line's residual is averaged before it is compared with `MAP_TOLERANCE`,
so alternating +-1-frame jitter never splits a piece while a sustained deviation does.

Set by hand in 2d52adc (2026-11-25), not measured."""

MAP_TOLERANCE = 2.0
"""Largest `JITTER_WINDOW`-frame mean residual (frames) a line piece of the time map may leave;
`path_to_time_map`'s default ``tolerance``.

1.0 by hand in 2d52adc; 2.0 since 8f70eeb (2026-11-29), changed together with the DTW's tempo
penalty 0.1 -> 1.0 and measured only as that pair (docs/results_log.md, "DTW penalties"): within
+-1 frame on synthetic val warps 0.951 -> 0.994 (`make train` checkpoint) and 0.975 -> 0.997
(shipped), test warps 0.861 -> 0.881 and 0.869 -> 0.902, 30 real held-out cases 28 % -> 30 %,
in-sync synthetic songs re-timed 13 % -> 1 % against their vocal. On 2026-12-02 (68064ef), alone,
on the shipped ensemble's costs of the 204 real fold cases (min piece 25), frames within +-1
(all / 114 unseen): tolerance 1 0.536 / 0.492, 2 0.545 / 0.511, 3 0.551 / 0.514; kept at 2
(the differences are single cases)."""

MAP_MIN_PIECE = 25
"""Shortest line piece (frames, 1 s) of the time map; `path_to_time_map`'s default ``min_piece``.

Set by hand in 2d52adc; on 2026-12-02 (68064ef), on the 204 real fold cases at tolerance 2, frames
within +-1: min piece 13 0.545, 25 0.545, 50 0.546; kept at 25 (the differences are single cases)."""

# --- The take's own sound against the music (`avsync.align.audio_match`) ---
#
# Chosen on 2026-12-06 with experiments/probes/camera_audio.py (seed 0): takes of 3, 5, 10 and 30 s
# cut from the 8 synthetic songs of `make eval-takes` (2 a length and song) and from the 55 real
# clips' speech in a row (8 a length), each clean, 30 dB quieter under noise, under a 0.8-s reverb
# at 0 dB noise, through a phone band at -5 dB, and under another song's vocal: 480 positives; 256
# negatives (another song's takes, speech against a song, noise). Seed 1 of the same probe is the check.

AUDIO_LEVEL_SECONDS = 2.0
"""Window of the moving average taken off each band's log power (`band_contours`).

On 144 of the probe's hardest synthetic positives (3-10 s; reverb+noise, phone, talk) and 48
negatives, placed within a frame / above every negative: 1 s 0.85 / 0.63 (80 bands), 2 s 0.91 / 0.80,
4 s 0.88 / 0.58 (40 bands). The onset envelopes tried first (each band's rise over its last 30 ms,
8 bands): 0.66 / 0.31; whitening them: 0.47 / 0.08."""

AUDIO_MIN_SECONDS = 2.0
"""Shortest take audio matched at all (shorter: no camera-audio result). Set by hand; the probe's
3-s takes were placed within a frame 92 % of the time."""

AUDIO_MATCH_CONFIDENCE = 6.0
"""Robust z above which a take's sound is taken to be the music's (`AudioMatch.confident`).

On the probe (seed 0): 5.0 / 6.0 / 7.0 / 8.0 took 96 / 89 / 79 / 68 % of the 480 positives (99.3 %
of those at 6.0 within a frame), and none of the 256 negatives (their highest: 4.8). Checked on
seed 1: at 6.0, 90 % of the positives (98.1 % of those within a frame) and 1 of 256 negatives (a
take of noise at 7.4; from 8.0 none)."""

AUDIO_RUNNER_UP_SHARE = 0.8
"""Other positions scoring at least this share of the best's z are candidates too (a repeated section).

Set by hand, not measured: tests/test_camera_audio.py's repeated chorus scores both places alike."""

AUDIO_SEPARATION_S = 1.0
"""Candidates closer than this (seconds) are one. Set by hand."""

CAMERA_LIPS_RADIUS = 12
"""Frames (0.48 s) around a camera-audio candidate within which the lips choose the take's place.

Set by hand: a singer miming to playback is rarely off by more; not measured on real takes (none
here carries its playback)."""
