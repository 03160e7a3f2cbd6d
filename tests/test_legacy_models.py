"""Models saved by the flat layout of keras_fcn 0.1.0 (tests/fixtures/make_legacy_models.py)
still load and give the same predictions."""

import os

import keras
import numpy as np
import pytest

import keras_fcn

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="module")
def saved():
    with np.load(os.path.join(FIXTURES, "legacy_predictions.npz")) as arrays:
        return dict(arrays)


@pytest.mark.parametrize("name, preprocess", [
    ("fcn8s_at_once", False), ("fcn16s", True), ("pad_to_multiple", False)])
def test_legacy_model_loads_and_predicts_the_same(saved, name, preprocess):
    model = keras.models.load_model(os.path.join(FIXTURES, f"legacy_{name}.keras"))
    images = saved["images"]
    if preprocess:
        images = keras_fcn.preprocess_input(images)
    np.testing.assert_allclose(model.predict(images, verbose=0), saved[name], rtol=1e-5,
                               atol=1e-5)
    # The predictions are not trivial, so the comparison can fail.
    assert np.std(saved[name]) > 1e-3


def test_legacy_model_layers_are_the_current_classes():
    model = keras.models.load_model(os.path.join(FIXTURES, "legacy_fcn8s_at_once.keras"))
    kinds = {type(layer) for layer in model.layers}
    assert {keras_fcn.CaffePreprocessing, keras_fcn.CropToReference, keras_fcn.Scale} <= kinds


def test_legacy_models_recorded_no_trunk_and_are_told_from_their_layers():
    """0.1.x saved plain functional models: they load as such (no FCN record), and only for
    them is the trunk told from the layers; the preprocessing follows from it."""
    fcn16s = keras.models.load_model(os.path.join(FIXTURES, "legacy_fcn16s.keras"))
    assert not isinstance(fcn16s, keras_fcn.FCN)
    assert keras_fcn.backbone_of(fcn16s) == "vgg16"
    assert keras_fcn.normalization_of(fcn16s)["type"] == "caffe_bgr_mean"
    assert keras_fcn.models.preprocessing_fn(fcn16s) is keras_fcn.preprocess_input
    # A legacy MobileNetV2 FCN (PadToMultiple inside) gets MobileNetV2's preprocessing.
    padded = keras.models.load_model(os.path.join(FIXTURES, "legacy_pad_to_multiple.keras"))
    assert keras_fcn.backbone_of(padded) == "mobilenet_v2"
    assert keras_fcn.normalization_of(padded)["type"] == "scale"
