"""Flip TTA of a model with a dict input (RGB-HHA late fusion): each stream is mirrored."""

import numpy as np
from keras import ops

from keras_fcn.inference.forward import forward_fn
from keras_fcn.models import multimodal as mm
from keras_fcn.training.evaluation import evaluate_model
from tiny import TINY_FC, TINY_WIDTHS


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _fusion_model():
    model = mm.build_late_fusion_fcn("32s", 3, None, None, dropout=0.0, widths=TINY_WIDTHS,
                                     fc_units=TINY_FC)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def test_flip_mirrors_every_input_of_a_dict():
    model = _fusion_model()
    rng = np.random.default_rng(1)
    names = [t.name for t in model.inputs]
    inputs = {name: rng.uniform(-50, 50, (2, 40, 48, 3)).astype("float32") for name in names}
    plain = _softmax(ops.convert_to_numpy(model(inputs)))
    mirrored = _softmax(ops.convert_to_numpy(
        model({k: v[:, :, ::-1].copy() for k, v in inputs.items()})))
    expected = (plain + mirrored[:, :, ::-1]) / 2
    assert np.abs(mirrored[:, :, ::-1] - plain).max() > 1e-3  # the flip changes the scores
    for jit in (False, True):
        got = ops.convert_to_numpy(forward_fn(model, flip=True, jit_compile=jit)(inputs))
        np.testing.assert_allclose(got, expected, atol=1e-5)

    labels = expected.argmax(-1)
    batches = [(inputs, labels)]  # a list of batches: what evaluate_model iterates
    metrics = evaluate_model(model, batches, num_classes=3, ignore_label=255, flip=True,
                             verbose=0)
    assert metrics["pixel_accuracy"] == 1.0
