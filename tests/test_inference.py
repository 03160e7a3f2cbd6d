"""Tests of keras_fcn.inference (forward, predict, uncertainty, visualize, temporal, refine,
video, files) and of tools/predict.py's command line, on tiny models."""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fcn import inference as inf
from keras_fcn.export.litert_runner import check_rgb_image
from keras_fcn.inference import files, predictor, visualize
from keras_fcn.inference.forward import forward_fn
from keras_fcn.inference.images import check_image
from keras_fcn.inference.predict import tile_layout
from keras_fcn.labels import VOC_CLASSES, voc_palette
from keras_fcn.layers import CaffePreprocessing
from keras_fcn.models import build_fcn
from keras_fcn.models.inspect import has_preprocessing
from tiny import biased_pointwise_model, randomize_scores, tiny_fcn
from tool_flags import run_in_process

HAS_AV = importlib.util.find_spec("av") is not None


def pointwise_model(num_classes=4):
    """A 1x1-conv model: every output pixel sees only its own input pixel. It takes RGB
    0..255 itself (its own ``preprocess`` layer): a model of one's own without one is refused,
    its preprocessing unknown."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Identity(name="preprocess")(inputs)
    outputs = keras.layers.Conv2D(num_classes, 1, kernel_initializer="glorot_uniform",
                                  bias_initializer="random_normal")(x)
    return keras.Model(inputs, outputs)


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype("uint8")


@pytest.fixture(scope="module")
def fcn():
    keras.utils.set_random_seed(1)
    return tiny_fcn(dropout=0.5, include_preprocessing=True)


# ----------------------------------------------------------------------------- prediction


def test_forward_fn_outputs_and_flip(fcn):
    x = tf.constant(np.stack([random_image(24, 40, 1), random_image(24, 40, 2)]), tf.float32)
    logits = fcn(x, training=False).numpy()
    probs = forward_fn(fcn)(x).numpy()
    np.testing.assert_allclose(forward_fn(fcn, output="logits")(x).numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(probs, tf.nn.softmax(logits).numpy(), atol=1e-6)
    mirrored = tf.nn.softmax(fcn(x[:, :, ::-1], training=False)).numpy()[:, :, ::-1]
    np.testing.assert_allclose(forward_fn(fcn, flip=True)(x).numpy(), (probs + mirrored) / 2,
                               atol=1e-6)
    assert not np.allclose(probs, mirrored, atol=1e-3)  # so the flip test above means something
    assert forward_fn(fcn) is forward_fn(fcn) and forward_fn(fcn, flip=True) is not forward_fn(fcn)


@pytest.mark.parametrize("kwargs, word", [({"output": "probs"}, "output='probs'"),
                                          ({"output": "logits", "flip": True}, "flip=True")])
def test_forward_fn_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        forward_fn(pointwise_model(), **kwargs)


def test_forward_fn_cache_keeps_no_model_alive():
    import gc
    import weakref

    model = pointwise_model()
    forward_fn(model)(tf.zeros((1, 4, 4, 3)))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_predict_shapes_and_probabilities(fcn):
    labels, probs = inf.predict(fcn, random_image(37, 53))
    assert labels.shape == (37, 53) and labels.dtype == np.int32
    assert probs.shape == (37, 53, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    assert inf.predict(fcn, random_image(20, 20), return_probabilities=False).shape == (20, 20)


def test_predict_list_of_different_sizes_matches_single_images(fcn):
    images = [random_image(40, 30, 1), random_image(25, 61, 2), random_image(40, 30, 3)]
    labels, probs = inf.predict(fcn, images, batch_size=2)
    assert [l.shape for l in labels] == [(40, 30), (25, 61), (40, 30)]
    for image, p in zip(images, probs):
        np.testing.assert_allclose(p, inf.predict(fcn, image)[1], atol=1e-5)
    stack_labels, stack_probs = inf.predict(fcn, np.stack([images[0], images[2]]))
    assert stack_probs.shape == (2, 40, 30, 3)
    np.testing.assert_allclose(stack_probs[1], probs[2], atol=1e-5)


def test_preprocessing_is_applied_when_model_lacks_it(fcn):
    raw = tiny_fcn(dropout=0.5, include_preprocessing=False)
    raw.set_weights(fcn.get_weights())
    assert has_preprocessing(fcn) and not has_preprocessing(raw)
    image = random_image(33, 33)
    np.testing.assert_allclose(inf.predict(raw, image)[1], inf.predict(fcn, image)[1], atol=1e-5)


def test_tiled_equals_whole_for_pointwise_model():
    model = pointwise_model()
    image = random_image(70, 95)
    _, whole = inf.predict(model, image)
    _, tiled = inf.predict(model, image, tile_size=32, tile_overlap=8, batch_size=3)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_tiled_fcn_covers_image(fcn):
    labels, probs = inf.predict(fcn, random_image(100, 90), tile_size=32, tile_overlap=8)
    assert probs.shape == (100, 90, 3)  # 2x2 tiles of 68x58 (tile_layout)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("length, tile, overlap", [
    (100, 32, 8), (2500, 1024, 64), (2100, 1024, 64), (130, 64, 16), (200, 32, 31),
    (321, 96, 95), (45, 32, 12)])
def test_tiles_start_on_the_32_pixel_grid_cover_and_end_flush(length, tile, overlap):
    size, starts = tile_layout(length, tile, overlap)
    if length <= tile:
        assert (size, starts) == (length, [0])
        return
    assert tile <= size < max(tile, overlap + 32) + 32 and (length - size) % 32 == 0
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(start % 32 == 0 for start in starts)
    assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # overlap kept
    assert starts == sorted(set(starts))
    assert tile_layout(1000, 256, 64) == (264, [0, 192, 384, 576, 736])
    assert tile_layout(100, 32, 8) == (68, [0, 32])  # 36 - 8 < 32: one step of 32 more


def test_flip_tta_of_symmetric_model_changes_nothing():
    model = pointwise_model()
    image = random_image(17, 23)
    np.testing.assert_allclose(inf.predict(model, image, tta_flip=True)[1],
                               inf.predict(model, image)[1], atol=1e-6)
    _, multi = inf.predict(model, image, scales=(0.5, 1.0, 2.0))
    assert multi.shape == (17, 23, 4)


@pytest.mark.parametrize("kwargs, word", [
    ({"tile_size": 0}, "tile_size=0"), ({"tile_size": 16, "tile_overlap": 16}, "tile_overlap=16"),
    ({"scales": (0,)}, "scales=(0,)"), ({"batch_size": 0}, "batch_size=0"),
])
def test_predict_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(").replace(")", r"\)")):
        inf.predict(pointwise_model(), random_image(8, 8), **kwargs)


# ----------------------------------------------------------------------------- uncertainty


def test_entropy_of_uniform_is_log_c():
    for c in (2, 5, 21):
        np.testing.assert_allclose(inf.entropy(np.full((3, 4, c), 1.0 / c)), np.log(c), rtol=1e-6)
    np.testing.assert_allclose(inf.entropy(np.array([[1.0, 0.0, 0.0]])), 0.0)


def test_margin_closed_form():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(inf.margin(p), [0.3, 0.0, 1.0], atol=1e-7)
    probs = np.random.default_rng(0).dirichlet(np.ones(6), size=(5, 7))
    ordered = np.sort(probs, axis=-1)
    np.testing.assert_allclose(inf.margin(probs), ordered[..., -1] - ordered[..., -2], atol=1e-6)


def test_mc_dropout_variance_zero_without_dropout_positive_with():
    image = random_image(24, 24)
    # Dropout layers of rate 0 give no samples to compare: refused, not maps of zeros.
    with pytest.raises(ValueError, match="rate > 0"):
        inf.mc_dropout(tiny_fcn(dropout=0.0), image, num_samples=3)
    with_dropout = inf.mc_dropout(tiny_fcn(dropout=0.5), image, num_samples=4, seed=3)
    assert float(with_dropout["variance"].mean()) > 0
    assert float(with_dropout["mutual_information"].mean()) > 0
    assert with_dropout["mean"].shape == (24, 24, 3)


def test_mc_dropout_keeps_batchnorm_in_inference_mode():
    inputs = keras.Input((None, None, 3))
    x = CaffePreprocessing(name="preprocess")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(1e-6, name="drop")(x)  # a rate > 0 that (almost) never drops
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(x))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 3.0, "float32"))
    bn.moving_variance.assign(np.full(4, 2.0, "float32"))
    x = random_image(9, 9)[None].astype("float32")
    mc = inf.mc_dropout_model(model)
    np.testing.assert_allclose(mc(x), model(x, training=False), rtol=1e-5, atol=1e-5)
    inf.mc_dropout(model, random_image(9, 9), num_samples=3)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 3.0)  # MC passes did not update stats
    # What calling the model with training=True would have done instead:
    assert not np.allclose(model(x, training=True), model(x, training=False), atol=1e-3)


def test_mobilenet_preprocessing_and_mc_dropout_with_batchnorm():
    with_pre = randomize_scores(build_fcn("8s", num_classes=3, weights=None, dropout=1e-6,
                                           backbone="mobilenet_v2", include_preprocessing=True))
    raw = build_fcn("8s", num_classes=3, weights=None, dropout=1e-6, backbone="mobilenet_v2")
    raw.set_weights(with_pre.get_weights())
    image = random_image(40, 56)
    _, probs = inf.predict(with_pre, image)
    np.testing.assert_allclose(inf.predict(raw, image)[1], probs, atol=1e-4)
    mc = inf.mc_dropout(with_pre, image, num_samples=2)  # BatchNorm stays in inference mode
    np.testing.assert_allclose(mc["mean"], probs, atol=1e-4)
    assert float(mc["variance"].max()) < 1e-10


def test_mc_dropout_needs_dropout_layers():
    with pytest.raises(ValueError, match="Dropout"):
        inf.mc_dropout_model(pointwise_model())


# ----------------------------------------------------------------------------- colours, overlays


def test_overlay_exact_colours():
    image = np.array([[[10, 20, 30], [200, 100, 50]], [[0, 0, 0], [255, 255, 255]]], np.uint8)
    labels = np.array([[0, 1], [15, 255]])
    out = inf.overlay(image, labels, alpha=0.25)
    colours = np.array([[[0, 0, 0], [128, 0, 0]], [[192, 128, 128], [224, 224, 192]]], float)
    expected = np.floor(0.75 * image + 0.25 * colours + 0.5).astype(np.uint8)
    expected[1, 1] = image[1, 1]  # void pixels keep the image
    np.testing.assert_array_equal(out, expected)
    custom = inf.overlay(image, labels, alpha=1.0, palette=[[1, 2, 3], [4, 5, 6]])
    assert custom[0, 0].tolist() == [1, 2, 3] and custom[0, 1].tolist() == [4, 5, 6]


def test_overlay_with_legend_keeps_overlay_and_adds_strip():
    image, labels = random_image(40, 30), np.zeros((40, 30), np.int64)
    labels[20:] = 15
    out = inf.overlay_with_legend(image, labels, class_names=VOC_CLASSES, legend_width=100)
    assert out.shape == (40, 130, 3)
    np.testing.assert_array_equal(out[:, :30], inf.overlay(image, labels))
    strip = out[:, 30:].reshape(-1, 3)
    assert any((strip == [192, 128, 128]).all(1))  # the person swatch


def test_binary_mask_values():
    labels = np.array([[0, 15, 7], [15, 255, 1]])
    np.testing.assert_array_equal(inf.binary_mask(labels, [15, 7]), [[0, 255, 255], [255, 0, 0]])
    np.testing.assert_array_equal(inf.binary_mask(labels, 1), [[0, 0, 0], [0, 0, 255]])


def test_palette_png_round_trip(tmp_path):
    labels = np.array([[0, 1, 2], [15, 255, 20]], np.uint8)
    path = inf.save_png(str(tmp_path / "l.png"), labels, palette=True)
    with Image.open(path) as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), labels)
        np.testing.assert_array_equal(
            np.asarray(image.convert("RGB")), np.asarray(voc_palette(), np.uint8)[labels])
    with pytest.raises(FileExistsError):
        inf.save_png(path, labels, palette=True, overwrite=False)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []  # no temp files left


def test_heatmap_closed_form():
    assert inf.heatmap(np.array([[0.0, 1.0]]), cmap="gray").tolist() == [[[0, 0, 0],
                                                                           [255, 255, 255]]]
    assert inf.heatmap(np.array([[2.0, 4.0]]), cmap="gray", vmin=0, vmax=4).tolist() == [
        [[128, 128, 128], [255, 255, 255]]]


# ----------------------------------------------------------------------------- temporal


def test_flicker_equals_hand_count():
    frames = [np.array([[0, 1], [2, 2]]), np.array([[0, 2], [2, 1]]), np.array([[1, 2], [2, 1]])]
    assert inf.flicker_rate(frames) == pytest.approx(3 / 8)  # 2 changes, then 1, of 2 x 4 px
    assert inf.flicker_rate(frames[:1]) == 0.0


def test_smoothing_lowers_flicker_on_noisy_sequence():
    rng = np.random.default_rng(0)
    truth = np.zeros((20, 30, 3), np.float32)
    truth[:, :15, 0] = truth[:, 15:, 1] = 1.0
    frames = []
    for _ in range(30):
        logits = 2.0 * truth + rng.normal(0, 1.2, truth.shape)
        frames.append(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    raw = inf.flicker_rate([f.argmax(-1) for f in frames])
    smoothed = inf.flicker_rate([f.argmax(-1) for f in inf.smooth_probabilities(frames, 0.3)])
    assert raw > 0.1 and smoothed < raw / 2
    np.testing.assert_allclose(inf.smooth_probabilities(frames, 1.0)[5], frames[5], rtol=1e-6)


def test_smoother_closed_form():
    smoother = inf.TemporalSmoother(alpha=0.25)
    a, b = np.array([[[1.0, 0.0]]]), np.array([[[0.0, 1.0]]])
    smoother(a)
    np.testing.assert_allclose(smoother(b), [[[0.75, 0.25]]])
    with pytest.raises(ValueError, match="alpha=0"):
        inf.TemporalSmoother(alpha=0)


def test_smoothed_sequence_restarts_on_new_size_and_keeps_counts():
    sequence = inf.SmoothedSequence(alpha=0.5)
    a, b = np.array([[[0.9, 0.1], [0.2, 0.8]]]), np.array([[[0.1, 0.9], [0.2, 0.8]]])
    sequence.step(a)
    np.testing.assert_allclose(sequence.step(b), (a + b) / 2)  # smoothed labels: [[0, 1]]
    assert sequence.summary() == {"frames": 2, "pixels_compared": 2, "flicker_raw": 0.5,
                                  "flicker_smoothed": 0.0, "smooth_alpha": 0.5}
    other = np.array([[[0.3, 0.7]]])
    np.testing.assert_allclose(sequence.step(other), other)  # a new size: a new average
    assert sequence.compared == 2 and sequence.raw.shape == (1, 1)
    meter = inf.FlickerMeter()
    meter.update(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="one size"):
        meter.update(np.zeros((3, 2)))
    meter.restart()
    meter.update(np.zeros((3, 2)))
    assert meter.shape == (3, 2) and meter.total == 0


# ----------------------------------------------------------------------------- refinement


def test_guided_refinement_snaps_to_image_edge():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 200
    truth = (np.arange(32) >= 16).astype(int)[None].repeat(32, 0)
    ramp = np.clip((np.arange(32) - 10) / 12.0, 0, 1)  # soft, shifted boundary
    probs = np.stack([1 - ramp, ramp], -1)[None].repeat(32, 0).astype(np.float32)
    refined = inf.refine_boundaries(image, probs, radius=4, eps=1e-3)
    np.testing.assert_allclose(refined.sum(-1), 1.0, atol=1e-5)
    assert (refined.argmax(-1) == truth).mean() > (probs.argmax(-1) == truth).mean()
    assert (refined.argmax(-1) == truth).mean() == 1.0


# ----------------------------------------------------------------------------- files, command line


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    path = str(folder / "tiny.keras")
    keras.utils.set_random_seed(2)
    tiny_fcn(dropout=0.5).save(path)
    # A sidecar as keras_fcn 0.1.0's predict read it: names and colours only.
    (folder / "tiny.labels.json").write_text(json.dumps(
        {"class_names": ["sky", "Car", "road"], "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}))
    return path


def _frames_folder(folder, count=3, size=(24, 32)):
    folder.mkdir()
    for i in range(count):
        Image.fromarray(random_image(*size, seed=i)).save(folder / f"f{i}.png")
    (folder / "notes.png").write_text("this is not a png")
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_run_folder_with_bad_files(tmp_path, saved_model):
    frames = _frames_folder(tmp_path / "seq")
    out = tmp_path / "out"
    opts = predictor.PredictOptions(
        model=saved_model, inputs=[str(frames), str(tmp_path / "missing.jpg")],
        output_dir=str(out), classes=["car"], uncertainty=["entropy", "margin"], smooth_alpha=0.5)
    report = files.run(opts)
    failed = dict(report.failures)
    assert set(failed) == {str(frames / "notes.png"), str(frames / "empty.png"),
                           str(tmp_path / "missing.jpg")}
    assert "empty file" in failed[str(frames / "empty.png")]
    assert "cannot read image" in failed[str(frames / "notes.png")]
    assert report.processed == 3
    names = set(os.listdir(out / "seq"))
    for stem in ("f0", "f1", "f2"):
        for suffix in ("labels.png", "overlay.png", "mask_Car.png", "entropy.png", "entropy.npy",
                       "margin.png", "margin.npy"):
            assert f"{stem}_{suffix}" in names
    assert not [n for n in names if n.startswith(".")]
    with Image.open(out / "seq" / "f0_labels.png") as labels_png:
        labels = np.asarray(labels_png)
        assert labels_png.getpalette()[:9] == list(range(1, 10))  # the sidecar's colours
    with Image.open(out / "seq" / "f0_mask_Car.png") as mask_png:
        np.testing.assert_array_equal(np.asarray(mask_png), np.where(labels == 1, 255, 0))
    entropy = np.load(out / "seq" / "f0_entropy.npy")
    assert entropy.shape == (24, 32) and entropy.max() <= np.log(3) + 1e-5
    assert report.flicker[str(frames)]["smooth_alpha"] == 0.5
    assert report.flicker[str(frames)]["pixels_compared"] == 2 * 24 * 32
    assert report.flicker[str(frames)]["frames"] == 3

    again = files.run(opts)  # existing outputs are kept
    assert again.written == 0 and again.processed == 0 and again.skipped == 3 * 7


def test_expand_inputs_names_and_failures(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(random_image(4, 4)).save(tmp_path / folder / "x.png")
    report = files.Report()
    items = files.expand_inputs([str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"),
                                 str(tmp_path / "*.jpg")], "out", report)
    assert [(item.kind, item.stem, item.out_dir) for item in items] == [
        ("image", "x", "out"), ("image", "x_2", "out")]
    assert report.failures == [(str(tmp_path / "*.jpg"), "pattern matched no file")]
    assert predictor.resolve_classes(["person", "7"], VOC_CLASSES, 21) == [15, 7]
    assert predictor.safe_name("potted plant/2") == "potted_plant_2"


@pytest.mark.parametrize("change, word", [
    # the options' names with the tool's flags, as --alpha's message gives them
    ({"classes": ["bus"]}, "'bus'"),
    ({"uncertainty": ["bayes"]}, r"^uncertainty \(--uncertainty\) accepts .*bayes"),
    ({"smooth_alpha": 0.0}, r"^smooth_alpha \(--smooth_alpha\) must be in \(0, 1\]"),
    ({"uncertainty": ["mc_dropout"], "mc_samples": 1}, r"^mc_samples \(--mc_samples\)"),
    ({"video_format": "avi"}, r"^video_format \(--video_format\) must be one of"),
    ({"mask_hold": 0}, r"^mask_margin \(--mask_margin\) must be in \[0, 1\), mask_hold"),
    ({"tile_size": 16, "tile_overlap": 16},
                                              "tile_overlap=16"),
    ({"model": "nope.keras"}, "nope.keras"),
])
def test_run_rejects_bad_options(tmp_path, saved_model, change, word):
    (tmp_path / "in").mkdir()
    Image.fromarray(random_image(4, 4)).save(tmp_path / "in" / "a.png")  # an input: not empty
    opts = predictor.PredictOptions(model=saved_model, inputs=[str(tmp_path / "in")],
                                    output_dir=str(tmp_path / "out"))
    for key, value in change.items():
        setattr(opts, key, value)
    with pytest.raises(ValueError, match=word):
        files.run(opts)


def test_predictor_rejects_labels_of_another_class_count(tmp_path, saved_model):
    import shutil

    model = shutil.copy(saved_model, tmp_path / "m.keras")
    (tmp_path / "m.labels.json").write_text(json.dumps({"class_names": ["sky", "road"]}))
    with pytest.raises(ValueError, match="name 2 classes; the model has 3"):
        predictor.Predictor(predictor.PredictOptions(model=str(model), inputs=[],
                                                     output_dir=str(tmp_path)))


def test_cli_main_exit_status(tmp_path, saved_model):
    frames = _frames_folder(tmp_path / "seq", count=1)
    # in this process, as the script runs (tests/test_predict_image_size.py: a subprocess)
    result = run_in_process(
        "tools/predict.py", f"--model={saved_model}", f"--output_dir={tmp_path / 'out'}",
        "--noprogress", "--tta=flip", "--tile_size=16", "--tile_overlap=4",
        str(frames), positional=True)  # a positional input, as a shell-expanded glob gives
    assert result.returncode == 1, result.stderr
    # the failures and warnings on stderr, the counts on stdout
    assert "2 input(s) failed" in result.stderr and "notes.png" in result.stderr
    assert "processed 1 frame, wrote" in result.stdout and "failed" not in result.stdout
    assert os.path.exists(tmp_path / "out" / "seq" / "f0_overlay.png")
    # A bad option is a ValueError of files.run (test_run_rejects_bad_options), which
    # keras_fcn.training.cli.run_main prints as one line with exit status 2 (its own tests).


@pytest.mark.skipif(not HAS_AV, reason="PyAV not installed (pip install keras_fcn[video])")
@pytest.mark.parametrize("video_format", ["mp4", "webm"])
def test_run_video_round_trip(tmp_path, saved_model, video_format):
    from keras_fcn.inference import video

    clip = str(tmp_path / "clip.mp4")
    with video.VideoWriter(clip, fps=5) as writer:
        for i in range(4):
            writer.write(random_image(24, 32, seed=i))
    assert len(list(video.read_video(clip))) == 4
    opts = predictor.PredictOptions(model=saved_model, inputs=[clip],
                                output_dir=str(tmp_path / "out"), classes=["road"],
                                smooth_alpha=0.5, video_format=video_format)
    report = files.run(opts)
    assert not report.failures and report.processed == 4
    overlay = list(video.read_video(str(tmp_path / "out" / "clip_overlay.mp4")))
    mask_path = str(tmp_path / "out" / f"clip_mask_road.{video_format}")
    masks = list(video.read_video(mask_path))
    assert len(overlay) == len(masks) == 4 and overlay[0].shape == (24, 32, 3)
    assert len(os.listdir(tmp_path / "out" / "clip")) == 4 * 2  # labels + mask PNG per frame
    flicker = report.flicker[clip]
    assert flicker["pixels_compared"] == 3 * 24 * 32 and flicker["frames"] == 4
    assert "flicker_smoothed" in flicker


def test_video_errors_are_clear(tmp_path):
    from keras_fcn.inference import video

    if not HAS_AV:
        with pytest.raises(ImportError, match=r"keras_fcn\[video\]"):
            video.video_info("x.mp4")
        return
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(ValueError, match="bad.mp4"):
        list(video.read_video(str(bad)))
    with pytest.raises(ValueError, match="extension"):
        video.VideoWriter(str(tmp_path / "x.gif"))


def test_predict_in_bfloat16_and_with_xla_keeps_float32_outputs_and_labels():
    from keras_fcn import inference

    model = tiny_fcn(num_classes=3, include_preprocessing=True, seed=4, scale=1.0)
    image = np.random.default_rng(0).uniform(0, 255, (2, 40, 52, 3)).astype("float32")
    labels, probs = inference.predict(model, image, precision="float32", jit_compile=False)
    for kwargs in ({"precision": "bfloat16"}, {"jit_compile": True}):
        got_labels, got_probs = inference.predict(model, image, **kwargs)
        assert got_probs.dtype == np.float32
        np.testing.assert_allclose(got_probs.sum(-1), 1.0, atol=1e-5)
        assert np.mean(got_labels == labels) >= 0.95, kwargs
    _, xla = inference.predict(model, image, jit_compile=True)
    np.testing.assert_allclose(xla, probs, atol=1e-5)  # XLA is float32-exact
    with pytest.raises(ValueError, match="precision"):
        inference.predict(model, image, precision="int4")


def test_xla_compiles_a_few_shapes_then_uses_the_graph_path(monkeypatch):
    from keras_fcn.inference import forward

    monkeypatch.setattr(forward, "MAX_XLA_SHAPES", 2)
    model = tiny_fcn(num_classes=3, include_preprocessing=True, seed=5)
    fn = forward.forward_fn(model, output="logits", jit_compile=True)
    graph = forward.forward_fn(model, output="logits", jit_compile=False)
    for size in ((16, 20), (18, 20), (16, 20), (20, 24), (22, 26)):
        images = tf.constant(np.random.default_rng(size[0]).uniform(0, 255, (1, *size, 3)),
                             tf.float32)
        np.testing.assert_allclose(fn(images).numpy(), graph(images).numpy(), atol=1e-5)
    assert fn.shapes == {(1, 16, 20, 3), (1, 18, 20, 3)}


# Review 7: argument checks that disagreed between modules.


def test_a_normalized_image_is_refused_by_predict_and_a_black_one_passes():
    with pytest.raises(ValueError, match=r"Image 0 looks normalized to \[0, 1\] \(max=0.9"):
        check_image(0, np.full((4, 4, 3), 0.9, np.float32))
    check_image(0, np.zeros((4, 4, 3), np.float32))        # an all-black frame
    check_image(0, np.full((4, 4, 3), 1.5, np.float32))    # dark, but on the 0..255 scale
    assert check_rgb_image(np.zeros((4, 4, 3), np.float32)).shape == (4, 4, 3)
    with pytest.raises(ValueError):
        check_rgb_image(np.full((4, 4, 3), 0.5, np.float32))


# Review 7: reproducers of bugs that gave a wrong result or an unclear error.


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


# Inference audit, round 4 (keras_fcn.inference, tools/predict.py): each test failed without its
# fix.


def test_predict_refuses_floats_outside_0_255():
    from keras_fcn.inference import mc_dropout, predict

    model = biased_pointwise_model(3, dropout=0.5)
    image = np.full((8, 8, 3), 1000.0, "float32")
    with pytest.raises(ValueError, match=r"Image 0 has values outside \[0, 255\] "
                                         r"\(min=1000\.0, max=1000\.0"):
        predict(model, image)
    image[0, 0, 0] = -5.0
    with pytest.raises(ValueError, match=r"values outside \[0, 255\] \(min=-5\.0"):
        mc_dropout(model, image, num_samples=2)
    labels, _ = predict(model, np.full((8, 8, 3), 255.0, "float32"))  # the edge is fine
    assert labels.shape == (8, 8)


def test_size_guard_sees_scaled_sizes_and_mc_dropout(monkeypatch):
    import importlib

    from keras_fcn.inference import forward, mc_dropout, predict

    predict_module = importlib.import_module("keras_fcn.inference.predict")

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran")

    monkeypatch.setattr(predict_module, "forward_batches", no_forward)
    model = biased_pointwise_model(3, dropout=0.5)
    image = np.zeros((2100, 2100, 3), "uint8")  # 4200x4200 at scale 2
    with pytest.raises(ValueError, match=r"Image 0 of 2100x2100 pixels at scale 2\.0 "
                                         r"\(4200x4200\) is too large to predict in one pass"):
        predict(model, image, tile_size=None, scales=(1.0, 2.0))
    big = np.zeros((4097, 4097, 3), "uint8")
    with pytest.raises(ValueError, match=r"Image 0 of 4097x4097 pixels is too large to "
                                         r"predict in one pass"):  # mc_dropout tiles as predict
        mc_dropout(model, big, num_samples=2, tile_size=None)
    assert forward.forward_batches is not no_forward  # only predict's name was spied
