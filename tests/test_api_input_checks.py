"""Inputs a user's own code passes to the library's API, refused with a message naming them.

From a new-user walkthrough (2026-12-06): FCN.predict/fit/evaluate ran NaN, empty and complex
images without a word; the consistency trainer under a tf.distribute strategy failed deep
inside TensorFlow; the builders' refusal of a variant named the wrong reason for ResNets.
"""

import re

import keras
import numpy as np
import pytest

import keras_fcn
from keras_fcn import training
from two_cpus import run_on_two_cpus

C = 3


@pytest.fixture(scope="module")
def fcn():
    model = keras_fcn.build_fcn("32s", C, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)
    training.compile_model(model, num_classes=C, ignore_label=255,
                           optimizer=training.make_optimizer("sgd", 1e-3))
    return model


def _images(dtype="float32"):
    return np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(dtype)


def _bad_images():
    nan = _images()
    nan[1, 3, 4, 0] = np.nan
    nan[0, 0, 0, 2] = np.inf
    return [
        (nan, r"`x` has 2 NaN or infinite values \(of 6144\).*x\.shape=\(2, 32, 32, 3\)"),
        (np.zeros((1, 0, 41, 3), "float32"), r"`x` holds empty images.*x\.shape=\(1, 0, 41, 3\)"),
        (np.zeros((1, 32, 0, 3), "uint8"), r"`x` holds empty images.*x\.shape=\(1, 32, 0, 3\)"),
        (_images("complex64"), r"real numbers.*x\.dtype=complex64"),
        (np.full((1, 32, 32, 3), "a"), r"real numbers.*x\.dtype=<U1"),
        (_images().astype(object), r"real numbers.*x\.dtype=object"),
    ]


@pytest.mark.parametrize("images,message", _bad_images())
def test_fcn_predict_fit_and_evaluate_refuse_bad_images(fcn, images, message):
    labels = np.zeros(images.shape[:3], "int32")
    with pytest.raises(ValueError, match=message):
        fcn.predict(images, verbose=0)
    with pytest.raises(ValueError, match=message):
        fcn.evaluate(images, labels, verbose=0)
    with pytest.raises(ValueError, match="^`validation_data`: .*" + message):
        fcn.fit(_images(), np.zeros((2, 32, 32), "int32"), epochs=1, verbose=0,
                validation_data=(images, labels))


def test_fcn_predict_takes_good_images_of_every_real_dtype(fcn):
    """uint8, float64 and bool images (no NaN) still run, the first two as float32 does."""
    images = _images("uint8")
    expected = fcn.predict(images.astype("float32"), verbose=0)
    for dtype in ("uint8", "float64"):
        got = fcn.predict(images.astype(dtype), verbose=0)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=dtype)
    assert fcn.predict(images > 128, verbose=0).shape == (2, 32, 32, C)


@pytest.mark.parametrize("backbone,variant,reason", [
    ("resnet50", "8s", "a dilated trunk"), ("resnet101", "32s", "a dilated trunk"),
    ("alexnet", "8s", "Table 1 trunks other than VGG16"),
    ("googlenet", "16s", "Table 1 trunks other than VGG16"),
])
def test_a_refused_variant_names_the_reason_of_its_trunk(backbone, variant, reason):
    with pytest.raises(ValueError, match=re.escape(reason)) as caught:
        keras_fcn.build_fcn(variant, C, backbone=backbone, weights=None)
    assert f"variant={variant!r}, backbone={backbone!r}" in str(caught.value)
    assert ("Table 1" in str(caught.value)) == (reason.startswith("Table 1"))


def test_vgg16_refuses_dilated_without_a_wrong_reason():
    with pytest.raises(ValueError, match=r"exists only as \('32s', '16s', '8s', '8s_at_once'\)"
                       r"\. Received") as caught:
        keras_fcn.build_fcn("dilated", C, backbone="vgg16", weights=None)
    assert "Table 1" not in str(caught.value)


_MIRRORED_CONSISTENCY = """
from keras_fcn import training

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
x = np.zeros((2, 8, 8, 3), "float32")
batch = (np.concatenate([x, x]), (np.zeros((2, 8, 8), "int32"), np.zeros((2, 8, 8, 2), "float32"),
                                  np.ones((2, 8, 8), bool)))
ds = tf.data.Dataset.from_tensors(batch)
out = {"replicas": strategy.num_replicas_in_sync}

def trainer():  # any logits model; a 1x1 convolution keeps the process short
    inputs = keras.Input((None, None, 3))
    return training.add_consistency(keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs)), 0.5)

def compile_it(model):
    training.compile_model(model, num_classes=3, ignore_label=255,
                           optimizer=training.make_optimizer("sgd", 1e-3))

# Built and compiled in the strategy's scope: refused at compile.
try:
    with strategy.scope():
        compile_it(trainer())
except ValueError as error:
    out["compile"] = str(error)
# Built and compiled without it, fit in its scope: refused at fit (TensorFlow failed there).
model = trainer()
compile_it(model)
try:
    with strategy.scope():
        model.fit(ds, epochs=1, verbose=0)
except ValueError as error:
    out["fit"] = str(error)
print("RESULT" + json.dumps(out))
"""


class MirroredStrategy:
    """A stand-in of two replicas: a real one needs two devices set before TensorFlow starts
    (the slow test below runs one in a process of its own)."""

    num_replicas_in_sync = 2


def test_consistency_trainer_refuses_several_replicas_at_compile_and_fit():
    inputs = keras.Input((None, None, 3))
    trainer = training.add_consistency(keras.Model(inputs, keras.layers.Conv2D(C, 1)(inputs)),
                                       0.5)
    expected = r"needs one replica.*Received: strategy=MirroredStrategy with 2 replicas$"
    trainer._distribute_strategy = MirroredStrategy()  # what Keras reads on TensorFlow
    with pytest.raises(ValueError, match=expected):
        training.compile_model(trainer, num_classes=C, ignore_label=255,
                               optimizer=training.make_optimizer("sgd", 1e-3))
    trainer._distribute_strategy = None
    training.compile_model(trainer, num_classes=C, ignore_label=255,
                           optimizer=training.make_optimizer("sgd", 1e-3))
    trainer._distribute_strategy = MirroredStrategy()
    with pytest.raises(ValueError, match=expected):
        trainer.fit(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8), "int32"), verbose=0)


@pytest.mark.slow
def test_consistency_trainer_refuses_a_strategy_of_several_replicas():
    """Under MirroredStrategy (2 CPUs) TensorFlow failed at the first fit with "Value for attr
    'T' of bool ... AddN": each replica would get part of the pairs. Now a ValueError names the
    strategy at compile or fit (one replica trains: tests/backend_cases.py)."""
    out = run_on_two_cpus(_MIRRORED_CONSISTENCY)
    assert out["replicas"] == 2
    for when in ("compile", "fit"):
        assert "needs one replica" in out[when], out[when]
        assert out[when].endswith("Received: strategy=MirroredStrategy with 2 replicas")
