"""The Python training API refuses what it used to accept and ignore or turn into a wrong run:
learning-rate schedules, optimizer options, precision switches, the consistency loss's shapes,
two-headed evaluation, distribution settings, class-weight files and video pairs. Each error
names the argument and the value."""

import math

import keras
import numpy as np
import pytest

from keras_fcn import runtime
from keras_fcn.training import consistency, distribute, optimizers, two_headed
from tests.tiny import tiny_fcn

CPU = {"isa": ("avx2",), "gpu": False}


# ------------------------------------------------------------------ learning-rate schedules ----

def test_warmup_poly_and_cosine_follow_their_closed_forms():
    lr, total, warmup = 1e-2, 100, 10
    poly = optimizers.WarmupDecay(lr, total, kind="poly", warmup_steps=warmup)
    for t in (0, 5, 9, 10, 55, 99, 100, 150):
        p = min(max((t - warmup) / (total - warmup), 0.0), 1.0)
        expected = lr * (t + 1) / warmup if t < warmup else lr * (1 - p) ** 0.9
        assert float(poly(t)) == pytest.approx(expected, rel=1e-5, abs=1e-9)
    cosine = optimizers.WarmupDecay(lr, total, kind="cosine")
    for t in (0, 25, 50, 100):
        assert float(cosine(t)) == pytest.approx(lr * (1 + math.cos(math.pi * t / total)) / 2,
                                                 rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("learning_rate", [float("nan"), -1e-3, 0.0, float("inf")])
def test_a_schedule_with_a_nan_negative_or_infinite_rate_is_refused(learning_rate):
    # Was: make_optimizer checked plain numbers only, so a schedule trained on NaN or climbed
    # the loss (a negative rate).
    for kind in ("poly", "cosine", "constant"):
        with pytest.raises(ValueError, match=f"learning_rate={learning_rate!r}"):
            optimizers.learning_rate_schedule(learning_rate, kind, total_steps=100)
    with pytest.raises(ValueError, match="`learning_rate` must be a finite positive number"):
        optimizers.make_optimizer("adam", learning_rate)


def test_schedule_steps_must_be_whole_and_power_positive():
    # Was: int() truncated 2.5 warm-up steps to 2 and "100" to 100; a negative power gave a
    # rate 100 times the base one near the end, and infinity at the last step.
    with pytest.raises(ValueError, match=r"warmup_steps=2.5"):
        optimizers.WarmupDecay(1e-3, 100, warmup_steps=2.5)
    with pytest.raises(ValueError, match=r"total_steps=100.9"):
        optimizers.WarmupDecay(1e-3, 100.9)
    with pytest.raises(ValueError, match=r"total_steps='100'"):
        optimizers.WarmupDecay(1e-3, "100")
    for power in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=f"power={power!r}"):
            optimizers.WarmupDecay(1e-3, 100, power=power)
    with pytest.raises(ValueError, match=r"warmup_steps=-3"):  # was: "needs total steps"
        optimizers.learning_rate_schedule(1e-3, "constant", warmup_steps=-3)
    assert optimizers.WarmupDecay(1e-3, np.int64(100), warmup_steps=np.int64(5)).total_steps == 100


# -------------------------------------------------------------------------- optimizers ----

@pytest.mark.parametrize("kwargs, name", [
    ({"clipnorm": -1.0}, "clipnorm"),  # Keras ignores clipnorm <= 0: no clipping at all
    ({"clipnorm": 0}, "clipnorm"),
    ({"momentum": float("nan")}, "momentum"),  # passed Keras' range check
    ({"bias_lr_multiplier": float("nan")}, "bias_lr_multiplier"),
    ({"bias_lr_multiplier": "2"}, "bias_lr_multiplier"),  # was a TypeError
    ({"ema_decay": "0.9"}, "ema_decay"),  # was a TypeError
])
def test_sgd_options_that_keras_ignores_or_that_make_nan_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}={next(iter(kwargs.values()))!r}"):
        optimizers.make_optimizer("sgd", 1e-3, **kwargs)


@pytest.mark.parametrize("weight_decay", [-1e-4, float("nan"), float("inf")])
def test_adam_weight_decay_must_be_finite_and_non_negative(weight_decay):
    # Was: accepted; a negative decay grows the weights, NaN makes them NaN at step one.
    with pytest.raises(ValueError, match=f"weight_decay={weight_decay!r}"):
        optimizers.make_optimizer("adam", 1e-3, weight_decay=weight_decay)
    with pytest.raises(ValueError, match=f"weight_decay={weight_decay!r}"):
        optimizers.apply_kernel_l2(tiny_fcn("32s"), weight_decay)


