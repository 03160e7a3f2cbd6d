"""Tests of keras_fcn.runtime: CPU description, precision, policies, the fast path, and
bfloat16 training of tiny FCNs (which must work on every CPU, AMX or not)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fcn import losses, runtime
from keras_fcn.models import build_fcn
from tiny import TINY_FC, TINY_WIDTHS, randomize_scores, tiny_fcn

XEON_AMX = {"model": "Intel(R) Xeon(R) Platinum 8481C", "vendor": "GenuineIntel", "gpu": False,
            "isa": ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")}
EPYC_ZEN5 = {"model": "AMD EPYC", "vendor": "AuthenticAMD", "gpu": False,
             "isa": ("avx2", "avx512f", "avx512_bf16")}
EPYC_AVX2 = {"model": "AMD EPYC 7B12", "vendor": "AuthenticAMD", "gpu": False, "isa": ("avx2",)}
OLD_CPU = {"model": "x86", "vendor": "unknown", "gpu": False, "isa": ()}
WITH_GPU = dict(EPYC_AVX2, gpu=True)


@pytest.mark.parametrize("info, expected", [
    (XEON_AMX, "bfloat16"), (EPYC_ZEN5, "bfloat16"), (EPYC_AVX2, "float32"),
    (OLD_CPU, "float32"), (WITH_GPU, "float16")])
def test_auto_precision_follows_the_device(info, expected):
    assert runtime.resolve_precision("auto", info=info) == expected


def test_auto_precision_keeps_depthwise_models_float32_on_a_cpu():
    """MobileNetV2's bf16 was slower and agreed less on the Zen 5 (bf16_agreement.md)."""
    mobilenet = build_fcn("8s", num_classes=3, weights=None, backbone="mobilenet_v2")
    vgg = tiny_fcn()
    assert runtime.resolve_precision("auto", info=EPYC_ZEN5, model=mobilenet) == "float32"
    assert runtime.resolve_precision("auto", info=EPYC_ZEN5, model=vgg) == "bfloat16"
    assert runtime.resolve_precision("auto", info=WITH_GPU, model=mobilenet) == "float16"
    assert runtime.resolve_precision("bfloat16", info=EPYC_ZEN5, model=mobilenet) == "bfloat16"


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_explicit_precision_is_kept_on_any_device(precision):
    for info in (XEON_AMX, EPYC_AVX2, WITH_GPU):
        assert runtime.resolve_precision(precision, info=info) == precision


def test_mixed_precision_flag_is_the_mixed_precision_of_the_device():
    assert runtime.resolve_precision(mixed_precision=True, info=EPYC_AVX2) == "bfloat16"
    assert runtime.resolve_precision(mixed_precision=True, info=OLD_CPU) == "bfloat16"
    assert runtime.resolve_precision(mixed_precision=True, info=WITH_GPU) == "float16"
    assert runtime.resolve_precision("auto", mixed_precision=True, info=WITH_GPU) == "float16"
    assert runtime.resolve_precision("bfloat16", mixed_precision=True, info=WITH_GPU) == "bfloat16"


@pytest.mark.parametrize("bad", ["fp32", "bf16", "", None, True, 16])
def test_bad_precision_is_named_in_the_error(bad):
    with pytest.raises(ValueError, match=f"precision={bad!r}"):
        runtime.resolve_precision(bad, info=EPYC_AVX2)


def test_policy_names():
    assert [runtime.policy_name(p, EPYC_AVX2) for p in ("float32", "bfloat16", "float16", "auto")] \
        == ["float32", "mixed_bfloat16", "mixed_float16", "float32"]


def test_cpu_info_reads_model_and_isa_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon X\n"
                    "flags\t\t: fpu avx2 avx512f amx_tile amx_bf16 avx512_bf16\n\n"
                    "processor\t: 1\nmodel name\t: Xeon X\nflags\t\t: fpu\n")
    info = runtime.cpu_info(str(path), gpu=False)
    assert info == {"model": "Xeon X", "vendor": "GenuineIntel", "gpu": False,
                    "gpu_capability": None,
                    "isa": ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}
    assert runtime.describe(info) == "Xeon X (avx2 avx512f avx512_bf16 amx_bf16 amx_tile), no GPU"


