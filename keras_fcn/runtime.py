"""Execution settings in one place: the CPU, the precision, and the fast float32 path.

Three questions every entry point (predict, evaluate, training, the CLIs) asks:

- *What runs this?* :func:`cpu_info` reads the CPU model and the ISA flags that decide speed
  (AVX2, AVX-512, AVX512-BF16, AMX, AVX512-FP16) and whether a GPU is visible.
- *In which precision?* :func:`resolve_precision` turns ``"float32"``, ``"bfloat16"``,
  ``"float16"`` or ``"auto"`` (and the old ``mixed_precision=True`` flag) into a precision;
  :func:`precision_scope` builds models under the matching Keras mixed-precision policy, and
  :func:`with_precision` converts a model that is already built (e.g. loaded from a file).
  The logits stay float32 in every precision, so the loss, softmax and argmax do too.
- *Which execution path?* :func:`fast_path` says whether to compile with XLA
  (``jit_compile``) and whether to run large-kernel convolutions (``fc6``: 7x7 over 512
  channels) as one matrix multiply (``conv_matmul``, :func:`convolutions_as_matmul`), from
  measurements on three CPU kinds (see docs/speed.md). A user overrides them with the
  ``jit_compile`` / ``conv_matmul`` arguments or the ``KERAS_FCN_JIT=0/1`` and
  ``KERAS_FCN_CONV_MATMUL=0/1`` environment variables.

Example:
    >>> from keras_fcn import runtime
    >>> precision = runtime.resolve_precision("auto")  # "bfloat16" on a CPU with AMX

    with runtime.precision_scope(precision):
        model = build_fcn8s(num_classes=21)
    step = tf.function(train_step, jit_compile=runtime.fast_path(precision)["jit_compile"])
"""

import contextlib
import functools
import os

import keras
import numpy as np

from keras_fcn import _tf
from keras_fcn._amx import check_amx_bf16_training
from keras_fcn._devices import (  # noqa: F401 (public here: runtime.cpu_info, ...)
    ISA_FLAGS, cpu_info, describe, gpu_capability, has_gpu)

PRECISIONS = ("float32", "bfloat16", "float16", "auto")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPUs with native bfloat16 dot products
BF16_GPU_CAPABILITY = (8, 0)  # CUDA GPUs with bfloat16 tensor cores (Ampere and newer)
JIT_ENV = "KERAS_FCN_JIT"
CONV_MATMUL_ENV = "KERAS_FCN_CONV_MATMUL"
# Convolutions with at least this many kernel taps (5x5) run as one matrix multiply under
# `convolutions_as_matmul`: oneDNN runs the VGG16 fc6 (7x7) far below the CPU's matmul rate and
# its 3x3 convolutions close to it (docs/speed.md, benchmarks/results/roofline.md).
MATMUL_MIN_TAPS = 25
# The FCN head after fc7 (score layers, bilinear upsampling, crops, fusion; the final 1x1
# convolutions of the ResNet FCNHeads): kept float32 by with_precision. It costs little
# (num_classes channels), its bf16 convolutions over many channels with few outputs (11 for
# CamVid) abort training on AMX CPUs (keras_fcn/_amx.py), and the logits gain precision.
HEAD_LAYERS = ("score", "upscore", "fuse_", "classifier_4", "aux_classifier_4")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _check_switch(name, value):
    """``value`` unless it is something other than True, False or None: a string such as
    ``"false"`` or ``"0"`` is truthy and would silently turn the option on."""
    if not (value is None or isinstance(value, (bool, np.bool_))
            or (isinstance(value, (int, np.integer)) and value in (0, 1))):
        raise ValueError(f"`{name}` must be True, False or None. Received: {name}={value!r}")
    return value


def _check_precision(precision):
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"Unknown precision. Expected one of {PRECISIONS}. Received: precision={precision!r}")


