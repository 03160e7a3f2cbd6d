"""runtime.with_precision refuses to train narrow convolutions over many channels in bf16 on
an AMX CPU under TensorFlow: oneDNN's AMX kernels aborted the process there (docs/speed.md)."""

import keras
import pytest

from keras_fcn import runtime
from keras_fcn.models import build_fcn

AMX = {"model": "Intel(R) Xeon(R) Processor", "vendor": "GenuineIntel",
       "isa": ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"), "gpu": False}
ZEN5 = {**AMX, "model": "AMD EPYC", "isa": ("avx2", "avx512f", "avx512_bf16")}


def _model(num_classes=11, fc_units=2049):
    return build_fcn("8s", num_classes, weights=None, widths=(4, 4, 8, 8, 8), fc_units=fc_units)


def test_narrow_bf16_convolutions_over_many_channels_are_refused_on_amx():
    with pytest.raises(ValueError, match=r"On this CPU \(Intel\(R\) Xeon\(R\) Processor\) "
                                         r"oneDNN's bfloat16 training kernels abort the process"
                                         r".* these would train in bfloat16: score_fr \(11\)\. "
                                         r"Keep them float32"):
        runtime.with_precision(_model(), "bfloat16", info=AMX, keep_float32=())
    # The default keeps the score layers float32; 16 classes or an fc7 of 2048 channels (the
    # measured bound: benchmarks/results/bf16_train_crash_xeon.md) are fine.
    copy = runtime.with_precision(_model(), "bfloat16", info=AMX)
    assert copy.get_layer("fc7").compute_dtype == "bfloat16"
    assert copy.get_layer("score_fr").compute_dtype == "float32"
    runtime.with_precision(_model(16), "bfloat16", info=AMX, keep_float32=())
    runtime.with_precision(_model(fc_units=2048), "bfloat16", info=AMX, keep_float32=())


def test_the_guard_leaves_other_cpus_inference_and_float32_alone():
    model = _model()
    assert runtime.with_precision(model, "bfloat16", info=ZEN5, keep_float32=()) is not model
    copy = runtime.with_precision(model, "bfloat16", info=AMX, keep_float32=(), inference=True)
    assert copy.get_layer("score_fr").compute_dtype == "bfloat16"
    assert runtime.with_precision(model, "float32", info=AMX) is model
    keras.config.set_dtype_policy("float32")
