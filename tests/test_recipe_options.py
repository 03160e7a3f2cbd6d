"""The CamVid recipe options of issue 16: photometric augmentation and blur, wide scale range
with full-size crops, label smoothing, learning-rate schedules, EMA of the weights and
multi-scale test-time augmentation. Each is off by default; each is checked on values."""

import json
import math
import os
import sys
import time

import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf
from absl import flags

from known_values import assert_same_metrics, confusion_counts
from tiny import TINY_FC, TINY_WIDTHS, randomize_scores, tiny_fcn
from tool_flags import run_in_process
from keras_fcn import data, losses, metrics
from keras_fcn.data import augment
from keras_fcn.datasets import shapes
from keras_fcn.inference.forward import forward_fn
from keras_fcn.training import callbacks as callbacks_lib
from keras_fcn.training import config as config_lib
from keras_fcn.training import evaluation, optimizers, recipe
from keras_fcn.metrics import segmentation_metrics
from keras_fcn.training.fit import compile_model

fit_lib = sys.modules[compile_model.__module__]  # keras_fcn.training.fit (not the function)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _decoded(images, masks):
    return tf.data.Dataset.from_tensor_slices((np.asarray(images, "uint8"),
                                               np.asarray(masks, "uint8")))


def _collect(ds):
    pairs = [(i.numpy(), m.numpy()) for i, m in ds]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


# ------------------------------------------------------------ photometric + blur ----

def _element_seeds(seed, count):
    """The element seeds of the first pass of a pipeline seeded `seed` (one int64 per element,
    `augment.with_element_seeds`)."""
    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(count)
    return [int(s) for s in ds]


def _draw(seed, op, low=0.0, high=1.0):
    """The documented draw of augmentation step `op` of element `seed`: a stateless uniform in
    [low, high) from the seed (seed, op)."""
    return float(tf.random.stateless_uniform([], tf.constant([seed, op], tf.int64), low, high))


def _hue_rotation(angle):
    """Rodrigues' rotation about the gray axis (1, 1, 1)/sqrt(3) by `angle` (column vectors)."""
    u = np.full(3, 1 / math.sqrt(3))
    cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return math.cos(angle) * np.eye(3) + math.sin(angle) * cross + (
        1 - math.cos(angle)) * np.outer(u, u)


def _photometric_numpy(image, seed, strength):
    """Colour jitter as `augment.photometric_ranges` and `random_color_jitter` state it, step by
    step, in float64: brightness shift up to
    64 S, contrast about the image mean and saturation about the gray level by factors in
    1 +- S/2, hue turned up to S/10 of a turn about the gray axis, then clipped; the draws are
    ops 21..24 of the element seed."""
    shift = _draw(seed, 21, -64 * strength, 64 * strength)
    contrast = _draw(seed, 22, 1 - strength / 2, 1 + strength / 2)
    saturation = _draw(seed, 23, 1 - strength / 2, 1 + strength / 2)
    angle = _draw(seed, 24, -strength / 10, strength / 10) * 2 * math.pi
    x = image.astype("float64") + shift
    x = x.mean() + contrast * (x - x.mean())
    gray = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
    x = gray + saturation * (x - gray)
    return np.clip(x @ _hue_rotation(angle).T, 0, 255)