def test_cpu_info_without_cpuinfo_file_falls_back(tmp_path):
    info = runtime.cpu_info(str(tmp_path / "missing"), gpu=True)
    assert info["isa"] == () and info["gpu"] is True and info["model"]
    assert runtime.resolve_precision("auto", info=info) == "float16"


def test_cpu_info_of_this_machine_sees_no_gpu():
    info = runtime.cpu_info()
    assert info["gpu"] is False and info["gpu_capability"] is None  # conftest hides GPUs
    assert set(info["isa"]) <= set(runtime.ISA_FLAGS)


@pytest.mark.parametrize("precision, info, matmul", [
    ("float32", XEON_AMX, True), ("float32", EPYC_AVX2, True), ("float32", EPYC_ZEN5, True),
    ("bfloat16", XEON_AMX, True), ("auto", EPYC_ZEN5, True), ("auto", EPYC_AVX2, True),
    ("float32", WITH_GPU, False), ("float16", WITH_GPU, False)])
def test_fast_path_rule(precision, info, matmul):
    """No XLA anywhere by default; fc6 as a matmul on CPUs (benchmarks/results/roofline.md)."""
    path = runtime.fast_path(precision, info, environ={})
    assert path["jit_compile"] is False and path["conv_matmul"] is matmul
    assert path["precision"] == runtime.resolve_precision(precision, info=info)


def test_fast_path_overrides_argument_then_environment():
    assert runtime.fast_path("float32", EPYC_AVX2, environ={"KERAS_FCN_JIT": "1"}) == {
        "precision": "float32", "jit_compile": True, "conv_matmul": True,
        "reason": "KERAS_FCN_JIT; CPU: oneDNN graph, large kernels as matmul"}
    assert runtime.fast_path("bfloat16", XEON_AMX, environ={"KERAS_FCN_CONV_MATMUL": "off"})[
        "conv_matmul"] is False
    forced = runtime.fast_path("float32", EPYC_AVX2, jit_compile=False, conv_matmul=False,
                               environ={"KERAS_FCN_JIT": "1", "KERAS_FCN_CONV_MATMUL": "1"})
    assert forced == {"precision": "float32", "jit_compile": False, "conv_matmul": False,
                      "reason": "jit_compile argument; conv_matmul argument"}
    with pytest.raises(ValueError, match="KERAS_FCN_JIT='maybe'"):
        runtime.fast_path("float32", EPYC_AVX2, environ={"KERAS_FCN_JIT": "maybe"})
    with pytest.raises(ValueError, match="KERAS_FCN_CONV_MATMUL='2'"):
        runtime.fast_path("float32", EPYC_AVX2, environ={"KERAS_FCN_CONV_MATMUL": "2"})


def _spread(kernel, dilation):
    """``kernel`` (kh, kw, in, out) with ``dilation - 1`` zero rows and columns between its
    taps: the dense kernel of the dilated convolution (differentiable in ``kernel``)."""
    kh, kw, cin, cout = kernel.shape
    taps = [[i * dilation, j * dilation] for i in range(kh) for j in range(kw)]
    return tf.scatter_nd(taps, tf.reshape(kernel, (kh * kw, cin, cout)),
                         ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1, cin, cout))


@pytest.mark.parametrize("kernel, strides, padding, dilation", [
    (7, 1, "valid", 1), (5, 1, "same", 1), (3, 2, "same", 1), (3, 1, "valid", 2),
    ((2, 4), (2, 1), "valid", 1)])