def test_numpy_rates_and_integer_momentum_are_taken():
    # Were refused by Keras ("should be float") without naming the value.
    optimizer = optimizers.make_optimizer("sgd", np.float32(1e-3), momentum=0)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    assert optimizer.momentum == 0.0
    assert optimizers.make_optimizer("adam", 1e-3, weight_decay=None).weight_decay == 0.0


def test_learning_rate_conversions_refuse_nan_pixels_and_unknown_optimizers():
    for pixels in (float("nan"), float("inf"), "100"):
        with pytest.raises(ValueError, match=f"pixels={pixels!r}"):
            optimizers.equivalent_learning_rate(1e-10, "sum", "mean", pixels)
    with pytest.raises(ValueError, match="learning_rate=-1e-10"):
        optimizers.equivalent_learning_rate(-1e-10, "sum", "mean", 100)
    # Was: "Adam" (not "adam") silently got SGD's paper rate, 1e-10 * pixels.
    with pytest.raises(ValueError, match="optimizer='Adam'"):
        optimizers.default_learning_rate("Adam", "mean", "32s", 100)


# ----------------------------------------------------------------------------- runtime ----

@pytest.mark.parametrize("value", ["false", "0", "no"])
def test_execution_switches_refuse_strings_that_would_turn_them_on(value):
    # Was: bool("false") is True: XLA, the matmul rewrite or mixed precision switched on.
    for name in ("jit_compile", "conv_matmul"):
        with pytest.raises(ValueError, match=f"{name}={value!r}"):
            runtime.fast_path("float32", CPU, **{name: value})
    with pytest.raises(ValueError, match=f"mixed_precision={value!r}"):
        runtime.resolve_precision("float32", mixed_precision=value, info=CPU)
    with pytest.raises(ValueError, match=f"enabled={value!r}"):
        with runtime.convolutions_as_matmul(tiny_fcn("32s"), enabled=value):
            pass
    with pytest.raises(ValueError, match=f"enabled={value!r}"):
        distribute.set_mixed_precision(value)
    assert runtime.fast_path("float32", CPU, jit_compile=0)["jit_compile"] is False


def test_with_precision_takes_one_prefix_and_converts_an_inference_copy_for_training():
    model = tiny_fcn("8s")
    # Was: tuple("score") kept every layer starting with "s", "c", "o", "r" or "e" (all the
    # conv layers) float32: the bfloat16 request was not applied.
    mixed = runtime.with_precision(model, "bfloat16", keep_float32="score")
    assert mixed.get_layer("conv1_1").compute_dtype == "bfloat16"
    assert mixed.get_layer("score_fr").compute_dtype == "float32"
    # Was: an inference copy (bf16 weights) asked for training came back as it was, to be
    # trained with bfloat16 weights.
    inference = runtime.with_precision(model, "bfloat16", inference=True)
    assert inference.get_layer("fc6").kernel.dtype == "bfloat16"
    trainable = runtime.with_precision(inference, "bfloat16")
    assert trainable is not inference
    assert trainable.get_layer("fc6").kernel.dtype == "float32"
    assert trainable.get_layer("fc6").compute_dtype == "bfloat16"
    assert runtime.with_precision(trainable, "bfloat16") is trainable
    with pytest.raises(ValueError, match="inference='yes'"):
        runtime.with_precision(model, "bfloat16", inference="yes")


# ------------------------------------------------------------------- consistency loss ----

def _consistency_inputs(n=2, h=5, w=6, c=3):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (n, h, w, c)).astype("float32")
    moved = rng.normal(0, 2, (n, h, w, c)).astype("float32")
    flow = rng.uniform(-2, 2, (n, h, w, 2)).astype("float32")
    valid = rng.uniform(size=(n, h, w)) > 0.3
    return logits, moved, flow, valid


def _numpy_consistency(logits, moved, flow, valid):
    """(symmetric KL, pseudo-label cross-entropy) by hand: bilinear backward warp with
    clamped coordinates, then the means over the valid pixels."""
    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    probs = softmax(logits)
    n, h, w, _ = probs.shape
    warped = np.zeros_like(probs)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                sx = np.clip(x + flow[b, y, x, 0], 0, w - 1)
                sy = np.clip(y + flow[b, y, x, 1], 0, h - 1)
                x0, y0 = int(np.floor(sx)), int(np.floor(sy))
                x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
                wx, wy = sx - x0, sy - y0
                warped[b, y, x] = ((probs[b, y0, x0] * (1 - wx) + probs[b, y0, x1] * wx)
                                   * (1 - wy)
                                   + (probs[b, y1, x0] * (1 - wx) + probs[b, y1, x1] * wx) * wy)
    q = softmax(moved)
    kl = ((warped - q) * (np.log(warped) - np.log(q))).sum(-1)[valid].mean()
    top = np.take_along_axis(q, warped.argmax(-1)[..., None], -1)[..., 0]
    return kl, -np.log(top)[valid].mean()


