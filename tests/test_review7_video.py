"""Review 7 of video, temporal smoothing and the inference extras: each test is a reproducer of
a bug that gave a wrong result or an unclear error (video writer, temporal smoothing and
flicker, heatmaps and legends, the video training pairs, the LiteRT example)."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fcn.data import warp as warp_lib
from keras_fcn.inference import temporal, visualize
from tool_flags import load_script

try:
    import av  # noqa: F401

    HAS_AV = True
except ImportError:
    HAS_AV = False

try:
    import cv2  # noqa: F401

    HAS_CV2 = True
except ImportError:
    HAS_CV2 = False

needs_av = pytest.mark.skipif(not HAS_AV, reason="PyAV not installed (pip install av)")
RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------- video.py --

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


# ---------------------------------------------------------------------------- temporal.py --

def test_smoother_takes_a_numpy_alpha_and_matches_the_documented_average():
    """alpha=np.float32(0.5) was refused as 'alpha must be in (0, 1]', which it is."""
    frames = [RNG.dirichlet(np.ones(3), size=(4, 5)).astype("float32") for _ in range(4)]
    got = temporal.smooth_probabilities(frames, np.float32(0.25))
    expected = [frames[0]]
    for frame in frames[1:]:  # smoothed_t = alpha * probs_t + (1 - alpha) * smoothed_{t-1}
        expected.append(0.25 * frame + 0.75 * expected[-1])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert temporal.SmoothedSequence(np.float32(0.5)).alpha == 0.5


def test_smoother_refuses_nan_instead_of_carrying_it_for_ever():
    """One NaN made every later smoothed frame NaN (argmax 0 everywhere it spread)."""
    frames = [RNG.dirichlet(np.ones(3), size=(2, 2)).astype("float32") for _ in range(3)]
    frames[1][0, 1, 2] = np.nan
    smoother = temporal.TemporalSmoother(0.5)
    smoother(frames[0])
    with pytest.raises(ValueError, match=r"TemporalSmoother needs finite probabilities\. "
                                         r"Received: 1 NaN or infinite values \(of 12\)"):
        smoother(frames[1])
    sequence = temporal.SmoothedSequence(0.5)
    with pytest.raises(ValueError, match="finite probabilities"):
        sequence.step(np.full((2, 2, 3), np.inf, "float32"))


def test_flicker_rate_refuses_probabilities():
    """Probability maps (H, W, C) were compared value by value: a flicker near 1 that looks
    like a measurement."""
    probs = [RNG.dirichlet(np.ones(3), size=(4, 5)) for _ in range(2)]
    with pytest.raises(ValueError, match=r"FlickerMeter counts integer \(H, W\) label maps "
                                         r"\(argmax of the probabilities\)\. Received: "
                                         r"shape=\(4, 5, 3\), dtype=float64"):
        temporal.flicker_rate(probs)
    with pytest.raises(ValueError, match=r"Received: shape=\(4, 5\), dtype=float64"):
        temporal.flicker_rate([p[..., 0] for p in probs])  # one class's probability map
    assert temporal.flicker_rate([p.argmax(-1) for p in probs]) == pytest.approx(
        np.mean(probs[0].argmax(-1) != probs[1].argmax(-1)))


def test_flow_flicker_valid_masks_are_checked():
    """Too few valid masks raised IndexError, a transposed one a numpy broadcast error."""
    labels = RNG.integers(0, 3, (6, 7))
    flow = np.zeros((6, 7, 2), "float32")
    with pytest.raises(ValueError, match=r"Give one valid mask per flow\. Received: 2 flows "
                                         r"and 1 valid masks"):
        temporal.flow_flicker_rate([labels] * 3, [flow] * 2, [np.ones((6, 7), bool)])
    with pytest.raises(ValueError, match=r"valid must be an \(H, W\) = \(6, 7\) mask\. "
                                         r"Received: valid\.shape=\(7, 6\)"):
        temporal.flow_changes(labels, labels, flow, np.ones((7, 6), bool))


# --------------------------------------------------------------------------- visualize.py --

def test_heatmap_ignores_infinite_values_for_its_range_and_checks_vmin_vmax():
    """One infinite value made the range infinite: every finite pixel got the lowest colour.
    vmin > vmax gave a one-colour map without a word."""
    values = np.array([[0.0, 1.0], [2.0, np.inf]])
    expected = visualize.heatmap(np.array([[0.0, 1.0], [2.0, 2.0]]))
    np.testing.assert_array_equal(visualize.heatmap(values), expected)
    with pytest.raises(ValueError, match=r"heatmap needs finite vmin <= vmax\. Received: "
                                         r"vmin=1, vmax=0"):
        visualize.heatmap(values, vmin=1, vmax=0)
    with pytest.raises(ValueError, match=r"vmin=nan"):
        visualize.heatmap(values, vmin=float("nan"))
    assert visualize.heatmap(np.zeros((0, 3))).shape == (0, 3, 3)  # was a numpy error


def test_legend_and_overlay_name_bad_values():
    with pytest.raises(ValueError, match=r"class_ids must be in 0\.\.255 \(the palette's "
                                         r"ids\)\. Received: 300"):
        visualize.draw_legend(40, [1, 300])  # was IndexError
    image, labels = np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), int)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]\. Received: "
                                         r"alpha='0\.5'"):
        visualize.overlay(image, labels, alpha="0.5")  # was TypeError about '<='


# ------------------------------------------------------------------------- video_pairs.py --

@pytest.mark.skipif(not HAS_CV2, reason="OpenCV not installed (pip install keras_fcn[flow])")
def test_video_pairs_do_not_pair_frames_of_different_sizes(tmp_path):
    """A 32x40 frame followed by a 30x50 one (another clip in the same folder) became a
    training pair, both stretched to one size."""
    from keras_fcn.training import video_pairs

    clip = tmp_path / "footage" / "clip"
    clip.mkdir(parents=True)
    texture = tf.image.resize(RNG.uniform(0, 255, (1, 8, 10, 3)), (32, 40), "bicubic")
    texture = texture.numpy().clip(0, 255).astype("uint8")[0]
    for name, frame in [("f1", texture), ("f2", np.roll(texture, 1, 1)),
                        ("f3", texture[:30]), ("f4", np.roll(texture[:30], 1, 1))]:
        Image.fromarray(frame).save(clip / f"{name}.png")
    pairs = list(video_pairs.video_pairs(str(tmp_path / "footage"), (32, 40)))
    assert len(pairs) == 2  # f1-f2 and f3-f4, not f2-f3
    with pytest.raises(ValueError, match=r"estimate_flow needs two uint8 RGB frames of one "
                                         r"\(H, W, 3\) shape\. Received: \(32, 40, 3\) float32"):
        video_pairs.estimate_flow(texture.astype("float32"), texture.astype("float32"))


def test_add_video_pairs_names_a_size_mismatch():
    """Pairs of another size than the training images failed inside tf.data's map with
    'Dimension 0 in both shapes must be equal'."""
    from keras_fcn.training import video_pairs

    labelled = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 24, 32, 3), "float32"), np.zeros((2, 24, 32), "int32"))).batch(2)
    pairs = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 32, 40, 3), "float32"), np.zeros((2, 32, 40, 3), "float32"),
         np.zeros((2, 32, 40, 2), "float32"), np.ones((2, 32, 40), bool))).batch(1)
    with pytest.raises(ValueError, match=r"The video pairs must have the training images' "
                                         r"size \(H, W\) \(24, 32\)\. Received: pairs of "
                                         r"\(32, 40\)"):
        video_pairs.add_video_pairs(warp_lib.add_warped_pairs(labelled), pairs)


# ------------------------------------------------------------------ examples/litert_segment --

@pytest.fixture
def app():
    return load_script(os.path.join("examples", "litert_segment.py"), "review7_litert")


def test_litert_app_reads_16_bit_grey_and_exif_as_predict_does(app, tmp_path):
    """A 16-bit grey photo was clipped to white (PIL's convert) where tools/predict.py reads
    the high byte; a phone photo's EXIF orientation was ignored (predict applies it)."""
    from keras_fcn.data.arrays import read_image

    grey = tmp_path / "grey16.png"
    Image.fromarray(np.full((4, 6), 200 * 256 + 99, np.uint16)).save(grey)
    with Image.open(grey) as opened:
        photo = app.read_photo(opened)
    np.testing.assert_array_equal(np.asarray(photo), read_image(grey, exif_transpose=True))
    assert np.asarray(photo)[0, 0].tolist() == [200, 200, 200]

    rotated = tmp_path / "phone.jpg"
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.fromarray(pixels).save(rotated, exif=exif, quality=100)
    with Image.open(rotated) as opened:
        photo = app.read_photo(opened)
    assert photo.size == (4, 8)  # (W, H) upright, as predict reads it
    np.testing.assert_array_equal(np.asarray(photo), read_image(rotated, exif_transpose=True))


def test_litert_app_names_a_missing_model_and_a_sidecar_of_another_model(app, tmp_path):
    """A missing model was reported as its missing sidecar; a sidecar whose input dtype or
    quantization is not the model's quantized the pixels wrongly, without an error."""
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    missing = str(tmp_path / "none.tflite")
    with pytest.raises(FileNotFoundError, match=r"^The model '.*none\.tflite' is missing\.$"):
        app.main(["app", missing, str(photo), str(tmp_path / "out.png")])
    meta = {"input": {"shape": [1, 8, 8, 3], "dtype": "uint8",
                      "quantization": {"scale": 1.0, "zero_point": 0}},
            "class_names": ["a", "b"], "palette": [[0, 0, 0], [1, 1, 1]]}
    detail = {"shape": np.array([1, 8, 8, 3]), "dtype": np.uint8, "quantization": (1.0, 0)}
    output = {"shape": np.array([1, 8, 8, 2])}
    app.check_model(meta, "m.tflite", detail, output)  # the same: accepted
    with pytest.raises(ValueError, match=r"gives the input quantization \(scale 1\.0, zero "
                                         r"point 0\) but 'm\.tflite' has \(scale 0\.5, zero "
                                         r"point 3\)"):
        app.check_model(meta, "m.tflite", {**detail, "quantization": (0.5, 3)}, output)
    with pytest.raises(ValueError, match=r"gives the input dtype uint8 but 'm\.tflite' takes "
                                         r"int8"):
        app.check_model(meta, "m.tflite", {**detail, "dtype": np.int8}, output)
