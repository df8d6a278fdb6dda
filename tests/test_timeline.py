"""The editor's timeline of a whole shoot: placement rules and the four file formats, read back."""

from __future__ import annotations

import errno
import pathlib
import xml.etree.ElementTree as ET
from fractions import Fraction

import opentimelineio as otio
import pytest

from avsync.errors import AvsyncError
from avsync.pipeline.timeline import (
    TIMELINE_SUFFIXES,
    ShotPlacement,
    UnplacedShot,
    build_timeline,
    check_timeline_path,
    edl_track_files,
    placement_from_report,
    write_timeline,
)

RATES = {"23.976": 24000 / 1001, "25": 25.0, "29.97": 30000 / 1001, "30": 30.0}
MUSIC_S = 60.0


def _report(video, fps, offset_s, video_duration_s, **extra):
    report = {
        "video": video,
        "reference": "/shoot/song.wav",
        "fps": fps,
        "offset_s": offset_s,
        "offset_frames": round(offset_s * fps),
        "confidence": 3.4149,
        "confidence_level": "reliable",
        "time_map": [[0.0, 0.0]],
        "retimed_fraction": 0.0,
        "warnings": [],
        "video_duration_s": video_duration_s,
        "reference_duration_s": MUSIC_S,
        "output": None,
        "mode": None,
    }
    report.update(extra)
    return report


def _shoot(tmp_path):
    """Three matched shots (A and B overlap; C, warp mode, fits after A) and one unplaced shot."""
    a = _report(str(tmp_path / "take_a.mp4"), 25.0, 3.37, 40.0)  # late video: starts 3.37 s in
    b = _report(
        str(tmp_path / "take b.mov"), 30000 / 1001, -12.345, 30.0,  # early video: lands at 12.345 s
        confidence=1.2, confidence_level="uncertain", warnings=["no face for 2.0 s", "re-timed 30%"],
    )
    c = _report(
        str(tmp_path / "take_c.mp4"), 25.0, 0.8, 20.0, confidence=0.31, confidence_level="unreliable",
        mode="warp", output=str(tmp_path / "take_c.synced.mp4"), output_start_s=41.5, output_duration_s=17.25,
    )
    placements = [
        placement_from_report(a, "offset"),
        placement_from_report(b, "offset"),
        placement_from_report(c, "warp"),
    ]
    unplaced = [UnplacedShot("take_d.mp4", str(tmp_path / "take_d.mp4"), "no match (best score 0.42)", 0.42)]
    return placements, unplaced


# expected: name -> (record start, duration, source start, media rate, marker name)
EXPECTED = {
    "take_a.mp4": (0.0, 36.63, 3.37, 25.0, "confidence 3.41 (reliable)"),
    "take b.mov": (12.345, 30.0, 0.0, 30000 / 1001, "confidence 1.20 (uncertain)"),
    "take_c.mp4": (41.5, 17.25, 0.0, 25.0, "confidence 0.31 (unreliable)"),
}


def test_placement_from_report_follows_the_rules(tmp_path):
    late = placement_from_report(_report("/s/late.mp4", 25.0, 2.5, 40.0), "offset")
    assert (late.record_start_s, late.source_start_s, late.duration_s) == (0.0, 2.5, 37.5)
    assert (late.name, late.media, late.media_fps, late.media_duration_s) == ("late.mp4", "/s/late.mp4", 25.0, 40.0)

    early = placement_from_report(_report("/s/early.mp4", 25.0, -10.0, 30.0), "offset")
    assert (early.record_start_s, early.source_start_s, early.duration_s) == (10.0, 0.0, 30.0)

    past_the_end = placement_from_report(_report("/s/long.mp4", 25.0, -50.0, 30.0), "offset")
    assert (past_the_end.record_start_s, past_the_end.duration_s) == (50.0, MUSIC_S - 50.0)
    longer = placement_from_report(_report("/s/longer.mp4", 25.0, 5.0, 90.0), "offset")
    assert (longer.source_start_s, longer.duration_s) == (5.0, MUSIC_S)

    warped = placement_from_report(
        _report("/s/w.mp4", 29.97, -3.0, 30.0, warnings=["w"], confidence_level="uncertain",
                mode="warp", output="/o/w.synced.mp4", output_start_s=3.2, output_duration_s=26.5),
        "warp",
    )
    assert warped == ShotPlacement("w.mp4", "/o/w.synced.mp4", 29.97, 26.5, 0.0, 3.2, 26.5, 3.4149, "uncertain", ("w",))

    with pytest.raises(ValueError):
        placement_from_report(_report("/s/out.mp4", 25.0, -70.0, 30.0), "offset")
    with pytest.raises(ValueError):
        placement_from_report(_report("/s/none.mp4", 25.0, 0.0, 30.0), "warp")  # no output
    with pytest.raises(ValueError):
        placement_from_report(_report("/s/x.mp4", 25.0, 0.0, 30.0), "stretch")


