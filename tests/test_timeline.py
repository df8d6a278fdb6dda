"""The editor's timeline of a whole shoot: placement rules and the four file formats, read back."""

from __future__ import annotations

import errno
import pathlib
import xml.etree.ElementTree as ET
from fractions import Fraction

import opentimelineio as otio
import pytest

from avsync.errors import AvsyncError
from avsync.pipeline.edl import timecode as to_timecode
from avsync.pipeline.timeline import (
    TIMELINE_SUFFIXES,
    UnplacedShot,
    build_timeline,
    check_timeline_path,
    edl_track_files,
    marker_warnings,
    media_start_seconds,
    placement_from_report,
    start_frames,
    write_timeline,
)

RATES = {"23.976": 24000 / 1001, "24": 24.0, "25": 25.0, "29.97": 30000 / 1001, "30": 30.0, "50": 50.0, "59.94": 60000 / 1001}
MUSIC_S = 60.0
CAMERA_START_S = 3603.0
"""Take A's camera timecode, 01:00:03:00 at 25 fps: its source times start there."""


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
    """Three matched shots (A and B overlap; C, warp mode, fits after A), one "no match" take and one failed shot."""
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
        placement_from_report(a, "offset", media_start_s=CAMERA_START_S),
        placement_from_report(b, "offset"),
        placement_from_report(c, "warp"),
    ]
    unplaced = [UnplacedShot("take_d.mp4", str(tmp_path / "take_d.mp4"), "no match (best score 0.42)", 0.42, 25.0, 8.0),
                UnplacedShot("broken.mp4", str(tmp_path / "broken.mp4"), "failed: not a media file")]
    return placements, unplaced


# expected: name -> (record start, duration, source start (the media's own time), media rate, marker name)
EXPECTED = {
    "take_a.mp4": (0.0, 36.63, CAMERA_START_S + 3.37, 25.0, "confidence 3.41 (reliable)"),
    "take b.mov": (12.345, 30.0, 0.0, 30000 / 1001, "confidence 1.20 (uncertain)"),
    "take_c.mp4": (41.5, 17.25, 0.0, 25.0, "confidence 0.31 (unreliable)"),
}
START = {name: round(otio.opentime.from_timecode("01:00:00;00" if name in ("29.97", "59.94") else "01:00:00:00", rate).value)
         for name, rate in RATES.items()}  # fmt: skip
"""The default start, 01:00:00:00, in frames of each rate (drop-frame at 29.97 and 59.94)."""


def test_placement_from_report_follows_the_rules(tmp_path):
    late = placement_from_report(_report("/s/late.mp4", 25.0, 2.5, 40.0), "offset")
    assert (late.record_start_s, late.source_start_s, late.duration_s) == (0.0, 2.5, 37.5)
    with pytest.raises(ValueError):
        placement_from_report(_report("/s/none.mp4", 25.0, 0.0, 30.0), "warp")  # no output
    with pytest.raises(ValueError):
        placement_from_report(_report("/s/x.mp4", 25.0, 0.0, 30.0), "stretch")


def test_markers_carry_only_the_warnings_that_apply_to_the_mode():
    warnings = ["confidence is unreliable (0.50): check the result by eye; --mode offset applies only the constant offset",
                "the video covers music 3.0-13.0 s of 28.0 s; the first/last frame is held outside it",
                "40% of the video shows no usable face; those stretches follow their neighbours"]  # fmt: skip
    assert marker_warnings(warnings, "offset") == ("confidence is unreliable (0.50): check the result by eye", warnings[2])
    assert marker_warnings(warnings, "warp") == (warnings[0], warnings[2])