def resolve_precision(precision="float32", *, mixed_precision=False, info=None, model=None):
    """Turns a precision request into ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    ``"auto"`` on a GPU is bfloat16 under JAX and PyTorch when the GPU computes in bfloat16
    (CUDA compute capability 8.0 or newer: Ampere, Hopper, ...; also when the capability is
    unknown), float16 on older GPUs (Volta, Turing: no bfloat16 tensor cores; Keras scales
    the loss) and under TensorFlow. On a CPU it is bfloat16 with AMX or AVX512-BF16 (whatever
    the vendor), float32 elsewhere, and float32 on a CPU for a ``model`` with depthwise
    convolutions (MobileNetV2: bf16 was slower there and agreed less with float32, see
    docs/speed.md). ``mixed_precision=True`` (the old flag, kept as an alias)
    asks for the mixed precision of the device (a GPU's as ``"auto"`` picks it, bfloat16 on a
    CPU); it
    turns a ``"float32"`` or ``"auto"`` request into that and leaves an explicit
    ``"bfloat16"``/``"float16"`` as it is.

    Args:
        precision: one of ``PRECISIONS``.
        mixed_precision: the old boolean flag.
        info: a :func:`cpu_info` dict; read from this machine when None and needed.
        model: the model to run, if known (see ``"auto"``).

    Returns:
        ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    Example:
        >>> resolve_precision("auto", info={"isa": ("avx2",), "gpu": False})
        'float32'
        >>> resolve_precision(mixed_precision=True, info={"isa": (), "gpu": False})
        'bfloat16'
    """
    _check_precision(precision)
    _check_switch("mixed_precision", mixed_precision)
    if precision in ("bfloat16", "float16") or (precision == "float32" and not mixed_precision):
        return precision
    info = cpu_info() if info is None else info
    if info["gpu"]:
        # bfloat16 needs no loss scaling, but only Ampere (8.0) and newer GPUs compute in it;
        # TensorFlow's GPU path kept float16.
        capability = info.get("gpu_capability")
        old_gpu = capability is not None and tuple(capability) < BF16_GPU_CAPABILITY
        return "float16" if _tf.on_tensorflow() or old_gpu else "bfloat16"
    if mixed_precision:
        return "bfloat16"
    if any(flag in info["isa"] for flag in BF16_FLAGS) and not (
            model is not None and has_depthwise(model)):
        return "bfloat16"
    return "float32"


def policy_name(precision, info=None):
    """The Keras dtype policy of a precision: ``"float32"``, ``"mixed_bfloat16"``, ...

    Example:
        >>> policy_name("bfloat16")
        'mixed_bfloat16'
    """
    return POLICIES[resolve_precision(precision, info=info)]


@contextlib.contextmanager
def precision_scope(precision, info=None):
    """Sets the Keras global dtype policy of ``precision`` while models are built.

    The previous global policy comes back on exit, also after an error. Variables stay
    float32 under the mixed policies; layers built with ``dtype="float32"`` (the final
    ``score`` crop of keras_fcn models) keep float32 outputs.

    Yields:
        The policy name.

    Example:
        >>> with precision_scope("bfloat16"):
        ...     model = keras_fcn.build_fcn("8s", num_classes=3, weights=None,
        ...                                 widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> model.get_layer("fc6").compute_dtype, model.output.dtype
        ('bfloat16', 'float32')
    """
    name = policy_name(precision, info)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)


def model_precision(model):
    """The precision a model computes in: the most common compute dtype of its weighted layers.

    Example:
        model_precision(build_fcn8s(weights=None))
    """
    counts = {}
    for layer in leaf_layers(model):
        if layer.weights:
            counts[layer.compute_dtype] = counts.get(layer.compute_dtype, 0) + 1
    dtype = max(counts, key=counts.get) if counts else "float32"
    return {"bfloat16": "bfloat16", "float16": "float16"}.get(dtype, "float32")


def model_weight_dtype(model):
    """The dtype most weighted layers of ``model`` store their weights in (normalization
    layers, float32 under every policy, left out): float32 for a model to train,
    ``"bfloat16"``/``"float16"`` for a `with_precision` ``inference=True`` copy."""
    counts = {}
    for layer in leaf_layers(model):
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
            dtype = layer.variable_dtype
            counts[dtype] = counts.get(dtype, 0) + 1
    dtype = max(counts, key=counts.get) if counts else "float32"
    return {"bfloat16": "bfloat16", "float16": "float16"}.get(dtype, "float32")