def test_conv_as_matmul_equals_conv2d_and_its_gradient(kernel, strides, padding, dilation):
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    strides = (strides, strides) if isinstance(strides, int) else strides
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 13, 11, 5)), tf.float32)
    k = tf.constant(rng.normal(size=(*kernel, 5, 6)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, k])
        # a dilated kernel is the kernel spread out with zeros: TensorFlow's CPU kernels
        # without oneDNN (the AMD EPYC's AVX2) have no gradient of a dilated Conv2D
        expected = tf.nn.conv2d(x, _spread(k, dilation), [1, *strides, 1], padding.upper())
        got = runtime.conv_as_matmul(x, k, strides, padding, (dilation, dilation))
        weights = tf.constant(rng.normal(size=expected.shape), tf.float32)
        loss_expected, loss_got = (tf.reduce_sum(expected * weights),
                                   tf.reduce_sum(got * weights))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    for wrt in (x, k):
        np.testing.assert_allclose(tape.gradient(loss_got, wrt),
                                   tape.gradient(loss_expected, wrt), rtol=1e-5, atol=1e-4)


def test_inference_copy_stores_bf16_weights_and_gives_the_mixed_copy_results():
    model = tiny_fcn("8s", num_classes=3)
    randomize_scores(model, seed=0, scale=0.1)
    mixed = runtime.with_precision(model, "bfloat16")
    pure = runtime.with_precision(model, "bfloat16", inference=True)
    assert mixed.get_layer("fc6").kernel.dtype == "float32"
    assert pure.get_layer("fc6").kernel.dtype == "bfloat16"
    assert pure.get_layer("score_fr").kernel.dtype == "float32"  # the head stays float32
    assert runtime.model_precision(pure) == "bfloat16" and pure.output.dtype == "float32"
    images = _images((1, 64, 64, 3), seed=2)
    # casting once or at every call rounds alike: the same numbers
    np.testing.assert_array_equal(pure(images, training=False), mixed(images, training=False))
    mobilenet = runtime.with_precision(_build("mobilenet_v2"), "bfloat16", inference=True)
    norms = [layer for layer in runtime.leaf_layers(mobilenet)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.moving_variance.dtype == "float32" for layer in norms)
    assert mobilenet.get_layer("score_fr").kernel.dtype == "float32"


def _traced_ops(fn, *args):
    return {op.type for op in fn.get_concrete_function(*args).graph.get_operations()}


