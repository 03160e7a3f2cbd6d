"""Tests of keras_fcn.inference.uncertainty: Monte-Carlo dropout and the uncertainty maps, on tiny
models and 32-64 px images."""

import importlib
import os

import keras
import numpy as np
import pytest
from PIL import Image

from tiny import biased_pointwise_model, save_model, tiny_fcn
from keras_fcn.inference import (
    files,
    mc_dropout,
    mc_dropout_model,
    predict,
    predictor,
    uncertainty,
)
from keras_fcn.inference.forward import in_precision


# Leftovers of the inference audits: Monte-Carlo dropout runs the same tiling and flip/scale TTA
# as the label maps (mc_dropout, Predictor.uncertainty_maps), so its maps describe the
# probabilities that are labelled.


# Small tiles and a flip: the probabilities differ from one-pass ones.
TTA = {"tile_size": 32, "tile_overlap": 8, "tta_flip": True}


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype("uint8")


def switch_dropout_off(net):
    """Caches ``net``'s Monte-Carlo dropout copy with every dropout rate set to 0: its samples
    are then the deterministic probabilities. (mc_dropout refuses a model built with rate 0.)"""
    mc = mc_dropout_model(net)
    for layer in mc.layers:
        if isinstance(layer, uncertainty.AlwaysOnDropout):
            layer.rate = 0.0
    uncertainty._MC_MODELS[net] = mc  # pylint: disable=protected-access


def pointwise_model(num_classes=3, dropout=0.5, seed=0):
    """A 1x1-conv model on RGB 0..255 with one Dropout layer."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1.0 / 255, name="preprocess")(inputs)
    x = keras.layers.Dropout(dropout, name="drop")(x)
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1, name="score")(x))


def conv_model(num_classes=3, seed=0):
    """A 3x3 conv, Dropout and a 1x1 conv on RGB 0..255: its softmax changes at tile borders
    and under a flip, and it saves and loads faster than an FCN."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1.0 / 255, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv",
                            kernel_initializer=keras.initializers.RandomNormal(0.0, 2.0))(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1, name="score")(x))


@pytest.mark.parametrize("make, scales", [
    (conv_model, (1.0,)),
    pytest.param(lambda: tiny_fcn(dropout=0.5), (1.0, 0.75), marks=pytest.mark.slow),
])
def test_mc_mean_without_dropout_is_predicts_tiled_flipped_probabilities(make, scales):
    model = make()
    image = random_image(40, 56, 1)
    _, tiled = predict(model, image, scales=scales, **TTA)
    _, one_pass = predict(model, image)
    assert float(np.abs(tiled - one_pass).max()) > 1e-2  # the options change the softmax
    switch_dropout_off(model)
    result = mc_dropout(model, image, num_samples=3, scales=scales, **TTA)
    np.testing.assert_allclose(result["mean"], tiled, atol=1e-6)
    np.testing.assert_array_equal(result["labels"], tiled.argmax(-1))
    assert float(result["variance"].max()) < 1e-10
    assert float(result["mutual_information"].max()) < 1e-5


def test_mc_dropout_with_tiles_and_flips_is_reproducible_per_seed():
    model = pointwise_model()
    image = random_image(40, 48, 2)
    first = mc_dropout(model, image, num_samples=3, seed=4, **TTA)
    again = mc_dropout(model, image, num_samples=3, seed=4, **TTA)
    other = mc_dropout(model, image, num_samples=3, seed=5, **TTA)
    for key in ("mean", "variance", "mutual_information"):
        np.testing.assert_array_equal(first[key], again[key])
    assert float(first["variance"].max()) > 1e-4
    assert float(np.abs(first["variance"] - other["variance"]).max()) > 1e-5


def test_mc_dropout_tiles_images_past_the_one_pass_limit(monkeypatch):
    predict_module = importlib.import_module("keras_fcn.inference.predict")
    # Limits of 32x32 pixels stand for 4096x4096 (one pass) and 2048x2048 (auto tiles).
    monkeypatch.setattr(predict_module, "MAX_UNTILED_PIXELS", 32 * 32)
    monkeypatch.setattr(predict_module, "AUTO_TILE_PIXELS", 32 * 32)
    monkeypatch.setattr(predict_module, "AUTO_TILE_SIZE", 32)
    model = conv_model()
    image = random_image(100, 90, 3)  # 2x2 tiles of 68x58 (tile_layout)
    with pytest.raises(ValueError, match=r"Image 0 of 100x90 pixels is too large to predict in "
                                         r"one pass \(more than 1024 pixels.*tile_size='auto'"):
        mc_dropout(model, image, num_samples=2, tile_size=None)
    _, tiled = predict(model, image, tile_overlap=8)  # "auto": tiles of 32
    _, one_pass = predict(model, image, tile_size=128, tile_overlap=8)
    assert float(np.abs(tiled - one_pass).max()) > 1e-2
    switch_dropout_off(model)
    result = mc_dropout(model, [image], num_samples=2, tile_overlap=8)
    np.testing.assert_allclose(result["mean"][0], tiled, atol=1e-6)