def _record_range(clip):
    """The clip's range on its track's time line (EDL tracks start at their first record in)."""
    track = clip.parent()
    shift = track.source_range.start_time if track.source_range else otio.opentime.RationalTime(0, 1)
    placed = clip.range_in_parent()
    return placed.start_time - shift, placed.duration


def _check_clip(clip, name, fps, source_rate, slack_frames=0):
    record, duration, source, media_rate, _ = EXPECTED[name]
    start, length = _record_range(clip)
    half = (0.5 + slack_frames) / fps + 1e-6
    assert abs(start.to_seconds() - record) <= half, (name, start.to_seconds(), record)
    assert abs((start + length).to_seconds() - (record + duration)) <= half, name
    source_half = (0.5 + slack_frames) / (source_rate or media_rate) + 1e-6
    assert abs(clip.source_range.start_time.to_seconds() - source) <= source_half, name


def _clips_by_name(timeline):
    return {clip.name: clip for clip in timeline.find_clips()}


def _music_track_checks(timeline, fps):
    audio = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
    assert len(audio) == 1
    (music,) = audio[0].find_clips()
    assert music.name == "song.wav"
    start, length = _record_range(music)
    assert start.to_seconds() == 0
    assert abs(length.to_seconds() - MUSIC_S) <= 0.5 / fps + 1e-6


def _fcpx_times(path):
    """name -> (record start, duration, source start) from the FCP X XML's own rational times."""
    root = ET.parse(path).getroot()
    times, lanes = {}, {}
    for parent in root.iter("spine"):
        for item in parent:
            base = _seconds(item.get("offset")) - _seconds(item.get("start"))
            for clip in [item, *item.findall("clip")]:
                if clip.tag != "clip":
                    continue
                record = _seconds(clip.get("offset")) if clip is item else base + _seconds(clip.get("offset"))
                times[clip.get("name")] = (record, _seconds(clip.get("duration")), _seconds(clip.get("start")))
                lanes[clip.get("name")] = clip.get("lane", "0")
    return times, lanes


def _seconds(value):
    return Fraction(value.rstrip("s")) if value else Fraction(0)


@pytest.mark.parametrize("suffix", TIMELINE_SUFFIXES)
@pytest.mark.parametrize("rate_name", RATES)
def test_timeline_round_trip(tmp_path, suffix, rate_name):
    fps = RATES[rate_name]
    placements, unplaced = _shoot(tmp_path)
    timeline = build_timeline(str(tmp_path / "song.wav"), MUSIC_S, placements, unplaced, fps, "shoot")
    path = tmp_path / f"shoot{suffix}"
    written = write_timeline(timeline, path)
    ntsc = rate_name in ("23.976", "29.97")

    if suffix == ".edl":
        assert written == [path, tmp_path / "shoot.V2.edl"]  # one video track per EDL
        main = otio.adapters.read_from_file(str(path), rate=fps)
        side = otio.adapters.read_from_file(str(written[1]), rate=fps)
        assert [clip.name for clip in main.video_tracks()[0].find_clips()] == ["take_a.mp4", "take_c.mp4"]
        assert [clip.name for clip in side.video_tracks()[0].find_clips()] == ["take b.mov"]
        text = path.read_text()
        for timeline_back in (main, side):
            _music_track_checks(timeline_back, fps)
            for clip in timeline_back.video_tracks()[0].find_clips():
                _check_clip(clip, clip.name, fps, source_rate=fps)  # CMX 3600: sources in timeline frames
                if rate_name == "29.97":  # drop-frame LOC lines are written but the reader skips them
                    assert len(clip.markers) == 0
                    assert f"{EXPECTED[clip.name][4].upper()}\n" in text + written[1].read_text()
                else:
                    assert [m.name for m in clip.markers] == [EXPECTED[clip.name][4].upper()]
        assert ("FCM: DROP FRAME" in text) == (rate_name == "29.97")
        assert (";" in text.splitlines()[3]) == (rate_name == "29.97")
        return

    if suffix == ".fcpxml":
        times, lanes = _fcpx_times(path)
        half = Fraction(1, 2) / Fraction(fps).limit_denominator(1001)
        for name, (record, duration, source, _, _) in EXPECTED.items():
            got_record, got_duration, got_source = times[name]
            assert abs(got_record - Fraction(record)) <= half, (name, float(got_record))
            assert abs(got_record + got_duration - Fraction(record + duration)) <= half, name
            assert abs(got_source - Fraction(source)) <= half, name
        assert lanes["take_a.mp4"] == lanes["take_c.mp4"] == "0" and lanes["take b.mov"] == "1"
        assert times["song.wav"][0] == 0 and lanes["song.wav"] == "-1"
        if ntsc:  # the adapter's reader counts whole frames of int(rate): it cannot read these back
            return

    back = otio.adapters.read_from_file(str(path))
    clips = _clips_by_name(back)
    assert set(EXPECTED) <= set(clips)
    for name, clip in clips.items():
        if name in EXPECTED:
            if suffix == ".fcpxml":  # exact in the file (checked above); the reader truncates to frames
                _check_clip(clip, name, fps, source_rate=fps, slack_frames=1)
            else:
                _check_clip(clip, name, fps, source_rate=None)
            assert EXPECTED[name][4] in [m.name for m in clip.markers]
    video = back.video_tracks()
    assert len(video) == 2
    assert clips["take_a.mp4"].parent() is clips["take_c.mp4"].parent() is not clips["take b.mov"].parent()
    _music_track_checks(back, fps)

    if suffix == ".otio":
        markers = {name: clip.markers[0] for name, clip in clips.items() if name in EXPECTED}
        assert [markers[n].color for n in EXPECTED] == ["GREEN", "YELLOW", "RED"]
        assert markers["take b.mov"].comment == "no face for 2.0 s; re-timed 30%"
        assert [dict(shot) for shot in back.metadata["avsync"]["unplaced"]] == [
            {"name": "take_d.mp4", "media": str(tmp_path / "take_d.mp4"),
             "reason": "no match (best score 0.42)", "score": 0.42}
        ]
        reference = clips["take b.mov"].media_reference
        assert reference.target_url == (tmp_path / "take b.mov").as_uri()
        assert reference.available_range.duration.rate == pytest.approx(30000 / 1001)
        assert reference.available_range.duration.to_seconds() == pytest.approx(30.0, abs=0.02)
        assert clips["take_c.mp4"].media_reference.target_url.endswith("take_c.synced.mp4")
    if suffix == ".xml":
        assert clips["take b.mov"].source_range.start_time.rate == pytest.approx(30000 / 1001)
        assert clips["take_a.mp4"].source_range.start_time.rate == 25