def leaf_layers(model):
    """The layers of ``model`` with nested models (a MobileNetV2 trunk) opened up."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def _clone_under(model, policy, keep_float32):
    """A copy of a functional ``model`` with every layer under ``policy`` but the outputs
    and the layers whose names start with one of ``keep_float32``."""
    outputs = set(model.output_names)

    def clone(layer):
        if isinstance(layer, keras.Model):
            return _clone_under(layer, policy, keep_float32)
        config = layer.get_config()
        keep = layer.name in outputs or layer.name.startswith(tuple(keep_float32))
        # Normalization statistics keep float32 variables (the mixed policy) in any case.
        normalization = isinstance(layer, keras.layers.BatchNormalization)
        config["dtype"] = ("float32" if keep
                           else POLICIES.get(policy, policy) if normalization else policy)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    # An FCN records its trunk and variant outside its layers: the copy keeps them.
    return model.copy_info_to(copy) if hasattr(model, "copy_info_to") else copy


def with_precision(model, precision, info=None, keep_float32=HEAD_LAYERS, inference=False):
    """Returns ``model`` computing in ``precision``, with the same weights.

    For a model built in float32, e.g. loaded from a file: the copy has every layer under
    the mixed policy of ``precision`` (float32 weights, cast at each call: what training
    needs) except the output layers and the FCN head (``keep_float32``), which stay float32,
    so the logits stay float32. With ``inference=True`` those layers store their weights in
    ``precision`` instead (policy ``"bfloat16"``/``"float16"``): the same results (the cast
    happens once, with the same rounding), half the memory, and no cast of fc6's 103M weights
    at every call (docs/speed.md). The model itself is
    returned when it already computes in that precision (for training: with float32
    weights; an ``inference=True`` copy asked for training is converted back). Works on
    functional models (keras_fcn models, nested ones too).

    Args:
        model: a functional ``keras.Model``.
        precision: one of ``PRECISIONS``.
        info: a :func:`cpu_info` dict for ``"auto"``.
        keep_float32: name prefixes of layers kept float32 (``()``: only the outputs; a
            string is one prefix).
        inference: weights stored in ``precision`` (not trainable in it: for prediction).

    Returns:
        A ``keras.Model``.

    Example:
        fast = with_precision(keras.models.load_model("fcn8s.keras"), "bfloat16")
        fast.get_layer("fc6").compute_dtype, fast.output.dtype
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"with_precision needs a functional keras.Model. Received: {model!r}")
    _check_switch("inference", inference)
    if isinstance(keep_float32, str):  # one prefix; tuple("score") would keep "s", "c"...
        keep_float32 = (keep_float32,)
    resolved = resolve_precision(precision, info=info, model=model)
    # A model to train needs float32 weights: an inference copy (bf16 weights) computes in
    # the right dtype but would train in bf16, losing small updates to rounding.
    if model_precision(model) == resolved and (inference
                                               or model_weight_dtype(model) == "float32"):
        return model
    if not hasattr(model, "output_names"):
        raise ValueError(f"with_precision needs a functional keras.Model. Received: {model!r}")
    # Under the global policy too, so that the copy's own policy is the mixed one (Keras then
    # adds loss scaling to a float16 model in `compile`).
    with precision_scope(resolved):
        policy = resolved if inference else POLICIES[resolved]
        copy = _clone_under(model, policy, keep_float32)
    if resolved == "bfloat16" and not inference:  # an abort in oneDNN, refused instead
        check_amx_bf16_training(copy, cpu_info() if info is None else info)
    copy.set_weights(model.get_weights())
    return copy


def env_switch(name, environ=None):
    """The user's 0/1 choice in the environment variable ``name``: True, False, or None when
    unset.

    Raises:
        ValueError: when the variable holds something other than 0/1/true/false/yes/no/on/off.

    Example:
        >>> env_switch(JIT_ENV, {JIT_ENV: "1"}), env_switch(JIT_ENV, {})
        (True, None)
    """
    value = (os.environ if environ is None else environ).get(name, "").strip().lower()
    if not value:
        return None
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ValueError(f"{name} must be 0 or 1 (or true/false). Received: {name}={value!r}")


