"""Tests of keras_fcn.inference.files and keras_fcn.inference.predictor: what tools/predict.py
reads and writes (images, folders, videos, masks, reruns), on tiny models."""

import hashlib
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_fcn.inference import files, predictor
from tiny import biased_pointwise_model, save_model
from tool_flags import run_in_process


# Inference audit, round 4 (keras_fcn.inference, tools/predict.py): each test failed without its
# fix.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_AV = importlib.util.find_spec("av") is not None
needs_av = pytest.mark.skipif(not HAS_AV, reason="PyAV not installed")


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype("uint8")


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def options(model, inputs, out, **kwargs):
    return predictor.PredictOptions(model=model, inputs=[str(i) for i in inputs],
                                    output_dir=str(out), **kwargs)


def cli(*args):
    """tools/predict.py run in this process as its __main__ block runs it (no TensorFlow
    start-up; tests/test_predict_image_size.py runs the script in a subprocess)."""
    return run_in_process("tools/predict.py", "--noprogress", *args, positional=True)


@pytest.fixture(scope="module")
def varied_model(tmp_path_factory):
    """A pointwise 3-class model whose labels depend on the pixel colours."""
    return save_model(biased_pointwise_model(3, seed=3), tmp_path_factory.mktemp("varied"))


def test_more_than_256_classes_is_refused_before_anything_is_written(tmp_path):
    model = save_model(biased_pointwise_model(300, favoured=290), tmp_path)
    Image.fromarray(random_image(32, 32)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="predicts 300 classes.*at most 256 classes"):
        files.run(options(model, [tmp_path / "a.png"], tmp_path / "out", classes=["290"]))
    assert not os.path.exists(tmp_path / "out")


def test_class_255_of_a_256_class_model_is_coloured_and_in_the_legend(tmp_path):
    model = save_model(biased_pointwise_model(256, favoured=255), tmp_path)
    image = np.full((32, 32, 3), 100, "uint8")
    Image.fromarray(image).save(tmp_path / "a.png")
    report = files.run(options(model, [tmp_path / "a.png"], tmp_path / "out", classes=["255"],
                               alpha=1.0))
    assert report.processed == 1 and not report.failures
    labels = np.asarray(Image.open(tmp_path / "out" / "a_labels.png"))
    assert np.unique(labels).tolist() == [255]
    mask = np.asarray(Image.open(tmp_path / "out" / "a_mask_class255.png"))
    assert np.unique(mask).tolist() == [255]
    rgb = np.asarray(Image.open(tmp_path / "out" / "a_overlay.png"))
    from keras_fcn.labels import voc_palette
    assert rgb[0, 0].tolist() == list(voc_palette(256)[255])  # not the grey image
    legend = rgb[:, 32:]
    assert (legend[4:14, 4:14] != 255).any()  # a swatch: class 255 is listed