def test_start_timecodes_are_read_at_the_timeline_rate():
    assert start_frames("01:00:00:00", 25.0) == 90000
    assert start_frames("01:00:00:00", 29.97) == start_frames("01:00:00;00", 29.97) == 107892  # drop-frame
    assert start_frames("00:59:58:12", 24.0) == 24 * 3598 + 12
    for bad in ("1:00:00", "01:00:00:25", "01:61:00:00", "tomorrow"):
        with pytest.raises(AvsyncError, match="--timeline-start"):
            start_frames(bad, 25.0)
    assert media_start_seconds("01:00:03:00", 25.0) == 3603.0 and media_start_seconds(None, 25.0) == 0.0


def _check_times(name, record_s, duration_s, source_s, fps, source_rate, slack_frames=0):
    """A clip read back: within half a frame of EXPECTED (record times from the timeline's start).

    The source start is a frame of the media (half a media frame); in formats with one rate for
    everything (`source_rate`: CMX 3600, FCP X) that frame is then counted in timeline frames.
    """
    record, duration, source, media_rate, _ = EXPECTED[name]
    half = (0.5 + slack_frames) / fps + 1e-6
    assert abs(record_s - record) <= half, (name, record_s, record)
    assert abs(record_s + duration_s - (record + duration)) <= half, (name, record_s + duration_s, record + duration)
    source_half = 0.5 / media_rate + (0.5 + slack_frames) / source_rate if source_rate else 0.5 / media_rate
    assert abs(source_s - source) <= source_half + 1e-6, (name, source_s, source)


def _music_check(clip, record_s, duration_s, fps):
    assert clip.name == "song.wav" and record_s == 0
    assert abs(duration_s - MUSIC_S) <= 0.5 / fps + 1e-6


def _fcpx_times(path):
    """name -> (record start from the sequence's start, duration, source start) from the FCP X XML's own times."""
    root = ET.parse(path).getroot()
    times, lanes = {}, {}
    sequence = root.find(".//sequence")
    origin = _seconds(sequence.get("tcStart"))
    for parent in root.iter("spine"):
        for item in parent:
            base = _seconds(item.get("offset")) - origin - _seconds(item.get("start"))
            for clip in [item, *item.findall("clip")]:
                if clip.tag != "clip":
                    continue
                record = _seconds(clip.get("offset")) - origin if clip is item else base + _seconds(clip.get("offset"))
                times[clip.get("name")] = (record, _seconds(clip.get("duration")), _seconds(clip.get("start")))
                lanes[clip.get("name")] = clip.get("lane", "0")
    return times, lanes


def _seconds(value):
    return Fraction(value.rstrip("s")) if value else Fraction(0)