def test_consistency_loss_matches_numpy_at_a_fractional_flow():
    logits, moved, flow, valid = _consistency_inputs()
    kl, ce = _numpy_consistency(logits, moved, flow, valid)
    for kind, expected in (("kl", kl), ("ce", ce), ("kl+ce", kl + ce)):
        got = float(consistency.consistency_loss(logits, moved, flow, valid, kind))
        assert got == pytest.approx(expected, rel=1e-4), kind


def test_consistency_loss_refuses_shapes_that_used_to_broadcast():
    logits, moved, flow, valid = _consistency_inputs()
    # Each of these gave a believable number (valid (H, W): 4.06 for a true 1.79; (N, 1, 1):
    # 59.7; a 3-channel flow lost a channel; one moved prediction was compared with all).
    for args in ((logits, moved, flow, valid[0]),
                 (logits, moved, flow, np.ones((2, 1, 1), bool)),
                 (logits, moved, np.concatenate([flow, flow[..., :1]], -1), valid),
                 (logits, moved[:1], flow, valid)):
        with pytest.raises(ValueError, match=r"consistency_loss needs .* Received: "
                                             r"logits.shape=\(2, 5, 6, 3\)"):
            consistency.consistency_loss(*args, kind="kl")


def test_consistency_weight_must_be_finite_and_the_model_a_model():
    model = tiny_fcn("32s")
    with pytest.raises(ValueError, match="weight=inf"):  # was: every loss infinite
        consistency.add_consistency(model, float("inf"))
    assert consistency.add_consistency(model, np.float32(0.5)).weight == 0.5  # was refused
    with pytest.raises(ValueError, match="fcn=None"):  # was an AttributeError
        consistency.add_consistency(None, 0.1)


# ---------------------------------------------------------------- two-headed evaluation ----

@pytest.fixture(scope="module")
def two_heads():
    from keras_fcn.models import build_two_headed_fcn

    return build_two_headed_fcn("32s", num_semantic=4, num_geometric=3, weights=None,
                                widths=(4, 4, 8, 8, 8), fc_units=8, dropout=0.0)


def _two_head_batch():
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    return images, {"semantic": np.zeros((1, 32, 32), "int32"),
                    "geometric": np.ones((1, 32, 32), "int32")}


def test_evaluate_segmentation_refuses_no_data_and_wrong_class_counts(two_heads):
    classes = {"semantic": 4, "geometric": 3}
    # Was: an all-zero confusion matrix scored mean IU 0.0 without a word.
    with pytest.raises(ValueError, match="yielded no batch"):
        two_headed.evaluate_segmentation(two_heads, [], classes)
    with pytest.raises(ValueError, match="max_batches=0"):
        two_headed.evaluate_segmentation(two_heads, [_two_head_batch()], classes, max_batches=0)
    # Was: scored with 9 classes against a 4-channel head.
    with pytest.raises(ValueError, match=r"differs from the 4 channels of the model's output "
                                         r"'semantic'"):
        two_headed.evaluate_segmentation(two_heads, [_two_head_batch()],
                                         {"semantic": 9, "geometric": 3})
    with pytest.raises(ValueError, match=r"num_classes=\{'sem': 4\}"):  # was a KeyError
        two_headed.evaluate_segmentation(two_heads, [_two_head_batch()], {"sem": 4})
    with pytest.raises(ValueError, match="num_classes=4"):
        two_headed.evaluate_segmentation(two_heads, [_two_head_batch()], 4)
    result = two_headed.evaluate_segmentation(two_heads, [_two_head_batch()], {"semantic": 4})
    assert set(result) == {"semantic"}


def test_evaluate_segmentation_refuses_a_diverged_model():
    model = tiny_fcn("32s", num_classes=3)
    layer = model.get_layer("score_fr")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.full_like(kernel, np.nan), bias])
    batch = (np.zeros((1, 32, 32, 3), "float32"), np.zeros((1, 32, 32), "int32"))
    # Was: NaN logits argmax to class 0, and with class-0 labels mean IU was 1.0.
    with pytest.raises(ValueError, match="non-finite values"):
        two_headed.evaluate_segmentation(model, [batch], 3)
    with pytest.raises(ValueError, match="differs from the 3 channels"):
        two_headed.evaluate_segmentation(tiny_fcn("32s", num_classes=3), [batch], 5)