def test_output_that_is_an_input_is_refused_before_the_model_loads(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(random_image(32, 32, 1)).save(photos / "x.png")
    Image.fromarray(random_image(32, 32, 2)).save(photos / "x_overlay.png")  # a user photo
    before = {name: digest(photos / name) for name in os.listdir(photos)}
    fake = tmp_path / "fake.keras"  # never loaded: the refusal comes first
    fake.write_text("not a model")
    # A folder into itself: <output_dir>/photos is photos/.
    with pytest.raises(ValueError, match=r"outputs of the input folder .*photos.* into that "
                                         r"folder itself"):
        files.run(options(str(fake), [photos], tmp_path, overwrite=True))
    # Files named one by one into their own folder: x_overlay.png is x's output.
    with pytest.raises(ValueError, match=r"An output of .*x\.png.* would be the input "
                                         r".*x_overlay\.png"):
        files.run(options(str(fake), [photos / "x.png", photos / "x_overlay.png"], photos,
                          overwrite=True))
    # A glob into its own folder: refused as a folder into itself is.
    with pytest.raises(ValueError, match=r"outputs of the pattern .*\*\.png' into the folder "
                                         r"of its images"):
        files.run(options(str(fake), [photos / "*.png"], photos, overwrite=True))
    assert {name: digest(photos / name) for name in os.listdir(photos)} == before


def test_output_over_input_cli_exits_2_with_one_line(tmp_path, varied_model):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(random_image(32, 32, 1)).save(photos / "x.png")
    Image.fromarray(random_image(32, 32, 2)).save(photos / "x_mask_car.png")
    result = cli(f"--model={varied_model}", f"--output_dir={photos}", "--classes=1",
                 "--overwrite", str(photos / "x.png"), str(photos / "x_mask_car.png"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: An output of") and "x_mask_car.png" in lines[-1]
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(photos)) == ["x.png", "x_mask_car.png"]
    # Into another folder both are predicted.
    result = cli(f"--model={varied_model}", f"--output_dir={tmp_path / 'out'}", "--classes=1",
                 str(photos / "x.png"), str(photos / "x_mask_car.png"))
    assert result.returncode == 0, result.stderr
    assert "x_mask_car_labels.png" in os.listdir(tmp_path / "out")


def _clip(path, count=4, size=(32, 40)):
    from keras_fcn.inference import video

    with video.VideoWriter(str(path), fps=5) as writer:
        for i in range(count):
            writer.write(random_image(*size, seed=10 + i))
    return path


@needs_av
def test_video_rerun_keeps_existing_videos_and_makes_new_outputs(tmp_path, varied_model):
    clip = _clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    first = files.run(options(varied_model, [clip], out))
    assert first.processed == 4 and not first.failures
    overlay = out / "clip_overlay.mp4"
    with open(overlay, "ab") as f:
        f.write(b"USER-EDITED")
    edited = digest(overlay)
    # A rerun asking for a mask keeps the overlay video and makes the mask video.
    second = files.run(options(varied_model, [clip], out, classes=["1"]))
    assert digest(overlay) == edited
    assert os.path.exists(out / "clip_mask_class1.mp4")
    assert sorted(n for n in os.listdir(out / "clip") if "mask" in n) == [
        f"frame_{i:06d}_mask_class1.png" for i in range(4)]
    assert second.processed == 4 and second.skipped == 1 + 4  # the overlay, 4 labels PNGs
    # A rerun asking for per-frame maps is not skipped because the videos exist.
    third = files.run(options(varied_model, [clip], out, classes=["1"],
                              uncertainty=["entropy"]))
    assert third.processed == 4
    assert sorted(n for n in os.listdir(out / "clip") if "entropy" in n) == sorted(
        f"frame_{i:06d}_entropy.{ext}" for i in range(4) for ext in ("png", "npy"))
    # Everything exists: skipped, nothing predicted.
    fourth = files.run(options(varied_model, [clip], out, classes=["1"],
                               uncertainty=["entropy"]))
    assert fourth.processed == 0 and fourth.written == 0 and fourth.skipped == 2 + 4 * 4
    # --overwrite replaces the edited overlay.
    files.run(options(varied_model, [clip], out, overwrite=True))
    assert digest(overlay) != edited


def test_read_image_scales_16_bit_grey_and_refuses_float_modes(tmp_path):
    values = np.array([[0, 256, 257, 32896], [50000, 65278, 65534, 65535]], "uint16")
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = files.read_image(str(tmp_path / "g16.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    np.testing.assert_array_equal(rgb[..., 0], [[0, 1, 1, 128], [195, 254, 255, 255]])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    from keras_fcn.data.arrays import read_image as training_read_image
    np.testing.assert_array_equal(rgb, training_read_image(tmp_path / "g16.png"))
    Image.fromarray(np.full((4, 4), 70000, "int32")).save(tmp_path / "i32.tif")
    with pytest.raises(ValueError, match=r"i32\.tif.*outside 0\.\.65535"):
        files.read_image(str(tmp_path / "i32.tif"))
    Image.fromarray(np.full((4, 4), 0.5, "float32")).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"f\.tif.*32-bit float pixels \(mode F\)"):
        files.read_image(str(tmp_path / "f.tif"))


def _labelled_model(folder, class_names, **kwargs):
    import json

    path = save_model(biased_pointwise_model(len(class_names), **kwargs), folder)
    (folder / "m.labels.json").write_text(json.dumps({"class_names": list(class_names)}),
                                          encoding="utf-8")
    return path


def test_unicode_and_colliding_class_names_get_one_mask_file_each(tmp_path):
    model = _labelled_model(tmp_path, ["背景", "自行车", "汽车"], seed=3)
    image = random_image(32, 32, 4)
    Image.fromarray(image).save(tmp_path / "a.png")
    report = files.run(options(model, [tmp_path / "a.png"], tmp_path / "out",
                               classes=["自行车", "汽车"]))
    assert report.written == 4 and report.skipped == 0
    labels = np.asarray(Image.open(tmp_path / "out" / "a_labels.png"))
    assert {1, 2} <= set(np.unique(labels).tolist())
    for class_id, name in ((1, "自行车"), (2, "汽车")):
        mask = np.asarray(Image.open(tmp_path / "out" / f"a_mask_{name}.png"))
        np.testing.assert_array_equal(mask, np.where(labels == class_id, 255, 0))
    assert predictor.mask_names([1, 2], ["bg", "a/b", "a b"]) == {1: "a_b_1", 2: "a_b_2"}
    assert predictor.mask_names([1, 2], ["bg", "Car", "car"]) == {1: "Car_1", 2: "car_2"}
    with pytest.raises(ValueError, match=r"classes 1 and 3 would both be written as "
                                         r"'\*_mask_a_1\.png'"):
        predictor.mask_names([1, 2, 3], ["bg", "a", "a", "a_1"])


def test_frames_are_listed_and_smoothed_in_natural_order(tmp_path, varied_model):
    for name, fmt in (("A", "frame_{}.png"), ("B", "frame_{:03d}.png")):
        (tmp_path / name).mkdir()
        for i in range(1, 13):
            Image.fromarray(random_image(32, 32, seed=i)).save(tmp_path / name / fmt.format(i))
    items = files.expand_inputs([str(tmp_path / "A")], str(tmp_path / "out"), files.Report())
    assert [item.stem for item in items] == [f"frame_{i}" for i in range(1, 13)]
    glob_items = files.expand_inputs([str(tmp_path / "A" / "*.png")], "o", files.Report())
    assert [item.stem for item in glob_items] == [f"frame_{i}" for i in range(1, 13)]
    for name in ("A", "B"):
        files.run(options(varied_model, [tmp_path / name], tmp_path / "out", smooth_alpha=0.3))
    for i in range(1, 13):
        a = np.asarray(Image.open(tmp_path / "out" / "A" / f"frame_{i}_labels.png"))
        b = np.asarray(Image.open(tmp_path / "out" / "B" / f"frame_{i:03d}_labels.png"))
        np.testing.assert_array_equal(a, b)
    # A glob's frames are one sequence, smoothed as the folder's (they were predicted one by
    # one without a word: walkthrough of 2026-12-06); files named one by one get a note.
    pattern = str(tmp_path / "A" / "*.png")
    assert {item.sequence for item in glob_items} == {pattern}
    report = files.run(options(varied_model, [pattern], tmp_path / "glob", smooth_alpha=0.3))
    assert list(report.flicker) == [pattern] and report.flicker[pattern]["frames"] == 12
    for i in range(1, 13):
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "glob" / f"frame_{i}_labels.png")),
            np.asarray(Image.open(tmp_path / "out" / "A" / f"frame_{i}_labels.png")))
    report = files.run(options(varied_model, [tmp_path / "A" / "frame_1.png"],
                               tmp_path / "one", smooth_alpha=0.3))
    assert not report.flicker and report.warnings == [
        "--smooth_alpha smooths the frames of a folder, a glob or a video: 1 image(s) given one "
        "by one were predicted on their own (pass their folder or a glob to smooth them as one "
        "sequence)"]