def test_mc_dropout_checks_the_tile_options_first():
    with pytest.raises(ValueError, match=r"tile_overlap must be an integer in \[0, tile_size\)\. "
                                         r"Received: tile_overlap=32, tile_size=32"):
        mc_dropout(pointwise_model(), random_image(8, 8), num_samples=2, tile_size=32,
                   tile_overlap=32)


def test_predictor_mc_maps_use_the_label_maps_tiling_and_tta(tmp_path, monkeypatch):
    path = str(tmp_path / "m.keras")
    conv_model().save(path)
    opts = predictor.PredictOptions(model=path, inputs=["x.png"], output_dir=str(tmp_path),
                                    uncertainty=["mc_dropout"], mc_samples=2,
                                    scales=(1.0, 0.75), **TTA)
    run = predictor.Predictor(opts)
    switch_dropout_off(run.model)
    means = []

    def spy(*args, **kwargs):
        result = mc_dropout(*args, **kwargs)
        means.append(result["mean"])
        return result

    monkeypatch.setattr(predictor, "mc_dropout", spy)
    image = random_image(40, 56, 4)
    probs = run.probabilities(image)
    maps = run.uncertainty_maps(image, probs)
    _, one_pass = predict(run.model, image)
    assert float(np.abs(probs - one_pass).max()) > 1e-2
    np.testing.assert_allclose(means[0], probs, atol=1e-6)
    assert float(maps["mc_variance"][0].max()) < 1e-10


def test_mc_dropout_runs_in_the_precision_predict_runs_in():
    model = conv_model()
    image = random_image(40, 48, 5)
    _, bf16 = predict(model, image, precision="bfloat16", **TTA)
    _, f32 = predict(model, image, **TTA)
    assert float(np.abs(bf16 - f32).max()) > 1e-4
    switch_dropout_off(in_precision(model, "bfloat16"))
    result = mc_dropout(model, image, num_samples=2, precision="bfloat16", **TTA)
    np.testing.assert_allclose(result["mean"], bf16, atol=1e-6)


# Inference audit, round 4 (keras_fcn.inference, tools/predict.py): each test failed without its
# fix.


def options(model, inputs, out, **kwargs):
    return predictor.PredictOptions(model=model, inputs=[str(i) for i in inputs],
                                    output_dir=str(out), **kwargs)


def test_mc_dropout_refuses_dropout_layers_of_rate_zero(tmp_path):
    from keras_fcn.inference import mc_dropout, mc_dropout_model
    from tiny import tiny_fcn

    with pytest.raises(ValueError, match=r"Dropout layers of rate > 0.*has only drop6 "
                                         r"\(rate=0\.0\), drop7 \(rate=0\.0\)"):
        mc_dropout(tiny_fcn(dropout=0.0), random_image(32, 32), num_samples=2)
    model = biased_pointwise_model(3, dropout=0.5)
    result = mc_dropout(model, random_image(32, 32), num_samples=4, seed=1)
    assert float(result["variance"].max()) > 1e-6
    assert mc_dropout_model(model).get_layer("drop").__class__.__name__ == "AlwaysOnDropout"
    # tools/predict.py: refused before any output is written.
    path = save_model(biased_pointwise_model(3, dropout=0.0), tmp_path)
    Image.fromarray(random_image(32, 32)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"has only drop \(rate=0\.0\)"):
        files.run(options(path, [tmp_path / "a.png"], tmp_path / "out",
                          uncertainty=["mc_dropout"]))
    assert not os.path.exists(tmp_path / "out")


def test_mc_dropout_running_statistics_equal_the_stacked_ones():
    from keras_fcn.inference import entropy, mc_dropout, mc_dropout_model
    from keras_fcn.inference.forward import forward_batches

    model = biased_pointwise_model(3, dropout=0.5, seed=5)
    image = random_image(32, 32, 6)
    result = mc_dropout(model, image, num_samples=5, seed=7)
    mc = mc_dropout_model(model, seed=7)  # the same masks, drawn again
    samples = np.stack([forward_batches(mc, image[None]) for _ in range(5)])[:, 0]
    mean = samples.mean(axis=0)
    np.testing.assert_allclose(result["mean"], mean, atol=1e-6)
    np.testing.assert_allclose(result["variance"], samples.var(axis=0).mean(-1), atol=1e-6)
    np.testing.assert_allclose(result["mutual_information"],
                               np.maximum(entropy(mean) - entropy(samples).mean(0), 0), atol=1e-5)
    assert float(result["variance"].max()) > 1e-4
