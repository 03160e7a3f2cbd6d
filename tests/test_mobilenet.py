"""Tests of the MobileNetV2 FCN: shapes, alignment, preprocessing, weights, serialization."""

import numpy as np
import pytest

import keras
import keras_fcn
from keras_fcn import models
from keras_fcn.models import mobilenet_v2 as mobilenet
from tiny import randomize_scores

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def fcn8s():
    keras.utils.set_random_seed(1)
    model = keras_fcn.build_fcn8s(NUM_CLASSES, weights=None, backbone="mobilenet_v2")
    randomize_scores(model, scale=0.05)
    return model


@pytest.mark.parametrize("size", [(1, 1), (17, 31), (32, 32), (33, 65), (37, 50), (95, 130)])
def test_output_shape_any_size(fcn8s, size):
    out = fcn8s(np.zeros((2, *size, 3), "float32"))
    assert tuple(out.shape) == (2, *size, NUM_CLASSES)
    assert out.dtype == "float32"


@pytest.mark.parametrize("variant", ["32s", "16s", "8s_at_once"])
def test_variants_and_layer_names(variant):
    model = keras_fcn.build_fcn(variant, num_classes=2, weights=None, backbone="mobilenet_v2")
    names = {l.name for l in model.layers}
    assert {"score_fr", "score", "pad_to_32"} <= names
    expected = {"32s": {"upscore"}, "16s": {"upscore2", "score_pool4", "upscore16"},
                "8s_at_once": {"upscore2", "score_pool4", "upscore_pool4", "score_pool3",
                               "upscore8"}}[variant]
    assert expected <= names
    assert tuple(model(np.zeros((1, 45, 29, 3))).shape) == (1, 45, 29, 2)
    assert not np.any(model.get_layer("score_fr").get_weights()[0])  # zero init
    assert not model.get_layer(sorted(expected)[-1]).trainable or variant != "32s"


def test_fixed_size_model_matches_any_size_model(fcn8s):
    fixed = keras_fcn.build_fcn8s(NUM_CLASSES, input_shape=(37, 50, 3), weights=fcn8s,
                                  backbone="mobilenet_v2")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 37, 50, 3)).astype("float32")
    np.testing.assert_allclose(fixed(x), fcn8s(x), rtol=1e-4, atol=1e-4)


def _uniform_linear(model, score_layers):
    """Sets the network to a positive, symmetric, linear smoother: impulse responses are then
    centred on the geometric centre of each path, which the crop offsets must put on the input.
    """
    for layer in model.layers:
        weights = layer.get_weights()
        kind = type(layer).__name__
        if kind == "BatchNormalization":
            gamma = np.ones_like(weights[0])
            layer.set_weights([gamma, 0 * gamma, 0 * gamma, gamma - layer.epsilon])
        elif kind == "DepthwiseConv2D":
            k = weights[0]
            layer.set_weights([np.full_like(k, 1.0 / (k.shape[0] * k.shape[1]))] + weights[1:])
        elif kind == "Conv2D":
            k = weights[0]
            on = layer.name in score_layers or not layer.name.startswith("score")
            value = 1.0 / np.prod(k.shape[:3]) if on else 0.0
            layer.set_weights([np.full_like(k, value)] + [0 * w for w in weights[1:]])


def _impulse_shift(model, size=384, at=(190, 170)):
    x = np.zeros((1, size, size, 3), "float32")
    x[0, at[0], at[1]] = 1e-3  # small: every ReLU6 stays linear
    y = np.maximum(np.asarray(model(x))[0, :, :, 0], 0)
    rows, cols = np.mgrid[:size, :size]
    return ((rows * y).sum() / y.sum() - at[0], (cols * y).sum() / y.sum() - at[1])


@pytest.mark.parametrize(
    "variant, path, expected",
    [  # expected shift in pixels, see keras_fcn/models/mobilenet_v2.py (half a pixel from even kernels)
        ("32s", "score_fr", 0.5),
        ("16s", "score_pool4", 0.5),
        ("16s", "score_fr", -7.5),
        ("8s", "score_pool3", 0.5),
        ("8s", "score_pool4", 4.5),
        ("8s", "score_fr", -3.5),
    ],
)
def test_alignment_by_impulse_response(variant, path, expected):
    model = keras_fcn.build_fcn(variant, num_classes=2, weights=None, backbone="mobilenet_v2")
    _uniform_linear(model, {path})
    for shift in _impulse_shift(model):
        assert abs(shift - expected) < 0.5, (variant, path, shift)


def test_alignment_is_the_same_for_every_image_size(fcn8s):
    """Content at the same place gives the same output whatever is padded below/right."""
    rng = np.random.default_rng(2)
    big = rng.uniform(-1, 1, (1, 96, 128, 3)).astype("float32")
    small = big[:, :70, :101]  # not multiples of 32: padded inside to 96x128 with zeros
    zero_filled = np.zeros_like(big)
    zero_filled[:, :70, :101] = small
    np.testing.assert_allclose(fcn8s(small), np.asarray(fcn8s(zero_filled))[:, :70, :101],
                               rtol=1e-4, atol=1e-4)