@pytest.mark.parametrize("suffix", TIMELINE_SUFFIXES)
@pytest.mark.parametrize("rate_name", RATES)
def test_timeline_round_trip(tmp_path, suffix, rate_name):
    """Every format, read back by OpenTimelineIO's adapter, puts every clip where it belongs to the frame."""
    fps = RATES[rate_name]
    start = START[rate_name]
    placements, unplaced = _shoot(tmp_path)
    timeline = build_timeline(str(tmp_path / "song.wav"), MUSIC_S, placements, unplaced, fps, "shoot", frame_size=(1920, 1080))
    path = tmp_path / f"shoot{suffix}"
    written = write_timeline(timeline, path)
    drop = rate_name in ("29.97", "59.94")

    if suffix == ".edl":
        assert written == [path, tmp_path / "shoot.V2.edl"]  # one video track per EDL
        tracks = {"take_a.mp4": path, "take_c.mp4": path, "take b.mov": written[1]}
        for edl in written:
            back = otio.adapters.read_from_file(str(edl), rate=fps)
            assert len(back.video_tracks()) == len(back.audio_tracks()) == 1
            for track in back.tracks:  # every track starts at the timeline's start (black leads in to the first shot)
                assert track.source_range.start_time.rescaled_to(fps).value == pytest.approx(-start)
            (music,) = back.audio_tracks()[0].find_clips()
            _music_check(music, music.range_in_parent().start_time.to_seconds(), music.duration().to_seconds(), fps)
            shots = [c for c in back.video_tracks()[0].find_clips() if not isinstance(c.media_reference, otio.schema.GeneratorReference)]
            assert sorted(clip.name for clip in shots) == sorted(n for n, f in tracks.items() if f == edl)
            for clip in shots:
                placed = clip.range_in_parent()
                _check_times(clip.name, placed.start_time.to_seconds(), placed.duration.to_seconds(),
                             clip.source_range.start_time.to_seconds(), fps, source_rate=fps)  # fmt: skip
                record_tc = to_timecode(start + round(EXPECTED[clip.name][0] * fps), fps)
                if drop:  # the adapter's reader skips LOC lines in drop-frame timecode (it matches only ':')
                    assert f"* LOC: {record_tc} " in edl.read_text()
                else:  # the marker sits at the clip's record timecode, where it is on the cut
                    assert [(m.name, m.marked_range.start_time.to_timecode(fps)) for m in clip.markers] == [(EXPECTED[clip.name][4], record_tc)]
        return

    back = otio.adapters.read_from_file(str(path))
    clips = {clip.name: clip for clip in back.find_clips()}
    assert set(EXPECTED) <= set(clips)
    if suffix == ".fcpxml":
        # The XML's own times are exact rationals on the frame grid, from the sequence's tcStart.
        times, lanes = _fcpx_times(path)
        frame = 1 / Fraction(fps).limit_denominator(1001)
        for name in EXPECTED:
            record, duration, source = times[name]
            _check_times(name, float(record), float(duration), float(source), fps, source_rate=fps)
        assert lanes["take_a.mp4"] == lanes["take_c.mp4"] == "0" and lanes["take b.mov"] == "1"
        assert times["song.wav"][0] == 0 and lanes["song.wav"] == "-1"
        root = ET.parse(path).getroot()
        (format_,) = root.iter("format")
        assert (format_.get("width"), format_.get("height"), _seconds(format_.get("frameDuration"))) == ("1920", "1080", frame)
        sequence = root.find(".//sequence")
        assert _seconds(sequence.get("tcStart")) == start * frame and sequence.get("tcFormat") == ("DF" if drop else "NDF")
        for element in root.iter():
            for attribute in ("offset", "start", "duration"):
                if element.get(attribute) is not None:
                    assert (_seconds(element.get(attribute)) / frame).denominator == 1, (element.tag, attribute, element.get(attribute))
        # The adapter's reader ignores the sequence's tcStart (its spine offsets start there) and, at
        # NTSC rates, misreads a correct file: FCPXML's frameDuration="1001/30000s" is 29.97 fps, but
        # the reader takes int(30000/1001) = 29 as the rate and truncates seconds x 29 to whole
        # "frames" (`to_rational_time`). The times above are what the format says; the reader is
        # checked where it can be right, at whole-number rates.
        if rate_name in ("23.976", "29.97", "59.94"):
            assert clips["take_a.mp4"].duration().rate == int(fps)  # the adapter's bug, as it stands
        else:
            origin = start / fps
            for name, clip in clips.items():
                if name in EXPECTED:
                    placed = clip.range_in_parent()
                    _check_times(name, placed.start_time.to_seconds() - origin, placed.duration.to_seconds(),
                                 clip.source_range.start_time.to_seconds(), fps, source_rate=fps,
                                 slack_frames=1)  # it truncates float products: 17.24 s x 25 -> 430 frames  # fmt: skip
                    assert EXPECTED[name][4] in [m.name for m in clip.markers]
        return

    assert back.global_start_time.rescaled_to(fps).value == pytest.approx(start)  # the timeline's start timecode
    for name, clip in clips.items():
        if name in EXPECTED:
            placed = clip.range_in_parent()
            _check_times(name, placed.start_time.to_seconds(), placed.duration.to_seconds(),
                         clip.source_range.start_time.to_seconds(), fps, source_rate=None)  # fmt: skip
            assert EXPECTED[name][4] in [m.name for m in clip.markers]
    video = back.video_tracks()
    assert len(video) == 3  # V1, V2 and the takes that matched nothing
    assert clips["take_a.mp4"].parent() is clips["take_c.mp4"].parent() is not clips["take b.mov"].parent()
    (music,) = back.audio_tracks()[0].find_clips()
    _music_check(music, music.range_in_parent().start_time.to_seconds(), music.duration().to_seconds(), fps)
    no_match = clips["take_d.mp4"]
    assert no_match.range_in_parent().start_time.to_seconds() == pytest.approx(MUSIC_S, abs=0.5 / fps)  # after the song
    assert "broken.mp4" not in clips  # a failed shot has no media to place

    if suffix == ".otio":
        markers = {name: clip.markers[0] for name, clip in clips.items() if name in EXPECTED}
        assert [markers[n].color for n in EXPECTED] == ["GREEN", "YELLOW", "RED"]
        assert markers["take b.mov"].comment == "no face for 2.0 s; re-timed 30%"
        assert [dict(shot)["name"] for shot in back.metadata["avsync"]["unplaced"]] == ["take_d.mp4", "broken.mp4"]
        assert video[2].name == "No match" and not video[2].enabled
        reference = clips["take b.mov"].media_reference
        assert reference.target_url == (tmp_path / "take b.mov").as_uri()
        assert reference.available_range.duration.rate == pytest.approx(30000 / 1001)
        assert reference.available_range.duration.to_seconds() == pytest.approx(30.0, abs=0.02)
        assert clips["take_a.mp4"].media_reference.available_range.start_time.to_seconds() == CAMERA_START_S
        assert clips["take_c.mp4"].media_reference.target_url.endswith("take_c.synced.mp4")
    if suffix == ".xml":
        assert clips["take b.mov"].source_range.start_time.rate == pytest.approx(30000 / 1001)
        assert clips["take_a.mp4"].source_range.start_time.rate == 25


