"""A walkthrough of the Python API: a one-class (binary) head, [0, 1] images given to
`FCN.fit`/`predict`, and a list of images of different sizes given to `FCN.predict`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_fcn
from keras_fcn.metrics import confusion_matrix_tensor
from keras_fcn.models import FCN
from tiny import tiny_fcn

LABELS = np.array([[[0, 1, 1, 1]]])  # (1, 1, 4)
# One channel of logits, each on the right side of 0, but two below the 0.5 of a rounding.
ONE_CHANNEL = np.array([-0.4, 0.3, 0.2, 1.2], "float32").reshape(1, 1, 4, 1)


@pytest.mark.parametrize("metric", [keras_fcn.MeanIU, keras_fcn.PixelAccuracy])
def test_metrics_refuse_one_channel_of_logits_instead_of_rounding(metric):
    m = metric(2)
    with pytest.raises(ValueError, match=r"whole class id.*num_classes=2 for background.*"
                                         r"y_pred.shape=\(1, 1, 4, 1\), dtype=float32, "
                                         r"a value -0.4"):
        m.update_state(LABELS, ONE_CHANNEL)
    assert float(m.result()) == 0.0  # nothing counted


def test_metrics_take_a_float_label_map_of_whole_numbers_and_two_channel_logits():
    # labels 0 1 1 1, predicted 0 1 1 0: n = [[1, 0], [1, 2]]
    preds = np.array([0.0, 1.0, 1.0, 0.0], "float32").reshape(1, 1, 4, 1)
    iu, acc = keras_fcn.MeanIU(2), keras_fcn.PixelAccuracy(2)
    iu.update_state(LABELS, preds)
    acc.update_state(LABELS, preds)
    # IU_0 = 1 / (1 + 2 - 1), IU_1 = 2 / (3 + 2 - 2)
    assert float(iu.result()) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert float(acc.result()) == pytest.approx(3 / 4)
    # The same scores as two channels (background 0): every pixel is right.
    two = np.concatenate([np.zeros_like(ONE_CHANNEL), ONE_CHANNEL], axis=-1)
    iu, acc = keras_fcn.MeanIU(2), keras_fcn.PixelAccuracy(2)
    iu.update_state(LABELS, two)
    acc.update_state(LABELS, two)
    assert (float(iu.result()), float(acc.result())) == (1.0, 1.0)


def test_confusion_matrix_in_a_graph_refuses_a_non_whole_label_map():
    fn = tf.function(lambda y, p: confusion_matrix_tensor(y, p, 2))
    with pytest.raises(tf.errors.InvalidArgumentError, match="whole class id"):
        fn(tf.constant(LABELS), tf.constant(ONE_CHANNEL))
    whole = tf.constant(np.array([0, 1, 1, 0], "float32").reshape(1, 1, 4))
    np.testing.assert_array_equal(fn(tf.constant(LABELS), whole).numpy(), [[1, 0], [1, 2]])


def test_fit_names_num_classes_1_of_a_one_channel_model():
    inputs = keras.Input((None, None, 3))
    model = FCN(inputs, keras.layers.Conv2D(1, 1)(inputs))
    model.compile("sgd", keras_fcn.SparseCategoricalCrossentropyIgnore())
    x = np.full((1, 4, 4, 3), 100.0, "float32")
    y = np.ones((1, 4, 4), "int32")
    with pytest.raises(ValueError, match=r"num_classes=1 class.*use num_classes=2 "
                                         r"\(background and foreground\).*"
                                         r"model.output_shape=\(None, None, None, 1\)"):
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("build", [
    lambda: keras_fcn.build_fcn("32s", 1, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8),
    lambda: keras_fcn.build_fcn8s(num_classes=1, weights=None)])
def test_the_builders_refuse_one_class(build):
    """A softmax over one class is 1 everywhere: keras_fcn.predict labelled every pixel 0."""
    with pytest.raises(ValueError, match=r"^An FCN scores each class with a softmax: "
                                         r"num_classes=1 would label every pixel 0\. Use "
                                         r"num_classes=2 \(background and foreground\)"):
        build()


@pytest.fixture(scope="module")
def raw_rgb():
    return tiny_fcn("32s", 2, include_preprocessing=True)


def test_fit_predict_evaluate_refuse_unit_images_for_a_model_taking_0_255(raw_rgb):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2, 20, 24, 3)).astype("float32")
    image[0, 0, 0] = 204.0  # the max
    image = np.minimum(image, 204.0)
    masks = np.zeros((2, 20, 24), "int32")
    raw_rgb.compile("sgd", keras_fcn.SparseCategoricalCrossentropyIgnore(num_classes=2))
    unit = image / 255.0
    expected = r"`x` looks normalized to \[0, 1\] \(max=0.8\).*Multiply it by 255"
    with pytest.raises(ValueError, match=expected):
        raw_rgb.predict(unit, verbose=0)
    with pytest.raises(ValueError, match=expected):
        raw_rgb.fit(unit, masks, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=expected):
        raw_rgb.evaluate(unit, masks, verbose=0)
    with pytest.raises(ValueError, match="`validation_data`: " + expected):
        raw_rgb.fit(image, masks, epochs=1, verbose=0, validation_data=(unit, masks))
    # 0..255 floats, uint8 and an all-black image pass, the same as keras_fcn.predict
    out = raw_rgb.predict(image, verbose=0)
    np.testing.assert_allclose(raw_rgb.predict(image.astype("uint8"), verbose=0), out,
                               rtol=1e-5, atol=1e-5)
    labels, _ = keras_fcn.predict(raw_rgb, image)
    np.testing.assert_array_equal(labels, out.argmax(-1))
    assert raw_rgb.predict(np.zeros((1, 8, 8, 3), "float32"), verbose=0).shape == (1, 8, 8, 2)


def test_a_model_without_preprocess_layer_takes_small_floats():
    model = tiny_fcn("32s", 2)  # takes keras_fcn.preprocess_input's output, any range
    x = np.full((1, 8, 8, 3), 0.5, "float32")
    assert model.predict(x, verbose=0).shape == (1, 8, 8, 2)


def test_predict_refuses_a_list_of_images_naming_keras_fcn_predict(raw_rgb):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (37, 53, 3)).astype("uint8"),
              rng.integers(0, 256, (61, 29, 3)).astype("uint8")]
    with pytest.raises(ValueError, match=r"`x` is a list of 2 images of different sizes.*"
                                         r"keras_fcn.predict\(model, images\).*"
                                         r"Received: x of shapes \(37, 53, 3\), \(61, 29, 3\)$"):
        raw_rgb.predict(images, verbose=0)
    with pytest.raises(ValueError, match=r"list of 2 images of one size"):
        raw_rgb.predict((images[0], images[0]), verbose=0)
    labels, _ = keras_fcn.predict(raw_rgb, images)
    assert [label.shape for label in labels] == [(37, 53), (61, 29)]
    np.testing.assert_array_equal(
        labels[1], raw_rgb.predict(images[1][None], verbose=0)[0].argmax(-1))