def test_include_preprocessing_scales_raw_rgb():
    keras.utils.set_random_seed(3)
    raw = keras_fcn.build_fcn32s(2, weights=None, backbone="mobilenet_v2",
                                 include_preprocessing=True)
    randomize_scores(raw, scale=0.05)
    plain = keras_fcn.build_fcn32s(2, weights=raw, backbone="mobilenet_v2")
    images = np.random.default_rng(0).integers(0, 256, (1, 40, 40, 3)).astype("float32")
    np.testing.assert_allclose(raw(images), plain(images / 127.5 - 1.0), rtol=1e-4, atol=1e-4)
    assert raw.get_layer("preprocess") is not None


def test_save_load_round_trip(fcn8s, tmp_path):
    path = tmp_path / "m.keras"
    fcn8s.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 33, 47, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), fcn8s(x), rtol=1e-5, atol=1e-5)
    assert loaded.get_layer("pad_to_32").multiple == 32


def test_imagenet_offline_error_names_local_file(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(RuntimeError, match="offline.*weights='/path/to/mobilenet_v2"):
        mobilenet.fetch_mobilenet_v2_imagenet_weights(cache_dir=str(tmp_path))


def _write_legacy_h5(model, path):
    """Writes weights in the legacy by-name layout of the keras-applications ImageNet files."""
    import h5py

    with h5py.File(path, "w") as f:
        names = [l.name for l in model.layers]
        f.attrs["layer_names"] = [n.encode() for n in names]
        for layer in model.layers:
            group = f.create_group(layer.name)
            weight_names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in weight_names]
            for name, value in zip(weight_names, layer.get_weights()):
                group.create_dataset(name, data=value)
    return path


def test_loads_trunk_weights_from_file(tmp_path, monkeypatch):
    trunk = keras.applications.MobileNetV2(include_top=False, weights=None,
                                           input_shape=(96, 96, 3))
    path = _write_legacy_h5(trunk, str(tmp_path / "trunk_no_top.h5"))
    model = keras_fcn.build_fcn8s(4, weights=path, backbone="mobilenet_v2")
    for name in ("Conv1", "block_13_expand_BN", "Conv_1"):
        for got, want in zip(model.get_layer(name).get_weights(),
                             trunk.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    # "imagenet" goes through the same loader and insists on every trunk layer.
    monkeypatch.setattr(mobilenet, "fetch_mobilenet_v2_imagenet_weights", lambda: path)
    model = keras_fcn.build_fcn32s(4, weights="imagenet", backbone="mobilenet_v2")
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0],
                                  trunk.get_layer("Conv1").get_weights()[0])


def test_imagenet_file_missing_layers_is_an_error(tmp_path, monkeypatch):
    path = str(tmp_path / "partial.npz")
    np.savez(path, **{"Conv1/0": np.zeros((3, 3, 3, 32), "float32")})
    monkeypatch.setattr(mobilenet, "fetch_mobilenet_v2_imagenet_weights", lambda: path)
    with pytest.raises(ValueError, match="not found in the weights"):
        keras_fcn.build_fcn32s(2, weights="imagenet", backbone="mobilenet_v2")


def test_pad_to_multiple_rejects_bad_multiple():
    with pytest.raises(ValueError, match="multiple=0"):
        mobilenet.PadToMultiple(0)


def test_inspect_knows_mobilenet_v2_and_its_scaling(fcn8s):
    images = np.array([[[[0, 127.5, 255]]]], "float32")
    np.testing.assert_allclose(mobilenet.mobilenet_v2_preprocess_input(images), [[[[-1, 0, 1]]]])
    assert models.preprocessing_fn(fcn8s) is mobilenet.mobilenet_v2_preprocess_input
    assert models.normalization_of(fcn8s) == {"type": "scale", "scale": 1 / 127.5, "offset": -1.0,
                                              "formula": "x / 127.5 - 1 on RGB"}
    raw = models.raw_rgb_model(fcn8s)
    uint8 = models.with_preprocessing(fcn8s)
    assert models.backbone_of(raw) == models.backbone_of(uint8) == "mobilenet_v2"
    assert models.preprocessing_fn(raw) is None
    x = np.random.default_rng(2).integers(0, 256, (1, 35, 41, 3))
    expected = np.asarray(fcn8s(mobilenet.mobilenet_v2_preprocess_input(x.astype("float32"))))
    np.testing.assert_allclose(raw(x.astype("float32")), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(uint8(x.astype("uint8")), expected, rtol=1e-5, atol=1e-5)