def test_an_edl_is_what_editors_expect(tmp_path):
    """TITLE, FCM, events in record order, unique reels mapped to their files, markers at record time."""
    placements, unplaced = _shoot(tmp_path)
    twins = [placement_from_report(_report(str(tmp_path / name), 25.0, -at, 4.0), "offset")
             for name, at in (("verse_take01.mp4", 5.0), ("verse take02.mp4", 50.0))]  # fmt: skip
    timeline = build_timeline(str(tmp_path / "song.wav"), MUSIC_S, placements + twins, unplaced, 25.0, "shoot")
    (path, *others) = write_timeline(timeline, tmp_path / "shoot.edl")
    lines = path.read_text().splitlines()
    every_line = [line for edl in (path, *others) for line in edl.read_text().splitlines()]
    assert lines[:3] == ["TITLE: shoot", "FCM: NON-DROP FRAME", ""]
    events = [line.split() for line in lines[3:] if line[:3].isdigit()]
    assert [int(event[0]) for event in events] == list(range(1, len(events) + 1))
    records = [event[6] for event in events]
    assert records == sorted(records)  # record order, the music's audio event among them
    reels = {line.split()[2]: line.split(" IS ", 1)[1] for line in every_line if line.startswith("* REEL ")}  # one list, unique
    assert reels["VERSETAK"] == str(tmp_path / "verse_take01.mp4") and reels["VERSETA2"] == str(tmp_path / "verse take02.mp4")
    assert reels["TAKEA"] == str(tmp_path / "take_a.mp4") and reels["SONG"] == str(tmp_path / "song.wav")
    assert [event[1] for event in events if event[2] == "A"] == ["SONG"]
    take_a = next(event for event in events if event[1] == "TAKEA")
    assert take_a[4] == "01:00:06:09"  # source in: the camera's 01:00:03:00 + 3.37 s, to the frame
    assert f"* LOC: {take_a[6]} GREEN   confidence 3.41 (reliable)" in lines  # at record time
    assert "take_d" not in path.read_text()  # no match: not in the cut


