"""Keras interop (walkthrough of session 20): a `tf.data` set of one-hot labels is refused
before Keras compiles a step (on JAX the loss's refusal inside the compiled step left the
model's variables unusable: ``get_weights`` and ``save`` raised a TypeError), and numpy one-hot
labels pass when the model is compiled with Keras' own CategoricalCrossentropy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fcn.losses import SparseCategoricalCrossentropyIgnore
from tiny import tiny_fcn

REFUSED = (r"Labels must be class ids of shape \(N, H, W\) or \(N, H, W, 1\) \(not one-hot or "
           r"colour maps\)\. Received: a data set of labels of shape \(None, 16, 16, 3\)")


def _data(one_hot, n=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 3, (n, 16, 16))
    if one_hot:
        labels = np.eye(3, dtype="float32")[labels]
    return images, labels


def _compiled(loss=None):
    model = tiny_fcn()
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=loss or SparseCategoricalCrossentropyIgnore(num_classes=3))
    return model


def test_a_data_set_of_one_hot_labels_is_refused_before_a_step_compiles(tmp_path):
    model = _compiled()
    weights = [w.copy() for w in model.get_weights()]
    one_hot = tf.data.Dataset.from_tensor_slices(_data(True)).batch(2)
    with pytest.raises(ValueError, match="^" + REFUSED):
        model.fit(one_hot, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="^" + REFUSED):
        model.evaluate(one_hot, verbose=0)
    good = tf.data.Dataset.from_tensor_slices(_data(False)).batch(2)
    with pytest.raises(ValueError, match="^`validation_data`: " + REFUSED):
        model.fit(good, validation_data=one_hot, epochs=1, verbose=0)
    assert model.train_function is None and model.test_function is None
    assert all((a == b).all() for a, b in zip(weights, model.get_weights()))
    model.save(tmp_path / "kept.keras")  # the model stays usable
    # prediction ignores labels: a data set that carries one-hot labels still predicts
    assert model.predict(one_hot, verbose=0).shape == (4, 16, 16, 3)
    # class-id labels of (N, H, W, 1) and unknown shapes pass
    column = tf.data.Dataset.from_tensor_slices(
        (_data(False)[0], _data(False)[1][..., None])).batch(2)
    assert np.isfinite(model.evaluate(column, verbose=0))


def test_keras_categorical_crossentropy_takes_numpy_one_hot_labels():
    """The label-shape check belongs to keras_fcn's loss: with another loss the user's labels
    are theirs to shape (refused before, 'Labels must be class ids')."""
    images, one_hot = _data(True)
    model = _compiled(keras.losses.CategoricalCrossentropy(from_logits=True))
    loss = model.evaluate(images, one_hot, batch_size=4, verbose=0)
    logits = np.asarray(model.predict(images, verbose=0), dtype="float64")
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected = -(one_hot * log_probs).sum(-1).mean()
    assert loss == pytest.approx(expected, rel=1e-5)
    # keras_fcn's own loss still refuses them, naming the shape
    with pytest.raises(ValueError, match=r"Received: y.shape=\(4, 16, 16, 3\)"):
        _compiled().evaluate(images, one_hot, verbose=0)


def test_a_data_set_of_labels_of_another_size_is_refused_before_a_step_compiles():
    images, labels = _data(False)
    model = _compiled()
    short = tf.data.Dataset.from_tensor_slices((images, labels[:, :8])).batch(2)
    with pytest.raises(ValueError, match=r"^The labels must cover the images' pixels\. "
                       r"Received: a data set of images of shape \(None, 16, 16, 3\) and labels "
                       r"of shape \(None, 8, 16\)"):
        model.fit(short, epochs=1, verbose=0)
    assert model.train_function is None