@needs_av
def test_a_video_and_a_folder_of_one_name_write_apart(tmp_path, varied_model):
    clip = _clip(tmp_path / "clip.mp4", count=2)
    (tmp_path / "coll" / "clip").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(random_image(32, 40, seed=50 + i)).save(
            tmp_path / "coll" / "clip" / f"frame_{i:06d}.png")
    out = tmp_path / "out"
    report = files.run(options(varied_model, [clip, tmp_path / "coll" / "clip"], out))
    assert report.skipped == 0 and report.processed == 4 and not report.failures
    assert sorted(os.listdir(out / "clip")) == [f"frame_{i:06d}_labels.png" for i in range(2)]
    assert sorted(os.listdir(out / "clip_2")) == sorted(
        f"frame_{i:06d}_{kind}.png" for i in range(2) for kind in ("labels", "overlay"))
    # The folder's labels are its own frames' labels (not the video's).
    single = files.run(options(varied_model, [tmp_path / "coll" / "clip"], tmp_path / "alone"))
    assert single.processed == 2
    for i in range(2):
        name = f"frame_{i:06d}_labels.png"
        assert digest(out / "clip_2" / name) == digest(tmp_path / "alone" / "clip" / name)
    # The other order: the folder keeps its name, the video's frames move.
    items = files.expand_inputs([str(tmp_path / "coll" / "clip"), str(clip)], "o", files.Report())
    assert [(i.kind, i.out_dir, i.stem) for i in items] == [
        ("image", os.path.join("o", "clip"), "frame_000000"),
        ("image", os.path.join("o", "clip"), "frame_000001"), ("video", "o", "clip_2")]