def test_compile_two_headed_checks_loss_weights(two_heads):
    # Was: unknown names failed only inside fit; a NaN weight made every weight NaN.
    for weights in ({"sem": 1.0}, {"semantic": 1.0, "geometric": float("nan")},
                    {"semantic": 1.0, "geometric": -1.0}):
        with pytest.raises(ValueError, match="loss_weights"):
            two_headed.compile_two_headed(two_heads, keras.optimizers.SGD(0.0),
                                          loss_weights=weights)
    two_headed.compile_two_headed(two_heads, keras.optimizers.SGD(0.0),
                                  loss_weights={"semantic": 1.0, "geometric": 0.5})


# ------------------------------------------------------------------------ distribution ----

@pytest.mark.parametrize("text", ["{bad", '{"task": {"type": "worker", "index": "x"}}', "[]"])
def test_a_malformed_tf_config_is_named(monkeypatch, text):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(ValueError, match=r"TF_CONFIG must be JSON .*Received: TF_CONFIG="):
        distribute.is_chief()


def test_strategy_devices_must_be_a_list_for_mirrored():
    # Was: "/cpu:0" split into one-letter device names; devices of "default" ignored.
    with pytest.raises(ValueError, match=r"devices='/cpu:0'"):
        distribute.make_strategy("mirrored", devices="/cpu:0")
    with pytest.raises(ValueError, match=r"strategy='default', devices=\['/cpu:0'\]"):
        distribute.make_strategy("default", devices=["/cpu:0"])


# ------------------------------------------------------------ class weights and videos ----

@pytest.mark.parametrize("text", ["1 2 abc", '{"a": 1, "b": 2, "c": 3}', "[1, NaN, 2]",
                                  "1 -2 2"])
def test_a_class_weights_file_that_is_not_weights_is_named(tmp_path, text):
    from keras_fcn.training.array_inputs import read_weights_file

    path = tmp_path / "weights.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"weights.txt' must hold .*finite numbers >= 0"):
        read_weights_file(str(path), 3)
    path.write_text("1, 2.5, 0")
    assert read_weights_file(str(path), 3) == [1.0, 2.5, 0.0]


def test_video_pairs_refuse_a_step_or_pair_count_they_would_misread(tmp_path):
    from keras_fcn.training import video_pairs

    # Was: step=0 divided by zero, step=-1 read every frame, max_pairs=0 read every pair.
    for kwargs, name in (({"step": 0}, "step"), ({"step": -1}, "step"),
                         ({"step": 1.5}, "step"), ({"max_pairs": 0}, "max_pairs")):
        with pytest.raises(ValueError, match=f"{name}={kwargs[name]!r}"):
            next(video_pairs.video_pairs(str(tmp_path), (16, 16), **kwargs))
    with pytest.raises(ValueError, match=r"size=\(0, 16\)"):
        next(video_pairs.video_pairs(str(tmp_path), (0, 16)))


def test_all_unlabelled_pairs_can_be_read(tmp_path):
    pytest.importorskip("cv2")
    import tensorflow as tf
    from PIL import Image

    from keras_fcn.data import add_warped_pairs
    from keras_fcn.training import inputs
    from keras_fcn.training.config import TrainConfig

    (tmp_path / "clip").mkdir()
    ramp = np.add.outer(np.arange(16), np.arange(16)) * 8
    for i in range(3):
        frame = np.stack([np.roll(ramp, i, axis=1)] * 3, -1).astype("uint8")
        Image.fromarray(frame).save(tmp_path / "clip" / f"{i:03d}.png")
    config = TrainConfig().replace(image_size=(16, 16), batch_size=1, temporal_consistency=0.1,
                                   unlabelled_video_dir=str(tmp_path), unlabelled_pairs=None)
    labelled = tf.data.Dataset.from_tensor_slices(
        (tf.zeros([2, 16, 16, 3]), tf.zeros([2, 16, 16], tf.int32))).batch(1)
    # Was: unlabelled_pairs=None (read every pair) failed in shuffle(None).
    images, (masks, flow, valid) = next(iter(inputs._with_video_pairs(
        config, add_warped_pairs(labelled, seed=0))))
    assert images.shape == (4, 16, 16, 3) and flow.shape == (2, 16, 16, 2)
