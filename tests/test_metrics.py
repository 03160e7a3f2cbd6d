"""Tests for keras_fcn.metrics against numpy references."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from two_cpus import shared_result
from keras_fcn.metrics import (
    ConfusionMatrixMetric,
    FrequencyWeightedIU,
    MeanAccuracy,
    MeanIU,
    PixelAccuracy,
    confusion_matrix,
    confusion_matrix_tensor,
    segmentation_metrics,
)

C = 5
VOID = 255
SCORES = ("pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu")


def _random_batch(rng, shape=(2, 7, 9), void_fraction=0.2):
    logits = rng.normal(size=shape + (C,)).astype("float32")
    labels = rng.integers(0, C, size=shape).astype("int32")
    labels[rng.random(shape) < void_fraction] = VOID
    return labels, logits


def _reference_confusion(labels, preds, num_classes):
    """Pixel-by-pixel loop, independent of the library's bincount."""
    n = np.zeros((num_classes, num_classes), "int64")
    for label, pred in zip(labels.ravel(), preds.ravel()):
        if label != VOID:
            n[label, pred] += 1
    return n


def _reference_scores(n):
    """The FCN reference formulas with numpy nanmean (score.py style)."""
    n = n.astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        iu = np.diag(n) / (n.sum(1) + n.sum(0) - np.diag(n))
        acc = np.diag(n) / n.sum(1)
        freq = n.sum(1) / n.sum()
    return {
        "pixel_accuracy": np.diag(n).sum() / n.sum(),
        "mean_accuracy": np.nanmean(acc),
        "mean_iu": np.nanmean(iu),
        "frequency_weighted_iu": (freq[freq > 0] * iu[freq > 0]).sum(),
        "per_class_iu": iu,
    }


def test_numpy_confusion_matrix_matches_loop():
    labels, logits = _random_batch(np.random.default_rng(1))
    preds = logits.argmax(-1)
    np.testing.assert_array_equal(
        confusion_matrix(labels, preds, C), _reference_confusion(labels, preds, C)
    )


def test_streaming_metric_matches_numpy_over_several_batches():
    rng = np.random.default_rng(2)
    metric = ConfusionMatrixMetric(C)
    total = np.zeros((C, C), "int64")
    for _ in range(4):
        labels, logits = _random_batch(rng)
        metric.update_state(labels, logits)
        total += _reference_confusion(labels, logits.argmax(-1), C)
    np.testing.assert_array_equal(metric.confusion_matrix().numpy(), total)
    expected = _reference_scores(total)
    got = {k: v.numpy() for k, v in metric.results().items()}
    for key in SCORES:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6)
    np.testing.assert_allclose(got["per_class_iu"], expected["per_class_iu"], rtol=1e-6)
    np.testing.assert_allclose(float(metric.result()), expected["mean_iu"], rtol=1e-6)
    numpy_scores = segmentation_metrics(total)
    for key in SCORES:
        np.testing.assert_allclose(numpy_scores[key], expected[key], rtol=1e-12)


def test_update_state_inside_tf_function():
    rng = np.random.default_rng(3)
    labels, logits = _random_batch(rng)
    metric = ConfusionMatrixMetric(C)
    tf.function(metric.update_state)(tf.constant(labels), tf.constant(logits))
    np.testing.assert_array_equal(
        metric.confusion_matrix().numpy(),
        _reference_confusion(labels, logits.argmax(-1), C),
    )


def test_logits_and_label_maps_give_the_same_matrix():
    labels, logits = _random_batch(np.random.default_rng(4))
    preds = logits.argmax(-1)
    from_logits = confusion_matrix_tensor(labels, logits, C).numpy()
    from_preds = confusion_matrix_tensor(labels[..., None], preds[..., None], C).numpy()
    from_float_preds = confusion_matrix_tensor(labels, preds.astype("float32"), C).numpy()
    np.testing.assert_array_equal(from_logits, from_preds)
    np.testing.assert_array_equal(from_logits, from_float_preds)


def test_perfect_prediction_scores_one():
    labels, _ = _random_batch(np.random.default_rng(5))
    metric = ConfusionMatrixMetric(C)
    metric.update_state(labels, np.where(labels == VOID, 0, labels))
    for key in SCORES:
        assert float(metric.results()[key]) == pytest.approx(1.0)


def test_hand_made_two_class_matrix():
    # n = [[3, 1], [0, 2]]: IU_0 = 3/4, IU_1 = 2/3.
    labels = np.array([[0, 0, 0, 0, 1, 1, VOID]])
    preds = np.array([[0, 0, 0, 1, 1, 1, 0]])
    n = confusion_matrix(labels, preds, 2)
    np.testing.assert_array_equal(n, [[3, 1], [0, 2]])
    expected = {
        "pixel_accuracy": 5 / 6,
        "mean_accuracy": (3 / 4 + 1) / 2,
        "mean_iu": (3 / 4 + 2 / 3) / 2,
        "frequency_weighted_iu": (4 * 3 / 4 + 2 * 2 / 3) / 6,
    }
    metric = ConfusionMatrixMetric(2)
    metric.update_state(labels[None], preds[None])
    scores = segmentation_metrics(n)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value)
        assert float(metric.results()[key]) == pytest.approx(value)


