"""A guard for bfloat16 training on CPUs with AMX (``runtime.with_precision`` calls it).

Example:
    check_amx_bf16_training(bf16_training_copy, runtime.cpu_info())  # ValueError or None
"""

import keras

from keras_fcn import _tf

# oneDNN's AMX bf16 training kernels (TF 2.21) corrupt the heap for convolutions with fewer
# than 16 output channels over more than 2048 input channels: on an Intel Xeon with AMX one
# such convolution (1x1 or 3x3, 2 to 15 outputs, 2049 to 4096 inputs) aborted within 6 steps
# and 2048 inputs or 16+ outputs ran clean; in the full-width FCN-8s only score_fr (fc7's
# 4096 channels to 11 classes) must stay float32 (benchmarks/results/bf16_train_crash_xeon.md).
AMX_MIN_BF16_FILTERS = 16
AMX_MAX_NARROW_INPUTS = 2048


def check_amx_bf16_training(model, info):
    """Raises a ValueError (instead of a process abort mid-training) when ``model`` would
    train convolutions with fewer than ``AMX_MIN_BF16_FILTERS`` output channels over more
    than ``AMX_MAX_NARROW_INPUTS`` input channels in bfloat16 on the TensorFlow backend on a
    CPU with AMX."""
    if _tf.backend() != "tensorflow":
        return
    if info.get("gpu") or "amx_bf16" not in info.get("isa", ()):
        return
    narrow = [f"{layer.name} ({layer.filters})" for layer in _all_layers(model)
              if isinstance(layer, keras.layers.Conv2D) and layer.compute_dtype == "bfloat16"
              and layer.filters < AMX_MIN_BF16_FILTERS
              and layer.kernel.shape[-2] > AMX_MAX_NARROW_INPUTS]
    if narrow:
        raise ValueError(
            f"On this CPU ({info.get('model', 'AMX')}) oneDNN's bfloat16 training kernels "
            f"abort the process (heap corruption) for convolutions with fewer than "
            f"{AMX_MIN_BF16_FILTERS} output channels over more than {AMX_MAX_NARROW_INPUTS} "
            f"input channels, and these would train in bfloat16: "
            f"{', '.join(narrow[:5])}{' ...' if len(narrow) > 5 else ''}. Keep them float32 "
            "(keep_float32=runtime.HEAD_LAYERS, the default, or their names), train in "
            "float32, or set ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 before starting Python "
            "(docs/speed.md).")


def _all_layers(model):
    """The layers of ``model`` and of the models nested in it (``models.all_layers``, which
    runtime, below the models in the import contract, cannot import)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