def test_bad_alpha_is_refused_before_the_model_loads(tmp_path):
    Image.fromarray(random_image(32, 32)).save(tmp_path / "a.png")
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    for alpha in (1.5, -0.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match=r"alpha \(--alpha, .*\) must be a number in "
                                             r"\[0, 1\]\. Received: "):
            files.run(options(str(fake), [tmp_path / "a.png"], tmp_path / "out", alpha=alpha))
    assert not os.path.exists(tmp_path / "out")
    result = cli(f"--model={fake}", f"--output_dir={tmp_path / 'out'}", "--alpha=-0.5",
                 str(tmp_path / "a.png"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: alpha (--alpha, the opacity of the class colours) must be a number in [0, 1]. "
        "Received: -0.5")
    assert not os.path.exists(tmp_path / "out")


@needs_av
def test_videos_inside_an_input_folder_are_predicted(tmp_path, varied_model):
    mixed = tmp_path / "mixdir"
    mixed.mkdir()
    Image.fromarray(random_image(32, 32)).save(mixed / "a.png")
    _clip(mixed / "clip.mp4", count=3)
    report = files.run(options(varied_model, [mixed], tmp_path / "out"))
    assert not report.failures and report.processed == 1 + 3
    assert sorted(os.listdir(tmp_path / "out" / "mixdir")) == [
        "a_labels.png", "a_overlay.png", "clip", "clip_overlay.mp4"]
    assert sorted(os.listdir(tmp_path / "out" / "mixdir" / "clip")) == [
        f"frame_{i:06d}_labels.png" for i in range(3)]
    only_video = tmp_path / "vids"
    only_video.mkdir()
    _clip(only_video / "v.mp4", count=2)
    items = files.expand_inputs([str(only_video)], "o", files.Report())
    assert [(i.kind, i.stem, i.out_dir) for i in items] == [
        ("video", "v", os.path.join("o", "vids"))]


@needs_av
def test_a_folder_of_videos_into_itself_is_refused(tmp_path):
    vids = tmp_path / "vids"
    vids.mkdir()
    _clip(vids / "v.mp4", count=2)
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    with pytest.raises(ValueError, match=r"outputs of the input folder .*vids.* into that "
                                         r"folder itself"):
        files.run(options(str(fake), [vids], tmp_path))
    assert os.listdir(vids) == ["v.mp4"]


def test_exif_orientation_is_applied_so_outputs_line_up_with_the_photo(tmp_path, varied_model):
    raw = random_image(20, 40, 8)  # stored 40 wide, 20 high; shown 20 wide, 40 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    Image.fromarray(raw).save(tmp_path / "exif.png", exif=exif)
    rgb = files.read_image(str(tmp_path / "exif.png"))
    np.testing.assert_array_equal(rgb, np.rot90(raw, k=-1))
    report = files.run(options(varied_model, [tmp_path / "exif.png"], tmp_path / "out",
                               classes=["1"]))
    assert report.processed == 1
    labels = np.asarray(Image.open(tmp_path / "out" / "exif_labels.png"))
    mask = np.asarray(Image.open(tmp_path / "out" / "exif_mask_class1.png"))
    assert labels.shape == mask.shape == (40, 20)
    from keras_fcn.inference import predict
    np.testing.assert_array_equal(labels, predict(keras.models.load_model(varied_model), rgb)[0])


def test_resumed_smoothed_sequence_warns_that_smoothing_restarts(tmp_path, varied_model):
    import io

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(1, 7):
        Image.fromarray(random_image(32, 32, seed=20 + i)).save(frames / f"f{i}.png")
    out = tmp_path / "out"
    first = files.run(options(varied_model, [frames], out, smooth_alpha=0.3))
    assert first.warnings == []
    for i in (4, 5, 6):
        os.remove(out / "frames" / f"f{i}_labels.png")
    second = files.run(options(varied_model, [frames], out, smooth_alpha=0.3))
    assert second.processed == 3
    assert second.warnings == [
        f"{frames}: smoothing restarts at f4.png: the outputs of 3 earlier frame(s) were kept, "
        "not predicted, so they are not in its moving average and its labels differ from an "
        "uninterrupted run (use --overwrite to smooth the whole sequence again)"]
    text = io.StringIO()
    files.print_report(second, text)
    assert f"warning: {frames}: smoothing restarts at f4.png" in text.getvalue()
    # Without smoothing nothing restarts: no warning.
    os.remove(out / "frames" / "f6_labels.png")
    assert files.run(options(varied_model, [frames], out)).warnings == []


@needs_av
def test_odd_sized_videos_keep_their_size_where_the_codec_allows(tmp_path, varied_model):
    from keras_fcn.inference import video

    clip = _clip(tmp_path / "odd.webm", count=3, size=(33, 41))
    assert video.video_info(str(clip))["width"] == 41
    out = tmp_path / "out"
    report = files.run(options(varied_model, [clip], out, classes=["1"], video_format="mov"))
    assert report.processed == 3 and not report.failures
    mask = list(video.read_video(str(out / "odd_mask_class1.mov")))
    overlay = list(video.read_video(str(out / "odd_overlay.mp4")))
    assert len(mask) == len(overlay) == 3
    assert mask[0].shape == (33, 41, 3)  # ProRes 4444 keeps the odd size
    assert overlay[0].shape == (32, 40, 3)  # H.264 4:2:0: cropped, as documented
    frame = np.asarray(Image.open(out / "odd" / "frame_000000_mask_class1.png"))
    assert frame.shape == (33, 41, 4)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert "crops an odd width or height by one pixel" in " ".join(result.stdout.split())


def test_predictor_refuses_a_two_output_model_naming_its_outputs(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1.0 / 255, name="preprocess")(inputs)
    outputs = {"semantic": keras.layers.Conv2D(3, 1, name="semantic")(x),
               "aux": keras.layers.Conv2D(3, 1, name="aux")(x)}
    model = save_model(keras.Model(inputs, outputs, name="two_heads"), tmp_path)
    Image.fromarray(random_image(32, 32)).save(tmp_path / "a.png")
    opts = options(model, [tmp_path / "a.png"], tmp_path / "out")
    message = (r"^Model 'two_heads' has 2 outputs \['semantic', 'aux'\]; prediction takes a "
               r"single-output FCN \(logits \(N, H, W, C\)\): build it without the auxiliary "
               r"head \(aux=False\), or keep one head, e\.g\. keras\.Model\(model\.inputs, "
               r"model\.output\['semantic'\]\)\. Received: outputs=\['semantic', 'aux'\]$")
    with pytest.raises(ValueError, match=message):
        predictor.Predictor(opts)
    with pytest.raises(ValueError, match=message):
        files.run(opts)
    assert not os.path.exists(tmp_path / "out")


# Review 7: argument checks that disagreed between modules.


@pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV not installed")
def test_a_video_without_decodable_frames_fails_instead_of_counting_files(tmp_path, monkeypatch):
    from keras_fcn.inference import files, predictor, video
    from tiny import tiny_fcn

    model_path = str(tmp_path / "tiny.keras")
    tiny_fcn().save(model_path)
    clip = str(tmp_path / "clip.mp4")
    with video.VideoWriter(clip, fps=5) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
    # opens, decodes nothing
    monkeypatch.setattr(video, "read_video", lambda path, times=False: iter(()))
    opts = predictor.PredictOptions(model=model_path, inputs=[clip],
                                    output_dir=str(tmp_path / "out"))
    report = files.run(opts)
    assert report.written == 0 and report.processed == 0
    assert [path for path, _ in report.failures] == [clip]
    assert "No frame of the video" in report.failures[0][1]
    assert not os.path.exists(tmp_path / "out" / "clip_overlay.mp4")
