"""Label maps of every integer dtype give the int32 labels' loss; wide values are named."""

import numpy as np
import pytest

from keras_fcn.losses import sparse_categorical_crossentropy_ignore


def _case():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 4, 5, 3)).astype("float32")
    labels = rng.integers(0, 3, (1, 4, 5))
    labels[0, 0, 0] = 255  # void
    return labels, logits


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "int8", "int64"])
def test_every_integer_dtype_gives_the_int32_loss(dtype):
    labels, logits = _case()
    if dtype == "int8":
        labels[0, 0, 0] = 100  # a void label int8 can hold
        expected = float(sparse_categorical_crossentropy_ignore(
            labels.astype("int32"), logits, num_classes=3, ignore_label=100))
        got = float(sparse_categorical_crossentropy_ignore(
            labels.astype(dtype), logits, num_classes=3, ignore_label=100))
    else:  # uint32 was clipped to [INT32.min (wrapped), ...]: "Received a label value: -2**31"
        expected = float(sparse_categorical_crossentropy_ignore(
            labels.astype("int32"), logits, num_classes=3))
        got = float(sparse_categorical_crossentropy_ignore(labels.astype(dtype), logits,
                                                           num_classes=3))
    assert np.isfinite(expected) and got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_labels_past_int32_are_named(dtype):
    labels, logits = _case()
    labels = labels.astype(dtype)
    labels[0, 1, 1] = 2**32 + 1  # on JAX (no x64) this became class 1 before the check
    with pytest.raises(ValueError, match="within the int32 range. Received a label value: "
                                         "4294967297"):
        sparse_categorical_crossentropy_ignore(labels, logits, num_classes=3)