def conv_as_matmul(inputs, kernel, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """A 2-D convolution (channels last, one group) computed as one matrix multiply.

    The input patches (``tf.image.extract_patches``, ordered kernel row, kernel column,
    channel like the kernel's rows) times the kernel reshaped to ``(kh * kw * cin, cout)``:
    the same sums as ``tf.nn.conv2d`` in another order (float32 round-off, ~1e-7 relative).
    The patch matrix holds ``kh * kw`` copies of the input: meant for convolutions with few
    output positions and many taps (``fc6``: 16x16 positions at 500x500).

    Args:
        inputs: ``(N, H, W, cin)``.
        kernel: ``(kh, kw, cin, cout)``.
        strides, dilation_rate: pairs of ints. padding: ``"valid"`` or ``"same"``.

    Returns:
        ``(N, H', W', cout)`` as ``tf.nn.conv2d`` gives (no bias, no activation).

    Example:
        x, k = tf.random.normal([1, 22, 22, 512]), tf.random.normal([7, 7, 512, 64])
        conv_as_matmul(x, k).shape
    """
    tf = _tf.require("conv_as_matmul")
    kernel_h, kernel_w, channels, filters = kernel.shape
    patches = tf.image.extract_patches(
        inputs, sizes=[1, kernel_h, kernel_w, 1], strides=[1, *strides, 1],
        rates=[1, *dilation_rate, 1], padding=padding.upper())
    flat = tf.reshape(patches, [-1, kernel_h * kernel_w * channels])
    outputs = tf.linalg.matmul(flat, tf.reshape(kernel, [-1, filters]))
    return tf.reshape(outputs, tf.concat([tf.shape(patches)[:3], [filters]], 0))


def matmul_candidates(model, min_taps=MATMUL_MIN_TAPS):
    """The plain ``Conv2D`` layers of ``model`` with at least ``min_taps`` kernel taps (one
    group, channels last): the ones :func:`convolutions_as_matmul` changes.

    Example:
        [layer.name for layer in matmul_candidates(build_fcn8s(weights=None))]
    """
    return [layer for layer in leaf_layers(model)
            if isinstance(layer, keras.layers.Conv2D) and layer.groups == 1
            and layer.data_format == "channels_last" and layer.padding in ("valid", "same")
            and layer.kernel_size[0] * layer.kernel_size[1] >= min_taps]


@contextlib.contextmanager
def convolutions_as_matmul(model, enabled=True):
    """Within the block, ``model``'s large-kernel convolutions run as one matrix multiply.

    Their ``convolution_op`` becomes :func:`conv_as_matmul` (bias and activation stay Keras'),
    for every call and every ``tf.function`` *traced* in the block: a function traced here
    keeps the matrix multiply after the block. The model itself is not changed (same layers,
    weights and saved file; TFLite export sees plain convolutions). Not thread-safe: do not
    call the model from another thread during the block.

    Args:
        model: a Keras model.
        enabled: False leaves the model alone (so callers can pass ``fast_path``'s choice).

    Example:
        with convolutions_as_matmul(model):
            forward = tf.function(model)
            forward(images)          # traced here: fc6 is a matmul in this function
    """
    _check_switch("enabled", enabled)
    # Only TensorFlow's CPU kernels (oneDNN) need it; elsewhere XLA or cuDNN run fc6 well.
    layers = matmul_candidates(model) if enabled and _tf.on_tensorflow() else []
    for layer in layers:
        layer.convolution_op = functools.partial(
            conv_as_matmul, strides=layer.strides, padding=layer.padding,
            dilation_rate=layer.dilation_rate)
    try:
        yield layers
    finally:
        for layer in layers:
            layer.__dict__.pop("convolution_op", None)


def has_depthwise(model):
    """True when ``model`` has depthwise convolutions (MobileNetV2), which XLA runs slowly."""
    return any(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in leaf_layers(model))


def fast_path(precision="float32", info=None, *, model=None, jit_compile=None,
              conv_matmul=None, environ=None):
    """The execution settings that run fastest for ``precision`` on this machine.

    The rule (measured on three CPU kinds, see docs/speed.md and
    benchmarks/results/roofline.md):

    - On a CPU, every precision: oneDNN's graph (no XLA) with the large-kernel convolutions
      as one matrix multiply (``conv_matmul``, :func:`convolutions_as_matmul`): oneDNN runs
      ``fc6`` (7x7, 512 -> 4096) far below its 3x3 rate, and as a matmul the forward and the
      train step beat both XLA and the plain graph; XLA also slows the depthwise MobileNetV2
      FCN and keeps bfloat16 from oneDNN's bf16 kernels. ``KERAS_FCN_JIT=1`` brings XLA back
      (the figures per CPU are in docs/speed.md).
    - On a GPU: no XLA and no matmul rewrite (cuDNN's kernels).
    - On the JAX backend: XLA (``jit_compile=True``: JAX has no other compiled path); on the
      PyTorch backend: eager (``torch.compile`` only when asked). No matmul rewrite on either
      (a TensorFlow-CPU cure: ``conv_matmul`` is always False there).

    Arguments win over the environment (``KERAS_FCN_JIT=0/1``, ``KERAS_FCN_CONV_MATMUL=0/1``),
    which wins over the rule.

    Args:
        precision: one of ``PRECISIONS``.
        info: a :func:`cpu_info` dict; read from this machine when None.
        model: the model to run, if known (resolves ``"auto"`` for depthwise models).
        jit_compile: True/False to force XLA, None for the rule.
        conv_matmul: True/False to force the matmul rewrite, None for the rule.
        environ: the environment to read the overrides from (``os.environ`` if None).

    Returns:
        ``{"precision": str, "jit_compile": bool, "conv_matmul": bool, "reason": str}``.

    Example:
        >>> fast_path("float32", {"isa": ("avx2",), "gpu": False})
        {'precision': 'float32', 'jit_compile': False, 'conv_matmul': True,
         'reason': '...CPU: oneDNN graph, large kernels as matmul'}
    """
    _check_switch("jit_compile", jit_compile)
    _check_switch("conv_matmul", conv_matmul)
    info = cpu_info() if info is None else info
    resolved = resolve_precision(precision, info=info, model=model)
    on_cpu = not info["gpu"]
    reasons = []

    def choose(argument, name, env, rule):
        """The argument, else the environment variable ``env``, else ``rule``."""
        if argument is not None:
            reasons.append(f"{name} argument")
            return bool(argument)
        override = env_switch(env, environ)
        if override is not None:
            reasons.append(env)
            return override
        return rule

    backend = _tf.backend()
    if backend != "tensorflow":
        # JAX runs compiled steps only through XLA; PyTorch runs eagerly (torch.compile is
        # the user's choice). The matmul rewrite is a TensorFlow-CPU cure.
        jit = choose(jit_compile, "jit_compile", JIT_ENV, backend == "jax")
        reasons.append(f"{backend} backend: {'XLA' if backend == 'jax' else 'eager'}")
        return {"precision": resolved, "jit_compile": jit, "conv_matmul": False,
                "reason": "; ".join(reasons)}
    jit = choose(jit_compile, "jit_compile", JIT_ENV, False)
    matmul = choose(conv_matmul, "conv_matmul", CONV_MATMUL_ENV, on_cpu)
    if len(reasons) < 2:  # the rule decided at least one of them
        reasons.append("CPU: oneDNN graph, large kernels as matmul" if on_cpu
                       else "GPU: TF kernels")
    return {"precision": resolved, "jit_compile": jit, "conv_matmul": matmul,
            "reason": "; ".join(reasons)}


def detach_weights(variables):
    """Gives each variable a buffer of its own, holding the same values.

    On JAX `variable.assign(other)` stores `other`'s array itself, so after
    `finalize_variable_values` a weight and its moving average in the optimizer share one
    buffer. Keras' JAX trainer donates the weights to its compiled steps (`evaluate`, `fit`,
    `predict` with `jit_compile`), which deletes that buffer: the optimizer's average was left
    holding a deleted array ("Array has been deleted" when the average is next read: the
    best checkpoint, the next epoch's step, saving the optimizer). TensorFlow and PyTorch copy
    on `assign`: nothing to do there. On JAX the copy is cheap next to a compiled step.

    Example:
        >>> weight = keras.Variable(np.zeros(2, "float32"))
        >>> detach_weights([weight])
    """
    if keras.backend.backend() != "jax":
        return
    for variable in variables:
        variable.assign(keras.ops.copy(variable.value))


def detach_averaged_weights(model):
    """`detach_weights` of ``model``'s trainable weights when its optimizer (under loss
    scaling, the one it wraps) keeps moving averages (``use_ema``): Keras' ``fit`` ends by
    assigning them to the weights (``finalize_variable_values``).

    Example:
        >>> detach_averaged_weights(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    """
    optimizer = getattr(model, "optimizer", None)
    if getattr(getattr(optimizer, "inner_optimizer", optimizer), "use_ema", False):
        detach_weights(model.trainable_weights)
