"""Video prediction (walkthrough of session 25): a phone video's rotation is applied, a
variable-frame-rate Matroska file is not refused as truncated, a variable frame rate keeps
its timestamps in the written videos, common camera and broadcast extensions are videos, and
the docs say that the output videos carry no audio. Each test failed before its fix."""

import os
import re
from fractions import Fraction

import keras
import numpy as np
import pytest
from PIL import Image

import keras_fcn
from keras_fcn.inference import files, inputs
from keras_fcn.inference.predictor import PredictOptions
from tiny import saved_raw_rgb_fcn

av = pytest.importorskip("av")
from keras_fcn.inference import video  # noqa: E402  (after the PyAV check)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VFR_TIMES = [0.0, 0.033, 0.066, 0.099, 0.132, 0.165, 0.365, 0.565, 0.765, 0.965]  # 33, 200 ms


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), 3, seed=4)[1]


def _frames(count, height=48, width=64):
    """Noise with a white 8x8 square at the stored top-left corner (where it ends up tells
    how a frame was turned)."""
    rng = np.random.default_rng(0)
    for _ in range(count):
        frame = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
        frame[:8, :8] = 255
        yield frame


def _encode(path, count=4, rotation=None, times=None, fmt=None):
    """An H.264 video of 64x48 stored frames; ``rotation``: PyAV's counterclockwise display
    rotation (-90: a portrait phone video, shown turned 90 degrees clockwise); ``times``:
    frame times in seconds (a variable frame rate, millisecond time base)."""
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for index, pixels in enumerate(_frames(count)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[index] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def _remux(source, target):
    """Stream copy into another container (as ``ffmpeg -i source -c copy target``)."""
    with av.open(source) as src, av.open(str(target), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return str(target)


def _times(path):
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def test_a_rotated_phone_video_is_predicted_upright(tmp_path, model_path):
    """The display matrix was ignored: the model saw the sideways stored frames and the label
    PNGs were 64x48 for a portrait video shown 48x64."""
    clip = _encode(tmp_path / "phone.mp4", rotation=-90)
    with av.open(clip) as container:  # the fixture: stored landscape, turned when shown
        assert next(container.decode(video=0)).rotation == -90
    assert video.video_info(clip) == {"fps": 30.0, "frames": 4, "width": 48, "height": 64,
                                      "rotation": 90}
    frames = list(video.read_video(clip))
    assert [f.shape for f in frames] == [(64, 48, 3)] * 4
    # turned 90 degrees clockwise, as a player shows it: the stored top-left is the top right
    assert frames[0][:6, -6:].min() > 200 and frames[0][:6, :6].max() < 160
    assert frames[0][-6:, -6:].max() < 160
    half = _encode(tmp_path / "upside.mkv", rotation=180)
    turned = next(iter(video.read_video(half)))
    assert turned.shape == (48, 64, 3) and turned[-6:, -6:].min() > 200  # now bottom-right
    report = files.run(PredictOptions(model=model_path, inputs=[clip], classes=["1"],
                                      output_dir=str(tmp_path / "out")))
    assert report.processed == 4 and not report.failures, report.failures
    out = tmp_path / "out"
    labels = np.asarray(Image.open(out / "phone" / "frame_000000_labels.png"))
    direct, _ = keras_fcn.predict(keras.models.load_model(model_path), frames[0])
    np.testing.assert_array_equal(labels, direct)
    for name in ("phone_overlay.mp4", "phone_mask_class1.mp4"):
        assert video.video_info(out / name)["rotation"] == 0  # written upright, no tag needed
        assert [f.shape for f in video.read_video(out / name)] == [(64, 48, 3)] * 4


def test_a_variable_rate_mkv_is_complete_and_a_cut_one_is_not(tmp_path, model_path):
    """A complete VFR .mkv (stream copy of a valid MP4) was refused: 'ends after 10 frames,
    but its container lasts 1.17 s at 1000 fps (~1165 frames)': the check and video_info took
    the Matroska average rate, its time base."""
    mkv = _remux(_encode(tmp_path / "vfr.mp4", len(VFR_TIMES), times=VFR_TIMES),
                 tmp_path / "vfr.mkv")
    assert video.video_info(mkv)["fps"] == 30.0
    got = list(video.read_video(mkv, times=True))
    assert len(got) == 10 and [float(t) for _, t in got] == pytest.approx(VFR_TIMES)
    report = files.run(PredictOptions(model=model_path, inputs=[mkv],
                                      output_dir=str(tmp_path / "out")))
    assert report.processed == 10 and not report.failures, report.failures
    assert len(list(video.read_video(tmp_path / "out" / "vfr_overlay.mp4"))) == 10
    data = open(mkv, "rb").read()
    cut = str(tmp_path / "cut.mkv")
    open(cut, "wb").write(data[: len(data) * 3 // 4])
    with pytest.raises(ValueError, match=rf"^Video '{re.escape(cut)}' ends after \d frames, "
                                         r"but its container lasts 1\.00 s at .*: the file is "
                                         r"truncated or damaged$"):
        list(video.read_video(cut))


def _write(path, source, use_times=True):
    with video.VideoWriter(path, fps=video.video_info(source)["fps"]) as writer:
        for frame, time in video.read_video(source, times=True):
            writer.write(frame, time=time if use_times else None)
    return path


def test_a_variable_rate_keeps_its_timestamps_and_a_constant_one_its_file(tmp_path):
    """Overlay and mask videos had a constant rate, the source's average: a frame at 0.165 s
    was written at 0.37 s. A constant-rate source must give the same file as before."""
    source = _encode(tmp_path / "vfr.mp4", len(VFR_TIMES), times=VFR_TIMES)
    for ext in ("mp4", "webm", "mov"):
        written = _times(_write(tmp_path / f"out.{ext}", source))
        assert written == pytest.approx(VFR_TIMES, abs=1e-4), ext
    constant = _encode(tmp_path / "cfr.mp4", 6)
    timed = _write(tmp_path / "timed.mp4", constant)
    plain = _write(tmp_path / "plain.mp4", constant, use_times=False)
    assert open(timed, "rb").read() == open(plain, "rb").read()
    with av.open(plain) as container:
        stream = container.streams.video[0]
        assert (stream.frames, stream.average_rate) == (6, 30)
        assert [f.pts for f in container.decode(stream)] == [i * 512 for i in range(6)]
    with pytest.raises(ValueError, match=r"time must be a finite number of seconds or None\. "
                                         r"Received: time=nan"):
        with video.VideoWriter(tmp_path / "bad.mp4", fps=30) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8), time=float("nan"))


def test_predicted_videos_keep_a_variable_rate(tmp_path, model_path):
    source = _encode(tmp_path / "vfr.mp4", len(VFR_TIMES), times=VFR_TIMES)
    report = files.run(PredictOptions(model=model_path, inputs=[source], classes=["1"],
                                      output_dir=str(tmp_path / "out")))
    assert report.processed == 10 and not report.failures, report.failures
    for name in ("vfr_overlay.mp4", "vfr_mask_class1.mp4"):
        assert _times(tmp_path / "out" / name) == pytest.approx(VFR_TIMES, abs=1e-4)


def test_camera_and_broadcast_extensions_are_videos(tmp_path, model_path):
    """.3gp, .MTS, .m2ts, .ts, .wmv and .flv were read as images: 'cannot read image
    (UnidentifiedImageError ...)'."""
    for name in ("a.3gp", "b.MTS", "c.m2ts", "d.ts", "e.WMV", "f.flv", "g.3G2"):
        assert video.is_video_file(name), name
    folder = tmp_path / "cam"
    folder.mkdir()
    _encode(folder / "clip.MTS", 3, fmt="mpegts")
    _encode(folder / "phone.3gp", 2, fmt="3gp")
    report = files.run(PredictOptions(model=model_path, inputs=[str(folder)],
                                      output_dir=str(tmp_path / "out")))
    assert report.processed == 5 and not report.failures, report.failures
    for stem, count in (("clip", 3), ("phone", 2)):
        overlay = tmp_path / "out" / "cam" / f"{stem}_overlay.mp4"
        assert len(list(video.read_video(overlay))) == count
    other = tmp_path / "film.rmvb"
    other.write_bytes(b"not an image")
    report = files.Report()
    inputs.expand_inputs([str(other)], str(tmp_path / "o"), report)
    assert report.warnings == [f"{other}: read as an image, its extension being neither a "
                               f"video's ({', '.join(video.VIDEO_EXTENSIONS)}, any case) nor "
                               "an image format's"]
    assert ".mts" in report.warnings[0] and ".wmv" in report.warnings[0]


def test_the_docs_say_output_videos_carry_no_audio():
    text = open(os.path.join(ROOT, "docs", "inference.md"), encoding="utf-8").read()
    assert re.search(r"no audio", text) and "rotation" in text


def test_a_writer_that_cannot_open_its_file_leaves_no_temporary_file(tmp_path, monkeypatch):
    """VideoWriter made its temporary file, then FFmpeg failed to open it: the file stayed."""
    from keras_fcn.inference import video as video_lib

    writer_open = video_lib._av().open

    def failing_open(path, mode="r", **kwargs):
        if mode == "w":
            raise OSError("no muxer")
        return writer_open(path, mode, **kwargs)

    monkeypatch.setattr(video_lib._av(), "open", failing_open)
    with pytest.raises(OSError, match="no muxer"):
        video_lib.VideoWriter(tmp_path / "out.mp4", fps=5)
    assert os.listdir(tmp_path) == []