def test_void_pixels_are_never_counted():
    rng = np.random.default_rng(6)
    labels, logits = _random_batch(rng, void_fraction=0.5)
    other = logits.copy()
    void = labels == VOID
    other[void] = rng.normal(size=(void.sum(), C)) * 10
    a = confusion_matrix_tensor(labels, logits, C).numpy()
    b = confusion_matrix_tensor(labels, other, C).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.sum() == (~void).sum()


def test_nan_mean_convention():
    # Class 2 is absent from labels and predictions: left out of the means.
    # Class 1 is only predicted: IU 0, counted in mean IU, not in mean acc.
    labels = np.array([[0, 0, 0, 0]])
    preds = np.array([[0, 0, 1, 1]])
    metric = ConfusionMatrixMetric(3)
    metric.update_state(labels[None], preds[None])
    got = metric.results()
    per_class = got["per_class_iu"].numpy()
    assert per_class[0] == pytest.approx(0.5)
    assert per_class[1] == 0.0
    assert np.isnan(per_class[2])
    assert float(got["mean_iu"]) == pytest.approx(0.25)
    assert float(got["mean_accuracy"]) == pytest.approx(0.5)
    numpy_scores = segmentation_metrics(confusion_matrix(labels, preds, 3))
    assert numpy_scores["mean_iu"] == pytest.approx(0.25)
    assert np.isnan(numpy_scores["per_class_iu"][2])


def test_empty_matrix_scores_zero_not_nan():
    metric = ConfusionMatrixMetric(3)
    metric.update_state(np.full((1, 2, 2), VOID), np.zeros((1, 2, 2), "int32"))
    for key in SCORES:
        assert float(metric.results()[key]) == 0.0
        assert segmentation_metrics(np.zeros((3, 3)))[key] == 0.0


def test_out_of_range_labels_raise():
    labels = np.array([[[0, 7]]])
    with pytest.raises(ValueError, match="label=7"):
        ConfusionMatrixMetric(3).update_state(labels, np.zeros((1, 1, 2), "int32"))
    with pytest.raises(ValueError, match="predicted class=4"):
        ConfusionMatrixMetric(3).update_state(np.zeros((1, 1, 2)), np.array([[[0, 4]]]))
    with pytest.raises(ValueError, match="label value: 7"):
        confusion_matrix(labels, np.zeros_like(labels), 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 3\)[\s\S]*7"):
        tf.function(ConfusionMatrixMetric(3).update_state)(
            tf.constant(labels), tf.zeros((1, 1, 2), "int32")
        )


def test_sample_weight_per_image():
    rng = np.random.default_rng(7)
    labels, logits = _random_batch(rng)
    metric = ConfusionMatrixMetric(C)
    metric.update_state(labels, logits, sample_weight=np.array([0.0, 1.0]))
    np.testing.assert_array_equal(
        metric.confusion_matrix().numpy(),
        _reference_confusion(labels[1], logits[1].argmax(-1), C),
    )


def test_reset_state_zeroes_the_matrix():
    labels, logits = _random_batch(np.random.default_rng(8))
    metric = MeanIU(C)
    metric.update_state(labels, logits)
    metric.reset_state()
    assert np.all(metric.confusion_matrix().numpy() == 0)


@pytest.mark.parametrize(
    "cls, key",
    [
        (MeanIU, "mean_iu"),
        (PixelAccuracy, "pixel_accuracy"),
        (MeanAccuracy, "mean_accuracy"),
        (FrequencyWeightedIU, "frequency_weighted_iu"),
    ],
)
def test_named_metrics_results_and_config_round_trip(cls, key):
    labels, logits = _random_batch(np.random.default_rng(9))
    metric = cls(C, ignore_label=VOID)
    assert metric.name == key
    metric.update_state(labels, logits)
    expected = _reference_scores(_reference_confusion(labels, logits.argmax(-1), C))[key]
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)
    restored = cls.from_config(metric.get_config())
    assert restored.get_config() == metric.get_config()
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(metric)))
    assert serialized["registered_name"] == f"keras_fcn>{cls.__name__}"
    assert type(keras.saving.deserialize_keras_object(serialized)) is cls


def test_generic_metric_config_round_trip():
    metric = ConfusionMatrixMetric(3, ignore_label=11, metric="pixel_accuracy", name="acc")
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(metric)
    )
    assert restored.get_config() == metric.get_config()
    assert restored.name == "acc" and restored.metric == "pixel_accuracy"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"num_classes": 3, "metric": "iou"}, "Received: metric='iou'"),
        ({"num_classes": 3, "ignore_label": 1.5}, "Received: ignore_label=1.5"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConfusionMatrixMetric(**kwargs)


def test_compiled_model_logs_named_metrics():
    rng = np.random.default_rng(10)
    labels, features = _random_batch(rng, shape=(4, 6, 6))
    inputs = keras.Input(features.shape[1:])
    model = keras.Model(inputs, keras.layers.Conv2D(C, 1)(inputs))
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[MeanIU(C), PixelAccuracy(C), MeanAccuracy(C), FrequencyWeightedIU(C)],
    )
    labels_no_void = np.where(labels == VOID, 0, labels)
    logs = model.evaluate(features, labels_no_void, batch_size=2, return_dict=True, verbose=0)
    preds = model.predict(features, verbose=0).argmax(-1)
    expected = _reference_scores(_reference_confusion(labels_no_void, preds, C))
    for key in SCORES:
        np.testing.assert_allclose(logs[key], expected[key], rtol=1e-5)