def test_photometric_and_blur_are_seeded_and_leave_masks_alone():
    rng = np.random.default_rng(0)
    decoded = _decoded(rng.integers(0, 256, (6, 16, 20, 3)), rng.integers(0, 4, (6, 16, 20)))
    kwargs = dict(crop_size=(16, 20), batch_size=3, flip=True, seed=3)
    images, masks = _collect(data.prepare_dataset(decoded, photometric=1.0, blur=1.5,
                                                  **kwargs))
    again, masks_again = _collect(data.prepare_dataset(decoded, photometric=1.0, blur=1.5,
                                                       **kwargs))
    plain, plain_masks = _collect(data.prepare_dataset(decoded, **kwargs))
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(masks, masks_again)
    np.testing.assert_array_equal(masks, plain_masks)  # same flips; masks never jittered
    # Each image is its plain (cropped, flipped) self, blurred with probability 1/2 (draw 25)
    # by a Gaussian of std drawn in [0.1, 1.5] (draw 26, radius 3 * 1.5 -> 5; scipy's
    # reflect), then jittered: computed here from the element seeds.
    expected, blurred = [], []
    for image, seed in zip(plain, _element_seeds(3, len(plain))):
        blurred.append(_draw(seed, 25) < 0.5)
        if blurred[-1]:
            sigma = _draw(seed, 26, 0.1, 1.5)
            image = scipy.ndimage.gaussian_filter(image.astype("float64"), (sigma, sigma, 0),
                                                  mode="reflect", radius=(5, 5, 0))
        expected.append(_photometric_numpy(image, seed, 1.0))
    np.testing.assert_allclose(images, np.stack(expected), atol=2e-3)
    assert 0 < sum(blurred) < len(blurred)  # both branches are checked
    # off by default: the pipeline without the options is the one of today
    default, _ = _collect(data.prepare_dataset(decoded, photometric=0.0, blur=0.0, **kwargs))
    np.testing.assert_array_equal(default, plain)


def test_brightness_moves_a_gray_image_by_its_draw():
    gray = np.full((12, 10, 12, 3), 128, "uint8")  # contrast, saturation, hue keep gray
    images, _ = _collect(data.prepare_dataset(_decoded(gray, np.zeros((12, 10, 12))),
                                              photometric=0.5, seed=1, batch_size=1))
    shifts = [_draw(seed, 21, -32.0, 32.0) for seed in _element_seeds(1, 12)]  # 64 * 0.5
    np.testing.assert_allclose(images, 128.0 + np.reshape(shifts, (12, 1, 1, 1))
                               * np.ones_like(images), atol=1e-3)
    assert np.ptp(shifts) > 16.0  # the draws spread over the range


def test_jitter_draws_are_the_photometric_ranges_of_their_seeds():
    ranges = augment.photometric_ranges(1.0)
    assert ranges == {"brightness": 64.0, "contrast": (0.5, 1.5), "saturation": (0.5, 1.5),
                      "hue": 0.1}
    draws = np.stack([augment.jitter_factors(tf.constant([s, 4], tf.int64), **ranges).numpy()
                      for s in range(64)])
    expected = [[_draw(s, 21, -64, 64), _draw(s, 22, 0.5, 1.5), _draw(s, 23, 0.5, 1.5),
                 _draw(s, 24, -0.1, 0.1) * 2 * math.pi] for s in range(64)]
    np.testing.assert_allclose(draws, expected, rtol=1e-6, atol=1e-6)
    # the 0.1.0 colour jitter is strength 0.5 without hue, and its draws did not change
    half = dict(augment.photometric_ranges(0.5), hue=0.0)
    seed = tf.constant([7, 4], tf.int64)
    np.testing.assert_array_equal(augment.jitter_factors(seed, **half).numpy(),
                                  augment.jitter_factors(seed).numpy())
    np.testing.assert_allclose(augment.jitter_factors(seed).numpy(), [
        _draw(7, 21, -32, 32), _draw(7, 22, 0.75, 1.25), _draw(7, 23, 0.75, 1.25), 0.0],
        rtol=1e-6)
    assert augment.jitter_settings(color_jitter=True) == {}
    assert augment.jitter_settings() is None
    with pytest.raises(ValueError, match="Received: photometric=1.5"):
        augment.photometric_ranges(1.5)


def test_hue_rotation_keeps_gray_brightness_and_chroma():
    pixels = np.random.default_rng(1).uniform(0, 255, (50, 3)).astype("float32")
    matrix = augment.hue_matrices(tf.constant([0.7]))[0].numpy()
    turned = pixels @ matrix
    np.testing.assert_allclose(turned.sum(1), pixels.sum(1), rtol=1e-5)
    chroma = lambda x: np.linalg.norm(x - x.mean(1, keepdims=True), axis=1)  # noqa: E731
    np.testing.assert_allclose(chroma(turned), chroma(pixels), rtol=1e-4)
    third = augment.hue_matrices(tf.constant([2 * math.pi / 3]))[0].numpy()
    np.testing.assert_allclose(np.eye(3) @ third, np.eye(3)[[1, 2, 0]], atol=1e-6)  # R->G->B