def test_relative_paths_relink_from_the_timeline_folder(tmp_path):
    placements, unplaced = _shoot(tmp_path / "takes")
    timeline = build_timeline(str(tmp_path / "takes" / "song.wav"), MUSIC_S, placements, unplaced, 25.0, "shoot")
    out = tmp_path / "cuts"
    out.mkdir()
    write_timeline(timeline, out / "shoot.otio", relative_paths=True)
    back = otio.adapters.read_from_file(str(out / "shoot.otio"))
    urls = {clip.name: clip.media_reference.target_url for clip in back.find_clips()}
    assert urls["take b.mov"] == "../takes/take%20b.mov" and urls["song.wav"] == "../takes/song.wav"
    write_timeline(timeline, out / "shoot.edl", relative_paths=True)
    assert "* FROM FILE: ../takes/take b.mov" in (out / "shoot.V2.edl").read_text()
    write_timeline(timeline, out / "shoot.fcpxml", relative_paths=True)
    assert 'src="../takes/take%20b.mov"' in (out / "shoot.fcpxml").read_text()


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


@pytest.mark.parametrize("suffix", TIMELINE_SUFFIXES)
def test_the_takes_own_sound_sits_under_its_picture(tmp_path, suffix):
    """A take with its own audio gets it on "Camera audio V<k>" (EDL: channel A2 of track k's list), at the
    take's constant offset: under the picture in offset mode, trimmed to the re-timed picture in warp mode."""
    from dataclasses import replace

    placements, unplaced = _shoot(tmp_path)
    a, b, c = placements
    c_at_offset = placement_from_report(_report(str(tmp_path / "take_c.mp4"), 25.0, -40.0, 20.0), "offset")  # 40-60 s
    placements = [replace(a, camera=a), b, replace(c, camera=c_at_offset)]
    timeline = build_timeline(str(tmp_path / "song.wav"), MUSIC_S, placements, unplaced, 25.0, "shoot")
    heard = [track for track in timeline.audio_tracks() if track.name.startswith("Camera audio")]
    assert [track.name for track in heard] == ["Camera audio V1"]  # take b has no sound of its own
    sound = {clip.name: clip for clip in heard[0].find_clips()}
    assert sound["take_a.mp4"].range_in_parent() == timeline.tracks[0].find_clips()[0].range_in_parent()
    assert sound["take_a.mp4"].source_range.start_time.to_seconds() == pytest.approx(CAMERA_START_S + 3.37, abs=0.02)
    placed_c = sound["take_c.mp4"].range_in_parent()
    picture_c = next(clip for clip in timeline.tracks[0].find_clips() if clip.name == "take_c.mp4").range_in_parent()
    assert placed_c == picture_c  # trimmed to the picture (41.5-58.75 s): its sound from 40 s loses its first 1.5 s
    assert sound["take_c.mp4"].source_range.start_time.to_seconds() == pytest.approx(1.52)  # frame 1038 (41.5 s, halves up) - 1000
    written = write_timeline(timeline, tmp_path / f"shoot{suffix}")
    if suffix == ".edl":
        first, second = (path.read_text().splitlines() for path in written)
        events = [line.split() for line in first if line[:3].isdigit()]
        assert [event[1] for event in events if event[2] == "A2"] == ["TAKEA", "TAKEC"]
        assert [event[1] for event in events if event[2] == "A"] == ["SONG"]
        assert not any(line.split()[2] == "A2" for line in second if line[:3].isdigit())
        return
    back = otio.adapters.read_from_file(str(written[0]))
    names = [clip.name for track in back.audio_tracks() for clip in track.find_clips()]
    assert names.count("take_a.mp4") == 1 and names.count("take_c.mp4") == 1 and "take b.mov" not in names