# ------------------------------------------------------- distribution ----

@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    """tests/two_cpu_cases.py's METRICS script: MirroredStrategy on two CPUs, in the
    process the other tf.distribute checks share."""
    return shared_result(tmp_path_factory, "metrics")


def test_mirrored_confusion_matrix_is_summed_over_replicas(distributed_results):
    out = distributed_results
    assert out["replicas"] == 2
    x, y = np.array(out["x"]), np.array(out["y"])
    expected = _reference_confusion(y, x.argmax(-1), C - 1)
    local = [np.array(m) for m in out["local"]]
    # Each replica saw only its shard; the read-out is their sum.
    assert all(0 < m.sum() < expected.sum() for m in local)
    np.testing.assert_array_equal(local[0] + local[1], expected)
    np.testing.assert_array_equal(np.array(out["summed"]), expected)
    np.testing.assert_allclose(
        out["mean_iu"], _reference_scores(expected)["mean_iu"], rtol=1e-6
    )


def test_mirrored_evaluate_metrics_equal_single_device(distributed_results):
    single, mirrored = distributed_results["single"], distributed_results["mirrored"]
    y = np.array(distributed_results["y"])
    expected = _reference_scores(
        _reference_confusion(y, np.array(single["preds"]), C - 1)
    )
    assert single["preds"] == mirrored["preds"]
    for key in ("mean_iu", "pixel_accuracy", "loss"):
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5)
    for key in ("mean_iu", "pixel_accuracy"):
        np.testing.assert_allclose(mirrored[key], expected[key], rtol=1e-5)


def test_label_or_prediction_equal_to_num_classes_is_refused():
    """The boundary value C (one past the last class) is out of range like any other: with a
    `>` for `>=` its cell index C * C + j fell past the matrix and the pixel vanished from
    every score without a word."""
    labels = np.array([[[0, 1, 2, 3]]])
    preds = np.array([[[0, 1, 2, 1]]])
    with pytest.raises(ValueError,
                       match=r"Every label must be in \[0, 3\) or void\. Received: label=3"):
        ConfusionMatrixMetric(3).update_state(labels, preds)
    with pytest.raises(ValueError, match="label value: 3"):
        confusion_matrix(labels, preds, 3)
    swapped = (preds, labels)
    with pytest.raises(ValueError, match=r"Every predicted class must be in \[0, 3\) or void\. "
                                         r"Received: predicted class=3"):
        ConfusionMatrixMetric(3).update_state(*swapped)
    with pytest.raises(ValueError, match="predicted class value: 3"):
        confusion_matrix(*swapped, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 3\)[\s\S]*3"):
        tf.function(ConfusionMatrixMetric(3).update_state)(tf.constant(labels), tf.constant(preds))


def test_numpy_and_streaming_scores_follow_the_nan_mean_reference_with_absent_classes():
    """A class only predicted (accuracy 0/0) is left out of the mean accuracy but counts in
    the mean IU with IU 0; a class in neither is left out of both. The numpy scores, the
    streaming ones and the reference's nanmean formulas agree on such a matrix."""
    n = np.array([[5, 1, 0, 2],
                  [0, 0, 0, 0],   # class 1: only predicted
                  [0, 0, 0, 0],   # class 2: absent everywhere
                  [1, 3, 0, 4]])
    expected = _reference_scores(n)
    assert expected["mean_accuracy"] == pytest.approx((5 / 8 + 4 / 8) / 2)
    assert expected["mean_iu"] == pytest.approx((5 / 9 + 0 + 4 / 10) / 3)
    numpy_scores = segmentation_metrics(n)
    labels = np.repeat(np.arange(4), n.sum(1))
    preds = np.concatenate([np.repeat(np.arange(4), row) for row in n])
    metric = ConfusionMatrixMetric(4)
    metric.update_state(labels[None, None], preds[None, None])
    np.testing.assert_array_equal(metric.confusion_matrix().numpy(), n)
    streaming = {k: v.numpy() for k, v in metric.results().items()}
    for key in SCORES:
        assert numpy_scores[key] == pytest.approx(expected[key], rel=1e-12), key
        assert streaming[key] == pytest.approx(expected[key], rel=1e-6), key
    for got in (numpy_scores["per_class_iu"], streaming["per_class_iu"]):
        np.testing.assert_allclose(got, expected["per_class_iu"], rtol=1e-6)