def test_unknown_suffix_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "shoot.txt"
    with pytest.raises(AvsyncError) as caught:
        check_timeline_path(path)
    message = str(caught.value)
    assert str(path) in message and ".otio" in message and ".fcpxml" in message
    assert "\n" not in message
    timeline = build_timeline("/s/song.wav", MUSIC_S, [], [], 25.0, "empty")
    with pytest.raises(AvsyncError):
        write_timeline(timeline, path)
    assert not path.exists()
    check_timeline_path(tmp_path / "shoot.EDL")  # suffixes are matched without case


def test_an_edl_replaces_the_track_files_of_an_earlier_timeline(tmp_path):
    placements, unplaced = _shoot(tmp_path)
    stacked = build_timeline("/s/song.wav", MUSIC_S, placements, unplaced, 25.0, "shoot")  # two video tracks
    single = build_timeline("/s/song.wav", MUSIC_S, placements[:1], unplaced, 25.0, "shoot")
    path = tmp_path / "shoot.edl"
    for name in ("shoot.V10.edl", "shoot.V3.edl", "shoot.Vx.edl", "shoot.V1.edl", "other.V2.edl"):
        (tmp_path / name).write_text("earlier")
    assert edl_track_files(path) == [tmp_path / "shoot.V3.edl", tmp_path / "shoot.V10.edl"]
    assert edl_track_files(tmp_path / "shoot.otio") == []
    assert write_timeline(stacked, path) == [path, tmp_path / "shoot.V2.edl"]
    assert sorted(p.name for p in tmp_path.glob("*.edl")) == ["other.V2.edl", "shoot.V1.edl", "shoot.V2.edl", "shoot.Vx.edl", "shoot.edl"]
    assert write_timeline(single, path) == [path]  # the earlier cut's second track goes with it
    assert sorted(p.name for p in tmp_path.glob("*.edl")) == ["other.V2.edl", "shoot.V1.edl", "shoot.Vx.edl", "shoot.edl"]


def test_failing_write_leaves_no_file(tmp_path, monkeypatch):
    placements, unplaced = _shoot(tmp_path)
    timeline = build_timeline("/s/song.wav", MUSIC_S, placements, unplaced, 25.0, "shoot")
    original = pathlib.Path.write_text
    calls = []

    def write_then_fail(self, text, *args, **kwargs):
        calls.append(self)
        if len(calls) == 2:  # the second EDL: half written, then the disk fails
            original(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(errno.EIO, "I/O error")
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_then_fail)
    with pytest.raises(OSError):
        write_timeline(timeline, tmp_path / "shoot.edl")
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_adapter_failure_is_one_line_naming_the_file(tmp_path, monkeypatch):
    timeline = build_timeline("/s/song.wav", MUSIC_S, [], [], 25.0, "shoot")

    def refuse(*args, **kwargs):
        raise otio.exceptions.NotSupportedError("cannot do that\nat all")

    monkeypatch.setattr(otio.adapters, "write_to_string", refuse)
    path = tmp_path / "shoot.xml"
    with pytest.raises(AvsyncError) as caught:
        write_timeline(timeline, path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
    assert "cannot do that" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
