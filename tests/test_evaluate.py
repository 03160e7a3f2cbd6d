"""Tests of tools/evaluate.py and keras_fcn.training.evaluate_model against plain numpy."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tiny import SCORE_LAYERS, tiny_fcn
from keras_fcn.datasets import shapes as synthetic
from keras_fcn import training as train

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _model_with_varied_output(num_classes=4):
    """A tiny FCN whose score kernels are large and biases zero, so that predictions follow
    the image and use several classes."""
    model = tiny_fcn("8s", num_classes, seed=2, scale=30.0, include_preprocessing=True)
    for name in SCORE_LAYERS:
        bias = model.get_layer(name).bias
        bias.assign(np.zeros(bias.shape, "float32"))
    return model


def _numpy_metrics(labels, preds, num_classes, ignore_label):
    """The paper's metrics written out directly (independent of keras_fcn.metrics)."""
    keep = labels != ignore_label
    n = np.zeros((num_classes, num_classes))
    for t, p in zip(labels[keep], preds[keep]):
        n[t, p] += 1
    diag, t = np.diag(n), n.sum(1)
    union = t + n.sum(0) - diag
    iu = np.array([d / u if u > 0 else np.nan for d, u in zip(diag, union)])
    acc = np.array([d / s if s > 0 else np.nan for d, s in zip(diag, t)])
    return {
        "pixel_accuracy": diag.sum() / t.sum(),
        "mean_accuracy": np.nanmean(acc),
        "mean_iu": np.nanmean(iu),
        "frequency_weighted_iu": np.nansum(t * iu) / t.sum(),
        "per_class_iu": iu,
        "confusion_matrix": n,
    }


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _assert_same(results, expected):
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu"):
        assert results[key] == pytest.approx(expected[key], abs=1e-9), key
    got_iu = np.array([np.nan if v is None else v for v in results["per_class_iu"]])
    np.testing.assert_allclose(got_iu, expected["per_class_iu"], atol=1e-9)
    np.testing.assert_array_equal(np.array(results["confusion_matrix"]),
                                  expected["confusion_matrix"])


def _evaluate_tool(model_path, *flags):
    """Runs tools/evaluate.py on ``model_path`` (CPU, quiet TensorFlow); the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "evaluate.py"),
                           f"--model={model_path}", *flags],
                          capture_output=True, text=True, env=env, timeout=300)


def test_evaluate_tool_json_matches_numpy_with_flip(tmp_path):
    model = _model_with_varied_output()
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    output = str(tmp_path / "eval.json")
    out = _evaluate_tool(path, "--dataset=shapes", "--num_val=3", "--flip", f"--output={output}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mean IU" in out.stdout and "rectangle" in out.stdout  # table with class names
    results = json.load(open(output))
    assert results["num_images"] == 3 and results["flip"] is True

    images, masks = synthetic.shapes_arrays(3, size=64, seed=0, start=synthetic.VAL_OFFSET)
    images = images.astype("float32")
    logits = model.predict(images, verbose=0)
    flipped = model.predict(images[:, :, ::-1], verbose=0)[:, :, ::-1]
    preds = np.argmax(_softmax(logits) + _softmax(flipped), axis=-1)
    expected = _numpy_metrics(masks.astype(int), preds, 4, 255)
    assert len(np.unique(preds)) > 1  # a meaningful comparison
    _assert_same(results, expected)


def test_evaluate_model_resizes_logits_to_full_resolution_labels():
    model = _model_with_varied_output()
    images, masks = synthetic.shapes_arrays(2, size=48, seed=0)
    small = tf.image.resize(images.astype("float32"), (32, 32), antialias=True).numpy()
    dataset = tf.data.Dataset.from_tensor_slices((small, masks.astype("int32"))).batch(1)
    results = train.evaluate_model(model, dataset, num_classes=4, ignore_label=255, verbose=0)
    logits = model.predict(small, verbose=0)
    preds = np.argmax(tf.image.resize(logits, (48, 48), method="bilinear").numpy(), axis=-1)
    _assert_same(results, _numpy_metrics(masks.astype(int), preds, 4, 255))
    assert results["num_images"] == 2
    text = train.format_results(results, synthetic.SHAPES_CLASSES)
    assert "triangle" in text and "mean IU" in text
