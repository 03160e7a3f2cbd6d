"""Tiny models for the tests: the paper's architecture at a few channels, so a forward pass
takes milliseconds. Import from here instead of repeating widths in each test module."""

import hashlib
import os

import keras
import numpy as np

from keras_fcn.models import build_fcn

TINY_WIDTHS = (4, 4, 8, 8, 8)  # conv1 .. conv5 channels (VGG16: 64, 128, 256, 512, 512)
TINY_FC = 8  # fc6/fc7 channels (VGG16: 4096)
SCORE_LAYERS = ("score_fr", "score_pool4", "score_pool3")


def randomize_scores(model, seed=0, scale=0.3):
    """Score layers start at zero (as in the paper); random ones make the outputs vary.

    Returns:
        ``model``, changed in place.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name in SCORE_LAYERS or (layer.name.startswith("score_")
                                          and layer.get_weights()):
            layer.set_weights([rng.normal(0, scale, w.shape).astype("float32")
                               for w in layer.get_weights()])
    return model


def tiny_fcn(variant="8s", num_classes=3, *, seed=0, scale=0.3, widths=TINY_WIDTHS,
             fc_units=TINY_FC, dropout=0.0, **kwargs):
    """A tiny VGG16-style FCN with random (non-zero) score layers."""
    model = build_fcn(variant, num_classes=num_classes, weights=None, widths=widths,
                      fc_units=fc_units, dropout=dropout, **kwargs)
    return randomize_scores(model, seed, scale)


def saved_raw_rgb_fcn(folder, num_classes, seed, widths=TINY_WIDTHS):
    """A tiny FCN-8s taking raw RGB (its preprocessing inside, no dropout), saved as
    ``folder/tiny.keras``: the model the predict tools and fuzz tests load. Returns
    ``(model, path)``."""
    import keras  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(seed)
    model = build_fcn("8s", num_classes=num_classes, weights=None, widths=widths,
                      fc_units=TINY_FC, dropout=0.0, include_preprocessing=True)
    path = str(folder / "tiny.keras")
    model.save(path)
    return model, path


def file_digests(folder):
    """{relative path: sha256} of every file under `folder`: equal before and after means
    nothing was deleted, added or changed there."""
    digests = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def biased_pointwise_model(num_classes, favoured=None, seed=0, dropout=None):
    """A 1x1-conv model taking RGB 0..255 (its own ``preprocess`` layer); ``favoured`` wins
    everywhere (a +50 bias)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1.0 / 255, name="preprocess")(inputs)
    if dropout is not None:
        x = keras.layers.Dropout(dropout, name="drop")(x)
    layer = keras.layers.Conv2D(num_classes, 1, name="score")
    outputs = layer(x)
    if favoured is not None:
        kernel, bias = layer.get_weights()
        bias[favoured] = 50.0
        layer.set_weights([kernel, bias])
    return keras.Model(inputs, outputs)


def save_model(model, folder, name="m.keras"):
    """Saves ``model`` as ``folder/name`` (a pathlib folder); returns the path."""
    path = str(folder / name)
    model.save(path)
    return path