def test_convolutions_as_matmul_changes_only_large_kernels_while_tracing():
    model = tiny_fcn("8s", num_classes=3)
    randomize_scores(model, seed=0, scale=0.1)
    images = tf.constant(np.random.default_rng(1).uniform(-100, 100, (1, 64, 64, 3)),
                         tf.float32)
    assert [layer.name for layer in runtime.matmul_candidates(model)] == ["fc6"]
    plain = tf.function(lambda x: model(x, training=False))
    with runtime.convolutions_as_matmul(model) as changed:
        assert [layer.name for layer in changed] == ["fc6"]
        fast = tf.function(lambda x: model(x, training=False))
        fast_ops = _traced_ops(fast, images)
    assert "ExtractImagePatches" in fast_ops  # kept by the function traced in the block
    assert "ExtractImagePatches" not in _traced_ops(plain, images)
    assert "convolution_op" not in vars(model.get_layer("fc6"))  # the model is restored
    expected = plain(images).numpy()
    np.testing.assert_allclose(fast(images).numpy(), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    with runtime.convolutions_as_matmul(model, enabled=False) as changed:
        assert changed == []


def test_forward_fn_runs_fc6_as_matmul_on_a_cpu_unless_overridden(monkeypatch):
    from keras_fcn.inference.forward import forward_fn

    model = tiny_fcn("8s", num_classes=3)
    randomize_scores(model, seed=0, scale=0.1)
    images = tf.zeros((1, 64, 64, 3))
    fast = forward_fn(model, output="logits")
    plain = forward_fn(model, output="logits", conv_matmul=False)
    assert "ExtractImagePatches" in _traced_ops(fast, images)
    assert "ExtractImagePatches" not in _traced_ops(plain, images)
    np.testing.assert_allclose(fast(images), plain(images), rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("KERAS_FCN_CONV_MATMUL", "0")
    assert "ExtractImagePatches" not in _traced_ops(forward_fn(model, output="softmax"),
                                                    images)


def test_precision_scope_sets_and_restores_the_global_policy():
    keras.config.set_dtype_policy("float32")
    with runtime.precision_scope("bfloat16") as name:
        assert name == "mixed_bfloat16"
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError), runtime.precision_scope("float16"):
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("backbone", ["vgg16", "mobilenet_v2"])
def test_models_built_in_bfloat16_keep_float32_logits(backbone):
    kwargs = {} if backbone == "mobilenet_v2" else {"widths": TINY_WIDTHS, "fc_units": TINY_FC}
    with runtime.precision_scope("bfloat16"):
        model = build_fcn("8s", num_classes=3, weights=None, backbone=backbone, **kwargs)
    assert model.get_layer("score_fr").compute_dtype == "bfloat16"
    assert model.get_layer("score").dtype_policy.name == "float32"
    assert model.output.dtype == "float32"
    assert runtime.model_precision(model) == "bfloat16"


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(-100, 100, shape).astype("float32")


def test_with_precision_copies_weights_and_agrees_with_float32():
    model = tiny_fcn("8s", num_classes=5)
    fast = runtime.with_precision(model, "bfloat16")
    assert fast is not model and runtime.model_precision(model) == "float32"
    assert runtime.model_precision(fast) == "bfloat16"
    assert fast.get_layer("fc6").compute_dtype == "bfloat16"
    for name in ("score_fr", "upscore2", "fuse_pool4", "upscore8", "score"):  # the head
        assert fast.get_layer(name).compute_dtype == "float32", name
    bare = runtime.with_precision(model, "bfloat16", keep_float32=())
    assert bare.get_layer("score_fr").compute_dtype == "bfloat16"
    assert bare.get_layer("score").compute_dtype == "float32"
    for a, b in zip(model.weights, fast.weights):
        assert a.dtype == b.dtype == "float32"
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    images = _images((2, 48, 64, 3))
    exact, approx = model(images).numpy(), fast(images)
    assert approx.dtype == "float32"
    agreement = np.mean(exact.argmax(-1) == approx.numpy().argmax(-1))
    assert agreement > 0.95, agreement
    assert runtime.with_precision(fast, "bfloat16") is fast
    back = runtime.with_precision(fast, "float32")
    np.testing.assert_allclose(back(images).numpy(), exact, rtol=1e-5, atol=1e-4)


def test_with_precision_converts_nested_models():
    inner = tiny_fcn("8s", num_classes=3)
    inputs = keras.Input((None, None, 3))
    outer = keras.Model(inputs, inner(inputs))
    fast = runtime.with_precision(outer, "bfloat16")
    assert runtime.model_precision(fast) == "bfloat16"
    assert fast(_images((1, 40, 40, 3))).dtype == "float32"


def test_float16_copy_gets_loss_scaling_when_compiled():
    fast = runtime.with_precision(tiny_fcn("8s"), "float16")
    assert keras.config.dtype_policy().name == "float32"
    fast.compile(optimizer="sgd", loss="mse")
    assert isinstance(fast.optimizer, keras.optimizers.LossScaleOptimizer)


def _train_losses(model, steps, jit_compile, conv_matmul=False):
    """Loss per step of Adam on one fixed batch, the keras_fcn loss, ``model.fit`` (with
    fc6 as a matmul when ``conv_matmul``, as keras_fcn.training.fit runs it on a CPU)."""
    images = _images((2, 64, 64, 3), seed=1) / 100.0
    labels = (images[..., :1] > 0).astype("int32") + (images[..., 1:2] > 0.5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile,
                  loss=losses.SparseCategoricalCrossentropyIgnore(num_classes=3))
    with runtime.convolutions_as_matmul(model, conv_matmul):
        history = model.fit(tf.data.Dataset.from_tensors((images, labels)).repeat(steps),
                            epochs=1, verbose=0, shuffle=False, callbacks=[_StepLosses()])
    return history.model.step_losses


class _StepLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.model.step_losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.model.step_losses.append(float(logs["loss"]))


def _build(backbone):
    if backbone == "vgg16":
        return tiny_fcn("8s", num_classes=3, widths=(8, 8, 16, 16, 16), fc_units=16)
    return build_fcn("8s", num_classes=3, weights=None, backbone=backbone, dropout=0.0,
                     input_shape=(64, 64, 3))


@pytest.mark.parametrize("backbone, how, jit_compile", [
    ("vgg16", "scope", False), ("vgg16", "with_precision", False),
    ("vgg16", "with_precision_matmul", False),
    pytest.param("mobilenet_v2", "with_precision", False, marks=pytest.mark.slow)])  # ~30 s
def test_bfloat16_training_runs_with_a_finite_falling_loss(backbone, how, jit_compile):
    if how == "scope":  # everything but the final crop in bf16
        with runtime.precision_scope("bfloat16"):
            model = _build(backbone)
    else:  # the head kept float32 (the crash workaround)
        model = runtime.with_precision(_build(backbone), "bfloat16")
    step_losses = _train_losses(model, steps=8, jit_compile=jit_compile,
                                conv_matmul=how.endswith("matmul"))
    assert runtime.model_precision(model) == "bfloat16"
    assert model.output.dtype == "float32"
    assert np.all(np.isfinite(step_losses)), step_losses
    # Keras reports the running mean over the epoch: it falls when the step losses fall.
    assert step_losses[-1] < step_losses[0], step_losses


@pytest.mark.parametrize("capability, tensorflow, expected", [
    ((9, 0), False, "bfloat16"),   # H100/H200
    ((8, 0), False, "bfloat16"),   # A100: the first with bfloat16 tensor cores
    ((7, 5), False, "float16"),    # T4 (Turing): bfloat16 would run without tensor cores
    ((7, 0), False, "float16"),    # V100
    (None, False, "bfloat16"),     # unknown (ROCm, an old JAX): as before
    ((9, 0), True, "float16"),     # TensorFlow's GPU path keeps float16
])
def test_auto_precision_on_a_gpu_follows_its_compute_capability(monkeypatch, capability,
                                                               tensorflow, expected):
    monkeypatch.setattr(runtime._tf, "on_tensorflow", lambda: tensorflow)
    info = {"model": "x", "vendor": "x", "isa": (), "gpu": True, "gpu_capability": capability}
    assert runtime.resolve_precision("auto", info=info) == expected
    # an explicit precision is kept whatever the GPU
    assert runtime.resolve_precision("bfloat16", info=info) == "bfloat16"


@pytest.mark.parametrize("value, expected", [
    ("9.0", (9, 0)), ("8.6", (8, 6)), ((7, 5), (7, 5)), ({"compute_capability": (8, 0)}, (8, 0)),
    ("gfx90a", None), (None, None), ({}, None), ("9", None)])
def test_gpu_capability_parsing(value, expected):
    from keras_fcn import _devices
    assert _devices._parse_capability(value) == expected


def test_cpu_info_asks_the_capability_only_when_it_finds_a_gpu(monkeypatch):
    from keras_fcn import _devices
    monkeypatch.setattr(_devices, "has_gpu", lambda: True)
    monkeypatch.setattr(_devices, "gpu_capability", lambda: (7, 0))
    info = runtime.cpu_info()
    assert info["gpu"] is True and info["gpu_capability"] == (7, 0)
    assert runtime.resolve_precision("auto", info=info) == "float16"
    assert runtime.cpu_info(gpu=True)["gpu_capability"] is None  # told, not asked


def test_gpu_capability_reads_the_jax_and_torch_devices(monkeypatch):
    import types

    import jax
    import torch

    from keras_fcn import _devices
    cpu = types.SimpleNamespace(platform="cpu")
    gpu = types.SimpleNamespace(platform="gpu", compute_capability="7.5")
    monkeypatch.setattr(_devices._tf, "backend", lambda: "jax")
    monkeypatch.setattr(jax, "devices", lambda: [cpu, gpu])
    assert _devices.has_gpu() and _devices.gpu_capability() == (7, 5)
    monkeypatch.setattr(jax, "devices", lambda: [cpu])
    assert _devices.gpu_capability() is None
    monkeypatch.setattr(_devices._tf, "backend", lambda: "torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert _devices.gpu_capability() == (9, 0)