def test_gaussian_blur_is_scipy_gaussian_filter():
    image = np.random.default_rng(2).uniform(0, 255, (9, 11, 3)).astype("float32")
    blurred = augment.gaussian_blur(tf.constant(image), 1.3, 4).numpy()
    expected = scipy.ndimage.gaussian_filter(image, sigma=(1.3, 1.3, 0), mode="reflect",
                                             radius=(4, 4, 0))
    np.testing.assert_allclose(blurred, expected, atol=1e-3)
    assert blurred.std() < 0.7 * image.std()
    with pytest.raises(ValueError, match="Received: blur=0.05"):
        augment.random_blur(tf.constant(image), tf.constant([0, 5], tf.int64), 0.05)


# ------------------------------------------------------------ scale 0.5-2 + full crops ----

def test_wide_scale_range_with_full_size_crops_pads_with_mean_and_ignore():
    color = np.array([10, 20, 30], "uint8")
    images = np.broadcast_to(color, (16, 12, 16, 3))
    ds = data.prepare_dataset(_decoded(images, np.zeros((16, 12, 16))), crop_size=(12, 16),
                              scale_range=(0.5, 2.0), flip=True, seed=0, batch_size=4,
                              ignore_label=255)
    out, masks = _collect(ds)
    assert out.shape == (16, 12, 16, 3) and masks.shape == (16, 12, 16)
    padded = masks == 255
    assert padded.any(axis=(1, 2)).sum() >= 3  # several draws scaled below 1
    assert (~padded).all(axis=(1, 2)).sum() >= 3  # and several above
    np.testing.assert_array_equal(out[padded], np.broadcast_to(
        np.float32(augment.MEAN_RGB), out[padded].shape))
    np.testing.assert_allclose(out[~padded], np.broadcast_to(color, out[~padded].shape),
                               atol=1e-3)
    for mask in masks:  # the image is one rectangle at a corner: bottom, left or right pad
        rows, cols = np.nonzero(mask != 255)
        assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].max() == 0
        assert rows.min() == 0 and (cols.min() == 0 or cols.max() == 15)
        assert rows.max() + 1 >= 6 and cols.max() - cols.min() + 1 >= 8  # scale >= 0.5


# ------------------------------------------------------------ label smoothing ----

def _smoothed_numpy(labels, logits, smoothing, ignore):
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    classes = logits.shape[-1]
    valid = labels != ignore
    target = np.eye(classes)[np.where(valid, labels, 0)] * (1 - smoothing) + smoothing / classes
    per_pixel = -(target * log_p).sum(-1)
    return per_pixel[valid].mean(), (per_pixel * valid).sum((1, 2)).mean()


def test_label_smoothing_is_the_closed_form_and_skips_void():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (2, 3, 4, 5)).astype("float32")
    labels = rng.integers(0, 5, (2, 3, 4))
    labels[0, 0, :2] = 255
    mean, per_image_sum = _smoothed_numpy(labels, logits, 0.1, 255)
    loss = losses.SparseCategoricalCrossentropyIgnore(label_smoothing=0.1)
    np.testing.assert_allclose(float(loss(labels, logits)), mean, rtol=1e-5)
    np.testing.assert_allclose(float(losses.sparse_categorical_crossentropy_ignore(
        labels, logits, label_smoothing=0.1, reduction_mode="sum")), per_image_sum, rtol=1e-5)
    # void logits do not matter
    changed = logits.copy()
    changed[0, 0, :2] = 50.0
    np.testing.assert_allclose(float(loss(labels, changed)), mean, rtol=1e-5)
    # 0 is today's loss; the config round-trips
    np.testing.assert_allclose(float(losses.SparseCategoricalCrossentropyIgnore()(labels, logits)),
                               _smoothed_numpy(labels, logits, 0.0, 255)[0], rtol=1e-5)
    restored = losses.SparseCategoricalCrossentropyIgnore.from_config(loss.get_config())
    assert restored.label_smoothing == 0.1
    with pytest.raises(ValueError, match="Received: label_smoothing=1.0"):
        losses.SparseCategoricalCrossentropyIgnore(label_smoothing=1.0)


