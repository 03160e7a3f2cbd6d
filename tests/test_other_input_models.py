"""Models trained on inputs other than RGB photos (the NYUDv2 HHA run: HHA minus its mean, no
``preprocess`` layer) are refused by prediction and raw-RGB export, which would feed them RGB
photos with the VGG16 trunk's Caffe preprocessing: before, keras_fcn.predict, tools/predict.py
and the TFLite export did so without a word (the labels recorded the HHA normalization)."""

import json

import numpy as np
import pytest

import keras_fcn
from keras_fcn.inference import PredictOptions, Predictor
from keras_fcn.labels import ModelLabels
from keras_fcn.models import normalization_of, preprocessing_fn, raw_rgb_model
from tiny import tiny_fcn

HHA = {"type": "mean", "mean": [118.477, 94.076, 132.431],
       "formula": "HHA minus mean, channels in file order"}
REFUSED = (r"feeds RGB photos preprocessed for the vgg16 trunk \(.*\), but model 'fcn8s' was "
           r"trained on other inputs: HHA minus mean, channels in file order \(normalization "
           r"type 'mean'\)\. Preprocess its inputs as it was trained")


def _recorded(model, normalization):
    model.fcn_info["labels"] = {"num_classes": 3, "normalization": normalization}
    return model


def test_prediction_and_raw_rgb_export_refuse_an_hha_model():
    model = _recorded(tiny_fcn(), HHA)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype("float32")
    with pytest.raises(ValueError, match="^keras_fcn's prediction " + REFUSED):
        keras_fcn.predict(model, image)
    with pytest.raises(ValueError, match="^with_preprocessing .*" + REFUSED):
        raw_rgb_model(model)
    with pytest.raises(ValueError, match=REFUSED):
        keras_fcn.with_preprocessing(model)


def test_a_model_recording_its_trunks_normalization_still_predicts_as_before():
    model = tiny_fcn()
    expected_fn = preprocessing_fn(model)
    _recorded(model, normalization_of(model))
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype("float32")
    labels, probs = keras_fcn.predict(model, image)
    assert preprocessing_fn(model) is expected_fn
    logits = np.asarray(model.predict(expected_fn(image[None]), verbose=0))[0]
    assert (labels == logits.argmax(-1)).all()
    assert raw_rgb_model(model).get_layer("preprocess") is not None


def test_tools_predict_reads_the_normalization_of_the_labels_beside_the_model(tmp_path):
    """A preset's or a run's labels (sidecar / labels.json) record the normalization; the
    model file alone need not."""
    model = tiny_fcn()
    path = tmp_path / "hha.keras"
    model.save(path)
    ModelLabels(num_classes=3, normalization=HHA).write(ModelLabels.sidecar_path(path))
    assert json.loads(open(ModelLabels.sidecar_path(path)).read())["normalization"] == HHA
    with pytest.raises(ValueError, match="^tools/predict.py " + REFUSED):
        Predictor(PredictOptions(model=str(path), inputs=[], output_dir=str(tmp_path)))
    # the same model whose labels record its trunk's normalization loads
    ModelLabels(num_classes=3, normalization=normalization_of(model)).write(
        ModelLabels.sidecar_path(path))
    assert Predictor(PredictOptions(model=str(path), inputs=[],
                                    output_dir=str(tmp_path))).num_classes == 3
