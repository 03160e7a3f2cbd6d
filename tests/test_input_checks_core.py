"""Bad input to the core (metrics, loss, evaluation, model builders and layers) is refused with
an error naming it, never turned into a believable number."""

import re

import keras
import numpy as np
import pytest

import keras_fcn
from keras_fcn import layers, losses, metrics, models
from keras_fcn.data.arrays import SegmentationPyDataset
from keras_fcn.inference import predict
from keras_fcn.training.evaluation import evaluate_model
from tests.tiny import tiny_fcn

C = 3
LABELS = np.array([[[0, 1, 2], [1, 255, 0]]])


def _logits(shape=(1, 2, 3, C), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _diverged(model):
    """`model` with a NaN score kernel: every logit is NaN."""
    layer = model.get_layer("score_fr")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.full_like(kernel, np.nan), bias])
    return model


# ------------------------------------------------------------------------ diverged models ----

def test_a_diverged_model_gets_nan_metrics_and_errors_not_a_class_0_score():
    logits = _logits()
    logits[0, 0, 1] = np.inf
    metric = metrics.PixelAccuracy(C)
    metric.update_state(LABELS, logits)
    assert np.isnan(float(metric.result()))
    # A void pixel's logits are not looked at.
    logits = _logits()
    logits[0, 1, 1] = np.nan
    metric = metrics.PixelAccuracy(C)
    metric.update_state(LABELS, logits)
    assert float(metric.result()) == pytest.approx(
        np.mean(logits[0].argmax(-1)[LABELS[0] != 255] == LABELS[0][LABELS[0] != 255]))

    model = _diverged(tiny_fcn("32s", num_classes=C))
    images = np.zeros((2, 32, 32, 3), "float32")
    masks = np.zeros((2, 32, 32), "int32")
    with pytest.raises(ValueError, match=r"holds 6144 non-finite values.*class 0"):
        evaluate_model(model, [(images, masks)], num_classes=C, ignore_label=255, verbose=0)
    with pytest.raises(ValueError, match=r"softmax holds \d+ non-finite values"):
        predict(model, images[0])


# ------------------------------------------------------------------------------ shapes ----

def test_labels_and_predictions_of_other_shapes_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"labels.shape=\(1, 2, 3\), preds.shape=\(1, 3, 2\)"):
        metrics.confusion_matrix(LABELS, LABELS.transpose(0, 2, 1), C)
    # A trailing channel of 1 on either side is the same label map.
    np.testing.assert_array_equal(metrics.confusion_matrix(LABELS[..., None], LABELS, C),
                                  np.diag([2, 2, 1]))
    for labels in (LABELS[:, :, :2], np.concatenate([LABELS, LABELS])):
        with pytest.raises(ValueError, match=r"same \(batch, height, width\).*labels of shape"):
            metrics.MeanIU(C).update_state(labels, _logits())
    for labels in (LABELS[0], np.stack([LABELS] * 3, axis=-1)):  # no batch axis; colours
        for call in (lambda: metrics.MeanIU(C).update_state(labels, _logits()),
                     lambda: losses.sparse_categorical_crossentropy_ignore(labels, _logits())):
            shape = re.escape(f"{labels.shape}")
            with pytest.raises(ValueError, match=r"^Labels must be class ids of shape \(N, H, "
                               r"W\) or \(N, H, W, 1\).*labels of shape " + shape + "$"):
                call()
    with pytest.raises(ValueError, match=r"same \(batch, height, width\)"):
        losses.sparse_categorical_crossentropy_ignore(LABELS[:, :1], _logits())
    with pytest.raises(ValueError, match=r"`sample_weight` must have shape.*\(3, 1, 1\)"):
        losses.sparse_categorical_crossentropy_ignore(LABELS, _logits(), sample_weight=np.ones(3))


# ------------------------------------------------------------------------------ labels ----