# ------------------------------------------------------------ learning-rate schedules ----

def test_schedules_match_their_formulas():
    lr, total = 1e-2, 1000
    poly = optimizers.WarmupDecay(lr, total, kind="poly")
    cosine = optimizers.WarmupDecay(lr, total, kind="cosine")
    for step in (0, 1, 250, 500, 999, 1000, 1200):
        p = min(step / total, 1.0)
        np.testing.assert_allclose(float(poly(step)), lr * (1 - p) ** 0.9, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(float(cosine(step)), lr * (1 + math.cos(math.pi * p)) / 2,
                                   rtol=1e-5, atol=1e-9)
    warm = optimizers.WarmupDecay(lr, total, kind="poly", warmup_steps=100)
    for step in (0, 49, 99):
        np.testing.assert_allclose(float(warm(step)), lr * (step + 1) / 100, rtol=1e-5)
    np.testing.assert_allclose(float(warm(100)), lr, rtol=1e-6)
    np.testing.assert_allclose(float(warm(550)), lr * 0.5 ** 0.9, rtol=1e-5)
    flat = optimizers.WarmupDecay(lr, total, kind="constant", warmup_steps=10)
    assert float(flat(4)) == pytest.approx(lr / 2) and float(flat(500)) == pytest.approx(lr)
    assert optimizers.WarmupDecay.from_config(warm.get_config()).get_config() == \
        warm.get_config()
    assert optimizers.learning_rate_schedule(lr) == lr  # constant: today's float rate
    with pytest.raises(ValueError, match="total_steps"):
        optimizers.learning_rate_schedule(lr, "poly")


def test_run_schedule_spans_the_runs_steps():
    ds = tf.data.Dataset.range(10).batch(4)  # 3 batches per epoch
    config = config_lib.TrainConfig().replace(epochs=5, lr_schedule="cosine", warmup_epochs=1.0)
    schedule = recipe.run_schedule(config, 1e-3, ds)
    assert (schedule.total_steps, schedule.warmup_steps, schedule.kind) == (15, 3, "cosine")
    stepped = config_lib.TrainConfig().replace(epochs=2, lr_schedule="poly",
                                              steps_per_epoch=7)
    assert recipe.run_schedule(stepped, 1e-3, ds.repeat()).total_steps == 14
    assert recipe.run_schedule(config_lib.TrainConfig(), 1e-3, ds) == 1e-3
    optimizer = optimizers.make_optimizer("adam", schedule)
    optimizer.iterations.assign(15)
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------ EMA of the weights ----

class _Recorder(keras.callbacks.Callback):
    """Raw weights after every step, and the weights seen by validation."""

    def __init__(self):
        super().__init__()
        self.steps, self.validated, self.after_epoch = [], [], []

    def _weights(self):
        return [w.numpy().copy() for w in self.model.trainable_weights]

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(self._weights())

    def on_test_begin(self, logs=None):
        self.validated.append((len(self.steps), self._weights()))

    def on_epoch_end(self, epoch, logs=None):
        self.after_epoch.append(self._weights())


def _ema(raw_steps, decay):
    average = [w.copy() for w in raw_steps[0]]  # Keras: the first step copies
    history = [average]
    for weights in raw_steps[1:]:
        average = [decay * a + (1 - decay) * w for a, w in zip(average, weights)]
        history.append(average)
    return history


def test_ema_validates_checkpoints_and_ends_with_the_averaged_weights(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(4)
    images = rng.normal(0, 1, (8, 8, 8, 3)).astype("float32")
    masks = rng.integers(0, 3, (8, 8, 8))
    train_ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    optimizer = optimizers.make_optimizer("sgd", 0.5, momentum=0.0, weight_decay=0.0,
                                          ema_decay=0.8)
    compile_model(model, num_classes=3, ignore_label=255, optimizer=optimizer,
                  weight_decay=0.0)
    recorder = _Recorder()
    guard = callbacks_lib.NaNGuard()
    run_callbacks = callbacks_lib.make_callbacks(str(tmp_path), nan_guard=guard)
    model.fit(train_ds, validation_data=train_ds, epochs=2, verbose=0, shuffle=False,
              callbacks=run_callbacks[:2] + [recorder] + run_callbacks[2:])
    averages = _ema(recorder.steps, 0.8)
    final = [w.numpy() for w in model.trainable_weights]
    for got, want, raw in zip(final, averages[-1], recorder.steps[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert np.abs(got - raw).max() > 1e-3  # the averaged weights are not the raw ones
    for (steps_done, seen), after in zip(recorder.validated, recorder.after_epoch):
        for got, want in zip(seen, averages[steps_done - 1]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        for got, raw in zip(after, recorder.steps[steps_done - 1]):
            np.testing.assert_array_equal(got, raw)  # training goes on from the raw weights
    with open(tmp_path / "best_state.json", encoding="utf-8") as f:
        best_epoch = json.load(f)["epoch"]
    best = keras.models.load_model(tmp_path / "best.keras", compile=False)
    for got, want in zip(best.trainable_weights, averages[4 * best_epoch - 1]):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Received: ema_decay=1.0"):
        optimizers.make_optimizer("adam", 1e-3, ema_decay=1.0)


# ------------------------------------------------------------ multi-scale + flip TTA ----

@pytest.fixture(scope="module")
def tta_case():
    model = tiny_fcn("8s", num_classes=3, include_preprocessing=True, seed=5, scale=1.0)
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 255, (3, 32, 48, 3)).astype("float32")
    masks = rng.integers(0, 3, (3, 40, 60)).astype("int32")  # labels larger than the input
    masks[:, :4] = 255
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(1)
    return model, images, masks, ds


def _confusion(masks, preds):
    return sum(metrics.confusion_matrix(m[None], p[None], 3, 255) for m, p in zip(masks, preds))


def test_single_scale_evaluation_is_todays(tta_case):
    model, images, masks, ds = tta_case
    results = evaluation.evaluate_model(model, ds, num_classes=3, ignore_label=255,
                                        scales=(1,), verbose=0, jit_compile=False)
    logits = model(images, training=False)
    preds = tf.argmax(tf.image.resize(logits, (40, 60), method="bilinear"), -1).numpy()
    assert results["confusion_matrix"] == _confusion(masks, preds).tolist()


def test_two_scales_average_the_single_scale_probabilities(tta_case):
    model, images, masks, ds = tta_case
    predict = forward_fn(model, flip=True, jit_compile=False)
    batch = tf.constant(images)
    pair = evaluation.tta_probabilities(predict, batch, (40, 60), (0.75, 1.25)).numpy()
    small = evaluation.tta_probabilities(predict, batch, (40, 60), (0.75,)).numpy()
    large = evaluation.tta_probabilities(predict, batch, (40, 60), (1.25,)).numpy()
    np.testing.assert_allclose(pair, (small + large) / 2, rtol=1e-6, atol=1e-7)
    assert np.abs(small - large).max() > 1e-3  # the scales do differ
    results = evaluation.evaluate_model(model, ds, num_classes=3, ignore_label=255,
                                        scales=(0.75, 1.25), flip=True, verbose=0,
                                        jit_compile=False)
    expected = _confusion(masks, ((small + large) / 2).argmax(-1))
    assert results["confusion_matrix"] == expected.tolist()
    with pytest.raises(ValueError, match=r"Received: scales=\(0.5, -1\)"):
        evaluation.check_scales((0.5, -1))


def test_evaluate_tool_rejects_bad_scales():
    # In this process, as `python tools/evaluate.py` runs (tests/test_evaluate.py: the script)
    result = run_in_process("tools/evaluate.py", "--model=none.keras", "--scales=1,0")
    assert result.returncode == 2
    assert "error: `scales` must be finite positive numbers. Received: scales=(1.0, 0.0)" in \
        result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------ flags and the whole recipe ----

def test_flags_set_the_options_and_their_defaults_are_off():
    values = flags.FlagValues()
    config_lib.define_flags(values)
    values(["prog", "--photometric=0.5", "--blur=1.5", "--lr_schedule=poly",
            "--warmup_epochs=1", "--ema_decay=0.999", "--label_smoothing=0.1",
            "--eval_scales=0.75,1,1.25"])
    config = config_lib.config_from_flags(values)
    assert (config.data.photometric, config.data.blur, config.optim.lr_schedule,
            config.optim.warmup_epochs, config.optim.ema_decay, config.optim.label_smoothing,
            config.run.eval_scales) == (0.5, 1.5, "poly", 1.0, 0.999, 0.1, (0.75, 1.0, 1.25))
    # The defaults, read from the code, switch each option off: the same pipeline, a constant
    # rate, no EMA, the plain loss, one scale.
    default = config_lib.TrainConfig()
    rng = np.random.default_rng(0)
    decoded = _decoded(rng.integers(0, 256, (4, 8, 10, 3)), rng.integers(0, 3, (4, 8, 10)))
    kwargs = dict(crop_size=(8, 10), batch_size=2, flip=True, seed=3)
    np.testing.assert_array_equal(
        _collect(data.prepare_dataset(decoded, photometric=default.data.photometric,
                                      blur=default.data.blur, **kwargs))[0],
        _collect(data.prepare_dataset(decoded, **kwargs))[0])
    assert recipe.run_schedule(default, 1e-3, tf.data.Dataset.range(4).batch(2)) == 1e-3
    assert not optimizers.make_optimizer("adam", 1e-3,
                                         ema_decay=default.optim.ema_decay).use_ema
    logits = rng.normal(0, 2, (1, 2, 3, 4)).astype("float32")
    labels = rng.integers(0, 4, (1, 2, 3))
    loss = losses.SparseCategoricalCrossentropyIgnore(
        label_smoothing=default.optim.label_smoothing)
    np.testing.assert_allclose(float(loss(labels, logits)),
                               _smoothed_numpy(labels, logits, 0.0, 255)[0], rtol=1e-6)
    assert evaluation.check_scales(default.run.eval_scales or (1.0,)) == (1.0,)


def test_recipe_with_every_option_reports_its_models_tta_figures(tmp_path, monkeypatch):
    calls, evaluate_model = [], fit_lib.evaluate_model
    monkeypatch.setattr(fit_lib, "evaluate_model", lambda *args, **kwargs: calls.append(
        kwargs) or evaluate_model(*args, **kwargs))
    # Score layers start at zero: after 4 steps the tiny model predicted one class everywhere,
    # and figures that do not depend on the scales could not tell the TTA settings apart.
    # Random score layers make its predictions vary with the scale.
    build_model = recipe.build_model
    monkeypatch.setattr(recipe, "build_model", lambda *args: randomize_scores(
        build_model(*args), seed=3, scale=1.0))
    config = config_lib.TrainConfig().replace(
        dataset="shapes", model="fcn8s", widths=TINY_WIDTHS, fc_units=TINY_FC, dropout=0.0,
        epochs=2, batch_size=4, num_train=8, num_val=2, shapes_size=32, crop_size=(32, 32),
        scale_range=(0.5, 2.0), optimizer="adam", learning_rate=1e-2, photometric=0.5,
        blur=1.0, lr_schedule="poly", warmup_epochs=0.5, ema_decay=0.9, label_smoothing=0.1,
        eval_scales=(0.75, 1.0), flip_eval=True, output_dir=str(tmp_path / "run"), verbose=0)
    result = recipe.run(config)
    report = result["reports"]["8s"]
    assert [epoch["epoch"] for epoch in report["history"]] == [1, 2]
    assert [(call["flip"], call["scales"]) for call in calls] == [(True, (0.75, 1.0))]
    saved = keras.models.load_model(os.path.join(result["run_dir"], "model.keras"))
    # The final figures are the saved model's flip + two-scale predictions on the two
    # validation images, counted here (tta_probabilities is checked above on closed forms),
    # and not its flip + one-scale ones, which differ on more than a few pixels.
    images, masks = shapes.shapes_arrays(2, size=32, seed=0, start=shapes.VAL_OFFSET)
    predict = forward_fn(saved, flip=True, jit_compile=False)

    def counts(scales):
        preds = np.concatenate([evaluation.tta_probabilities(
            predict, tf.constant(image[None], tf.float32), (32, 32), scales).numpy().argmax(-1)
            for image in images])
        return confusion_counts(masks, preds, 4, 255)

    two_scales, one_scale = counts((0.75, 1.0)), counts((1.0,))
    assert np.abs(two_scales - one_scale).sum() > 20  # the settings give other figures
    expected = segmentation_metrics(two_scales)
    expected.update(confusion_matrix=two_scales)
    assert_same_metrics(result["final"], expected, moved_pixels=2)
    assert result["final"]["num_images"] == 2
    # The options reached the saved model: the rate decayed to 0 (poly over the 2 epochs), the
    # weights are averaged with decay 0.9, and the loss is smoothed by 0.1 (its closed form).
    assert float(saved.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    assert saved.optimizer.use_ema and saved.optimizer.ema_momentum == pytest.approx(0.9)
    logits = np.random.default_rng(6).normal(0, 2, (1, 4, 4, 4)).astype("float32")
    labels = masks[:1, :4, :4]
    np.testing.assert_allclose(float(saved.loss(labels, logits)),
                               _smoothed_numpy(labels, logits, 0.1, 255)[0], rtol=1e-5)


# ------------------------------------------------------- time budget ----


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_time_limit_stops_before_the_epoch_that_would_pass_the_budget(clock):
    limit = callbacks_lib.TimeLimit(minutes=1, clock=clock)
    assert limit._now is {"wall": time.time, "cpu": time.process_time}[clock]
    fake = limit._now = _Clock()
    limit.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    limit.model.stop_training = False
    limit.on_train_begin()
    epochs = 0
    while not limit.model.stop_training:
        limit.on_epoch_begin(epochs)
        fake.now += 25.0  # 25 s an epoch: 2 fit in 60 s, a third would end at 75 s
        limit.on_epoch_end(epochs)
        epochs += 1
    assert (epochs, limit.stopped_epoch) == (2, 2)


def test_time_limit_rejects_an_unknown_clock():
    with pytest.raises(ValueError, match="`clock` must be one of.*clock='gpu'"):
        callbacks_lib.TimeLimit(5, clock="gpu")


def test_history_records_wall_and_cpu_seconds(tmp_path):
    guard = callbacks_lib.NaNGuard()
    writer = callbacks_lib.HistoryWriter(str(tmp_path / "history.json"), guard)
    writer.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    writer.on_train_begin()
    writer.on_epoch_begin(0)
    end = time.process_time() + 0.2
    while time.process_time() < end:  # burn 0.2 s of CPU
        pass
    writer.on_epoch_end(0, {"loss": 1.5})
    with open(tmp_path / "history.json") as f:
        (entry,) = json.load(f)
    assert entry["loss"] == 1.5
    assert entry["cpu_seconds"] >= 0.2 and entry["seconds"] >= 0.15


def test_class_weights_median_and_sqrt_median_are_the_closed_form(tmp_path):
    from keras_fcn.datasets.base import DatasetInfo
    from keras_fcn.training import TrainConfig, resolve_class_weights

    info = DatasetInfo("four", 4, ("a", "b", "c", "d"), ((0, 0, 0),) * 4, ignore_label=255)
    mask = np.repeat(np.arange(4), [50, 30, 15, 5]).reshape(10, 10)  # pixels per class
    mask[0, :3] = 255  # void pixels are not counted: class 0 has 47
    decoded = tf.data.Dataset.from_tensors((tf.zeros([10, 10, 3]), tf.constant(mask, tf.uint8)))
    frequencies = np.array([47, 30, 15, 5]) / 97.0
    median = np.median(frequencies) / frequencies
    run_dir = str(tmp_path)
    config = TrainConfig()
    got = resolve_class_weights(config.replace(class_weights="median"), info, decoded, run_dir)
    np.testing.assert_allclose(got, median, rtol=1e-6)
    got = resolve_class_weights(config.replace(class_weights="sqrt_median"), info, decoded,
                                run_dir)
    np.testing.assert_allclose(got, np.sqrt(median), rtol=1e-6)
    # The run folder caches the median weights, whichever of the two asked first.
    np.testing.assert_allclose(json.load(open(tmp_path / "class_weights.json")), median,
                               rtol=1e-6)
    assert resolve_class_weights(config.replace(class_weights="none"), info, decoded,
                                 run_dir) is None
    assert resolve_class_weights(config, info, decoded, run_dir) is None  # the default
    with pytest.raises(ValueError, match="sqrt_median.*Received: class_weights='sqrt'"):
        resolve_class_weights(config.replace(class_weights="sqrt"), info, decoded, run_dir)


# Mutation audit, round 8 (training safety): each test fails on a mutant that the suite let
# pass (a dropped check or an off-by-one in keras_fcn/training/callbacks.py).


def test_best_checkpoint_saves_nothing_after_a_nan_stop_even_at_a_better_value(tmp_path):
    """After a NaN stop the diverged weights may score higher by chance (argmax of NaN logits
    is class 0): the guard alone must keep the last good best.keras."""
    guard = callbacks_lib.NaNGuard()
    best = callbacks_lib.BestCheckpoint(str(tmp_path / "best.keras"), guard)
    best.set_model(tiny_fcn("32s", 4))
    best.on_epoch_end(0, {"val_mean_iu": 0.2})
    saved = (tmp_path / "best.keras").read_bytes()
    guard.nan_step = {"epoch": 2, "batch": 1, "step": None, "loss": "nan"}
    best.on_epoch_end(1, {"val_mean_iu": 0.9})
    assert (best.best, best.best_epoch) == (0.2, 1)
    assert json.loads((tmp_path / "best_state.json").read_text()) == {
        "monitor": "val_mean_iu", "value": 0.2, "epoch": 1}
    assert (tmp_path / "best.keras").read_bytes() == saved


def test_history_drops_the_lost_epochs_of_a_resume_and_marks_a_nan_epoch(tmp_path):
    """A resume from the epoch-2 backup of a run whose history holds epochs 1-4 (the later
    two lost with it) writes epochs 1-3; an epoch that ended on a NaN loss is marked."""
    path = tmp_path / "history.json"
    path.write_text(json.dumps([{"epoch": e, "loss": float(e)} for e in (1, 2, 3, 4)]))
    guard = callbacks_lib.NaNGuard()
    writer = callbacks_lib.HistoryWriter(str(path), guard)
    writer.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    writer.on_train_begin()
    writer.on_epoch_begin(2)  # the backup held 2 epochs: this is epoch 3
    assert [e["epoch"] for e in writer.epochs] == [1, 2]
    guard.nan_step = {"epoch": 3, "batch": 1, "step": None, "loss": "nan"}
    writer.on_epoch_end(2, {"loss": float("nan")})
    history = json.loads(path.read_text())
    assert [(e["epoch"], e.get("nan", False)) for e in history] == [
        (1, False), (2, False), (3, True)]
    assert [e["loss"] for e in history] == [1.0, 2.0, None]  # JSON has no NaN


def test_best_checkpoint_skips_a_nan_value_and_saves_the_next_finite_one(tmp_path):
    """A NaN first value stored as the best would never be beaten (NaN compares False)."""
    best = callbacks_lib.BestCheckpoint(str(tmp_path / "best.keras"), callbacks_lib.NaNGuard(),
                                        monitor="val_loss")
    best.set_model(tiny_fcn("32s", 4))
    best.on_epoch_end(0, {"val_loss": float("nan")})
    assert best.best is None and not (tmp_path / "best.keras").exists()
    best.on_epoch_end(1, {"val_loss": 1.25})
    assert (best.best, best.best_epoch) == (1.25, 2)
    assert json.loads((tmp_path / "best_state.json").read_text()) == {
        "monitor": "val_loss", "value": 1.25, "epoch": 2}
