"""Tests of keras_fcn.inference.video: writing and reading videos (PyAV)."""

import os
import re

import numpy as np
import pytest


try:
    import av  # noqa: F401

    HAS_AV = True
except ImportError:
    HAS_AV = False

needs_av = pytest.mark.skipif(not HAS_AV, reason="PyAV not installed (pip install av)")


# Review 7: reproducers of bugs that gave a wrong result or an unclear error.

@needs_av
@pytest.mark.parametrize("ext", [".mp4", ".webm"])
def test_video_writer_refuses_a_frame_of_another_size(tmp_path, ext):
    """A larger frame was cropped to the first frame's size and a smaller one stretched to it,
    without a word: the video showed something else than the frames given."""
    from keras_fcn.inference import video

    path = tmp_path / f"clip{ext}"
    with pytest.raises(ValueError, match=r"Every frame of a video must have the size of the "
                                         r"first one, 48x32 \(W x H\)\. Received: a 16x16 "
                                         r"frame for '.*clip\.(mp4|webm)'"):
        with video.VideoWriter(path, fps=10) as writer:
            writer.write(np.zeros((32, 48, 3), np.uint8))
            writer.write(np.zeros((16, 16, 3), np.uint8))
    assert not path.exists() and os.listdir(tmp_path) == []  # no partial file, no temp file


@needs_av
@pytest.mark.parametrize("fps", [float("nan"), float("inf"), 1e-9, "25", True])
def test_video_writer_refuses_fps_that_cannot_be_written(tmp_path, fps):
    """NaN failed only at the first frame ("cannot convert NaN to integer ratio"), 1e-9 was
    written as a 24 fps video, "25" raised a TypeError about '<='."""
    from keras_fcn.inference import video

    with pytest.raises(ValueError, match=r"fps must be a finite number >= 1/1001\. Received: "
                                         rf"fps={fps!r}".replace("(", r"\(").replace(")", r"\)")):
        video.VideoWriter(tmp_path / "clip.mp4", fps=fps)
    assert os.listdir(tmp_path) == []
    with video.VideoWriter(tmp_path / "ok.mp4", fps=np.float32(12.5)) as writer:  # numpy fps
        writer.write(np.zeros((16, 16, 3), np.uint8))
    assert video.video_info(tmp_path / "ok.mp4")["fps"] == 12.5


@needs_av
def test_video_writer_names_a_one_pixel_frame_for_h264(tmp_path):
    """A 1-pixel-wide frame became a 0-pixel H.264 stream: IndexError 'tuple index out of
    range'. VP9 keeps it."""
    from keras_fcn.inference import video

    with pytest.raises(ValueError, match=r"libx264 cannot write frames 1 pixel wide or high "
                                         r"\(it needs even sizes\)\. Received: a 1x9 frame"):
        with video.VideoWriter(tmp_path / "thin.mp4", fps=5) as writer:
            writer.write(np.zeros((9, 1, 3), np.uint8))
    with video.VideoWriter(tmp_path / "thin.webm", fps=5) as writer:
        writer.write(np.full((9, 1, 3), 120, np.uint8))
    (frame,) = video.read_video(tmp_path / "thin.webm")
    assert frame.shape == (9, 1, 3)


@needs_av
def test_video_info_of_a_file_without_video_names_it(tmp_path):
    """An audio-only file gave 'Cannot read video ...: tuple index out of range'."""
    import av

    from keras_fcn.inference import video

    path = str(tmp_path / "sound.m4v")
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        for index in range(3):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 8000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(ValueError, match=r"^No video stream in '.*sound\.m4v'$"):
        video.video_info(path)


@needs_av
@pytest.mark.parametrize("ext", ["webm", "mkv"])
def test_a_truncated_video_without_an_index_is_an_error_after_its_last_frame(tmp_path, ext):
    """A WebM or Matroska file cut short decoded its first frames and ended without an error
    (an MP4 or AVI cut short fails to open or decode): the container's duration says how many
    frames there should be."""
    from keras_fcn.inference import video

    path = str(tmp_path / f"v.{ext}")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3)).astype("uint8") for _ in range(20)]
    with video.VideoWriter(path, fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    assert len(list(video.read_video(path))) == 20  # complete: no error
    data = open(path, "rb").read()
    cut = str(tmp_path / f"cut.{ext}")
    open(cut, "wb").write(data[: len(data) // 2])
    got = []
    with pytest.raises(ValueError, match=rf"^Video '{re.escape(cut)}' ends after (\d+) frames, "
                                         r"but its container lasts 2\.00 s at 10 fps \(~20 "
                                         r"frames\): the file is truncated or damaged$"):
        for frame in video.read_video(cut):
            got.append(frame)
    assert 0 < len(got) < 18  # the frames before the cut came first