@pytest.mark.parametrize("value", [0.6, 1.5, np.nan])
def test_fractional_labels_are_refused_by_every_path(value):
    labels = LABELS.astype("float32")
    labels[0, 0, 0] = value
    for call in (lambda: metrics.confusion_matrix(labels, LABELS, C),
                 lambda: losses.class_pixel_counts([labels], C)):
        with pytest.raises(ValueError, match=f"whole class id. Received a label value: {value}"):
            call()
    if not np.isnan(value):  # NaN is caught as out of range by the tensor paths
        for call in (lambda: losses.sparse_categorical_crossentropy_ignore(labels, _logits()),
                     lambda: metrics.MeanIU(C).update_state(labels, _logits())):
            with pytest.raises(ValueError, match=f"whole class ids. Received a label value: "
                                                 f"{value}"):
                call()
    # Whole numbers in a float array are class ids.
    whole = LABELS.astype("float32")
    np.testing.assert_array_equal(metrics.confusion_matrix(whole, LABELS, C), np.diag([2, 2, 1]))


def test_wide_integer_labels_do_not_wrap_to_a_class_id():
    labels = LABELS.astype("int64")
    labels[0, 0, 0] = 2**32 + 1  # as int32 it would be 1
    with pytest.raises(ValueError, match=f"Received a label value: {2**32 + 1}"):
        losses.sparse_categorical_crossentropy_ignore(labels, _logits())
    with pytest.raises(ValueError, match=f"Received a label value: {2**32 + 1}"):
        metrics.confusion_matrix(labels, LABELS, C)


def test_an_ignore_label_that_is_a_class_id_is_refused_everywhere():
    pattern = r"ignore_label=1 is a class id; expected a value outside \[0, 3\)"
    calls = [lambda: metrics.MeanIU(C, ignore_label=1),
             lambda: metrics.confusion_matrix(LABELS, LABELS, C, ignore_label=1),
             lambda: losses.SparseCategoricalCrossentropyIgnore(C, ignore_label=1),
             lambda: losses.sparse_categorical_crossentropy_ignore(LABELS, _logits(),
                                                                   ignore_label=1),
             lambda: losses.class_pixel_counts([LABELS], C, ignore_label=1),
             lambda: SegmentationPyDataset([], num_classes=C, ignore_label=1),
             lambda: keras_fcn.make_dataset([], num_classes=C, ignore_label=1)]
    for call in calls:
        with pytest.raises(ValueError, match=pattern):
            call()
    # Past the classes (CamVid: 11 classes, void 11) and negative ids are fine.
    assert metrics.MeanIU(C, ignore_label=C).ignore_label == C
    assert metrics.MeanIU(C, ignore_label=-1).ignore_label == -1


# ------------------------------------------------------------------------ loss options ----

def test_loss_options_are_checked_and_named():
    with pytest.raises(ValueError, match="`from_logits` must be True or False. Received: "
                                         "from_logits='no'"):
        losses.SparseCategoricalCrossentropyIgnore(from_logits="no")
    with pytest.raises(ValueError, match="at least one of them positive"):
        losses.SparseCategoricalCrossentropyIgnore(class_weights=[0, 0, 0])
    with pytest.raises(ValueError, match=r"`class_weights` has 2 entries but `y_pred` has 3"):
        losses.sparse_categorical_crossentropy_ignore(LABELS, _logits(), class_weights=[1, 1])
    for weight in (np.nan, -1.0):
        with pytest.raises(ValueError, match="`sample_weight` must be finite and non-negative"):
            losses.sparse_categorical_crossentropy_ignore(LABELS, _logits(),
                                                          sample_weight=np.array([weight]))
        with pytest.raises(ValueError, match="`sample_weight` must be finite and non-negative"):
            metrics.MeanIU(C).update_state(LABELS, _logits(), np.array([weight]))


# --------------------------------------------------------------------- metric inputs ----

@pytest.mark.parametrize("entry", [np.nan, -3.0, np.inf])
def test_a_confusion_matrix_must_hold_counts(entry):
    with pytest.raises(ValueError, match=f"finite, non-negative counts. Received an entry: "
                                         f"{entry}"):
        metrics.segmentation_metrics(np.array([[entry, 1.0], [0.0, 2.0]]))


def test_a_class_count_whose_confusion_matrix_cannot_fit_is_refused_before_allocating():
    for call in (lambda: metrics.MeanIU(10**6),
                 lambda: metrics.confusion_matrix(LABELS, LABELS, 10**6)):
        with pytest.raises(ValueError, match=r"num_classes=1000000 needs a confusion matrix of "
                                             r"8\.0 TB"):
            call()
    assert metrics.check_num_classes(11585) == 11585  # 1 GiB of float64 exactly fits


# ------------------------------------------------------------------------ evaluation ----

def test_evaluate_model_refuses_empty_data_a_wrong_class_count_and_bad_options():
    model = tiny_fcn("32s", num_classes=C)
    batch = (np.zeros((1, 32, 32, 3), "float32"), np.zeros((1, 32, 32), "int32"))
    with pytest.raises(ValueError, match="yielded no batch"):
        evaluate_model(model, [], num_classes=C, ignore_label=255, verbose=0)
    with pytest.raises(ValueError, match="`num_classes`=7 differs from the model's 3 output"):
        evaluate_model(model, [batch], num_classes=7, ignore_label=255, verbose=0)
    with pytest.raises(ValueError, match="`max_batches` must be a positive integer or None"):
        evaluate_model(model, [batch], num_classes=C, ignore_label=255, max_batches=0)
    for scales in ((1.0, float("inf")), (float("nan"),), ()):
        with pytest.raises(ValueError, match="`scales` must be finite positive numbers"):
            evaluate_model(model, [batch], num_classes=C, ignore_label=255, scales=scales)
    result = evaluate_model(model, [batch], num_classes=C, ignore_label=255, verbose=0,
                            scales=(np.float32(1.0),))  # numpy scalars are numbers too
    assert result["num_images"] == 1


# ------------------------------------------------------------------- models and layers ----

@pytest.mark.parametrize("widths", [(4, 4, 8, 8), (4, 4, 8, 8, 8, 8), (0, 4, 8, 8, 8),
                                    (4.0, 4, 8, 8, 8)])
def test_vgg16_widths_must_be_five_positive_ints(widths):
    with pytest.raises(ValueError, match=r"widths must be 5 positive ints \(conv1 \.\. conv5"):
        models.build_fcn("32s", num_classes=C, weights=None, widths=widths, fc_units=8)
    with pytest.raises(ValueError, match="fc_units must be a positive int. Received: "
                                         "fc_units=0"):
        models.build_fcn("32s", num_classes=C, weights=None, widths=(4,) * 5, fc_units=0)


def test_crop_to_reference_refuses_a_window_past_its_input():
    crop = layers.CropToReference(3)
    x, reference = np.zeros((1, 10, 12, 2), "float32"), np.zeros((1, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=r"window of 8 at offset 3 along height, but its input "
                                         r"has only 10.*at least offset \+ reference size \(11\)"):
        crop([x, reference])
    out = keras.ops.convert_to_numpy(crop([np.zeros((1, 11, 12, 2), "float32"), reference]))
    assert out.shape == (1, 8, 8, 2)


def test_with_preprocessing_refuses_a_model_that_does_not_take_rgb():
    model = models.build_fcn("32s", num_classes=C, weights=None, widths=(4,) * 5, fc_units=8,
                             input_shape=(None, None, 4))
    with pytest.raises(ValueError, match="takes 4-channel input"):
        models.with_preprocessing(model)


def test_predict_with_no_input_at_all_is_a_user_error_before_the_model_loads(tmp_path):
    from keras_fcn.inference import files, predictor

    model = tmp_path / "never_loaded.keras"
    model.write_bytes(b"not a model: loading it would fail with another message")
    opts = predictor.PredictOptions(model=str(model),
                                    inputs=[str(tmp_path / "nope.png"), str(tmp_path / "*.jpg")],
                                    output_dir=str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match=r"No image or video to predict in --input=.*"
                                                r"nope\.png.*\*\.jpg: pattern matched no file"):
        files.run(opts)
