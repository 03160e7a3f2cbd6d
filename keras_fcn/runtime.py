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
  (``jit_compile``), from measurements on three CPU kinds (see docs/speed.md). A user
  overrides it with the ``jit_compile`` argument or the ``KERAS_FCN_JIT=0/1`` environment
  variable.

Example:
    >>> from keras_fcn import runtime
    >>> precision = runtime.resolve_precision("auto")  # "bfloat16" on a CPU with AMX
    >>> with runtime.precision_scope(precision):
    ...     model = build_fcn8s(num_classes=21)
    >>> step = tf.function(train_step, jit_compile=runtime.fast_path(precision)["jit_compile"])
"""

import contextlib
import functools
import os
import platform

import keras

PRECISIONS = ("float32", "bfloat16", "float16", "auto")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPUs with native bfloat16 dot products
JIT_ENV = "KERAS_FCN_JIT"
# The FCN head after fc7 (score layers, bilinear upsampling, crops, fusion): kept float32 by
# with_precision. It costs little (num_classes channels) and its bf16 convolutions have odd
# channel counts (11 for CamVid), the prime suspect of the bf16 training crash on AMX; the
# logits also gain precision.
HEAD_LAYERS = ("score", "upscore", "fuse_")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@functools.lru_cache(maxsize=None)
def _read_cpuinfo(path):
    """Returns (model name, vendor, set of flags) of the first processor in ``path``."""
    model = vendor = None
    flags = frozenset()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "vendor_id" and vendor is None:
                    vendor = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model, vendor, flags


def has_gpu():
    """Returns True when TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def cpu_info(path="/proc/cpuinfo", gpu=None):
    """Describes the processor: model name, vendor, speed-relevant ISA flags and GPU presence.

    Args:
        path: the Linux ``cpuinfo`` file; when it cannot be read, ``platform`` fills in the
            model and no ISA flag is reported.
        gpu: whether a GPU is present; None asks TensorFlow.

    Returns:
        A dict ``{"model": str, "vendor": str, "isa": tuple of the ISA_FLAGS present,
        "gpu": bool}``.

    Example:
        >>> cpu_info()
        {'model': 'AMD EPYC', 'vendor': 'AuthenticAMD',
         'isa': ('avx2', 'avx512f', 'avx512_bf16'), 'gpu': False}
    """
    model, vendor, flags = _read_cpuinfo(path)
    return {
        "model": model or platform.processor() or platform.machine(),
        "vendor": vendor or "unknown",
        "isa": tuple(flag for flag in ISA_FLAGS if flag in flags),
        "gpu": has_gpu() if gpu is None else bool(gpu),
    }


def describe(info):
    """One line for logs and benchmark tables: ``"AMD EPYC (avx2 avx512f), no GPU"``."""
    isa = " ".join(info["isa"]) or "no AVX2"
    return f"{info['model']} ({isa}), {'GPU' if info['gpu'] else 'no GPU'}"


def _check_precision(precision):
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"Unknown precision. Expected one of {PRECISIONS}. Received: precision={precision!r}")


def resolve_precision(precision="float32", *, mixed_precision=False, info=None, model=None):
    """Turns a precision request into ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    ``"auto"`` is float16 on a GPU, bfloat16 on CPUs with AMX or AVX512-BF16 (whatever the
    vendor), float32 elsewhere, and float32 on a CPU for a ``model`` with depthwise
    convolutions (MobileNetV2): measured on the AMD EPYC Zen 5, its bf16 forward and train step
    were slower than float32 and its label agreement lower (99.22%; VGG16: 99.83%,
    benchmarks/results/bf16_agreement.md). ``mixed_precision=True`` (the old flag, kept as an alias)
    asks for the mixed precision of the device: float16 on a GPU, bfloat16 on a CPU; it
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
    if precision in ("bfloat16", "float16") or (precision == "float32" and not mixed_precision):
        return precision
    info = cpu_info() if info is None else info
    if info["gpu"]:
        return "float16"
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
        ...     model = build_fcn8s(num_classes=21, weights=None)
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
        >>> model_precision(build_fcn8s(weights=None))
        'float32'
    """
    counts = {}
    for layer in _leaf_layers(model):
        if layer.weights:
            counts[layer.compute_dtype] = counts.get(layer.compute_dtype, 0) + 1
    dtype = max(counts, key=counts.get) if counts else "float32"
    return {"bfloat16": "bfloat16", "float16": "float16"}.get(dtype, "float32")


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
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
        config["dtype"] = "float32" if keep else policy
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def with_precision(model, precision, info=None, keep_float32=HEAD_LAYERS):
    """Returns ``model`` computing in ``precision``, with the same (float32) weights.

    For a model built in float32, e.g. loaded from a file: the copy has every layer under
    the mixed policy of ``precision`` except the output layers and the FCN head
    (``keep_float32``), which stay float32, so the logits stay float32. The model itself is
    returned when it already computes in that precision. Works on functional models
    (keras_fcn models, nested ones too).

    Args:
        model: a functional ``keras.Model``.
        precision: one of ``PRECISIONS``.
        info: a :func:`cpu_info` dict for ``"auto"``.
        keep_float32: name prefixes of layers kept float32 (``()``: only the outputs).

    Returns:
        A ``keras.Model``.

    Example:
        >>> fast = with_precision(keras.models.load_model("fcn8s.keras"), "bfloat16")
        >>> fast.get_layer("fc6").compute_dtype, fast.output.dtype
        ('bfloat16', 'float32')
    """
    resolved = resolve_precision(precision, info=info, model=model)
    if model_precision(model) == resolved:
        return model
    if not isinstance(model, keras.Model) or not hasattr(model, "output_names"):
        raise ValueError(f"with_precision needs a functional keras.Model. Received: {model!r}")
    # Under the global policy too, so that the copy's own policy is the mixed one (Keras then
    # adds loss scaling to a float16 model in `compile`).
    with precision_scope(resolved):
        copy = _clone_under(model, POLICIES[resolved], keep_float32)
    copy.set_weights(model.get_weights())
    return copy


def jit_override(environ=None):
    """The user's ``KERAS_FCN_JIT`` choice: True, False, or None when unset.

    Raises:
        ValueError: when the variable holds something other than 0/1/true/false/yes/no/on/off.
    """
    value = (os.environ if environ is None else environ).get(JIT_ENV, "").strip().lower()
    if not value:
        return None
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ValueError(f"{JIT_ENV} must be 0 or 1 (or true/false). Received: {JIT_ENV}={value!r}")


def has_depthwise(model):
    """True when ``model`` has depthwise convolutions (MobileNetV2), which XLA runs slowly."""
    return any(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in _leaf_layers(model))


def fast_path(precision="float32", info=None, *, model=None, jit_compile=None, environ=None):
    """The execution settings that run fastest for ``precision`` on this machine.

    The rule (measured on three CPU kinds, see docs/speed.md):

    - float32 on a CPU: XLA (``jit_compile=True``) for the VGG16 FCNs. On the Intel Xeon with
      AMX oneDNN's float32 graph took 2.41 s for a 500x500 FCN-8s forward and XLA 1.36 s; on
      AMD EPYC CPUs (AVX2 and Zen 5 AVX-512) XLA is as fast or faster, never slower beyond
      noise.
    - models with depthwise convolutions (MobileNetV2): no XLA, whatever the precision; XLA's
      CPU depthwise convolutions made the MobileNetV2 FCN-8s 12x slower (Zen 5, 360x480).
    - bfloat16 on a CPU: no XLA. The bf16 speed comes from oneDNN's bf16 kernels (AMX,
      AVX512-BF16), which XLA does not reach (Xeon: 458 ms with oneDNN, 1,558 ms with XLA).
    - float16 and every precision on a GPU: no XLA by default (TF's GPU kernels).

    The ``jit_compile`` argument wins over ``KERAS_FCN_JIT=0/1``, which wins over the rule.

    Args:
        precision: one of ``PRECISIONS``.
        info: a :func:`cpu_info` dict; read from this machine when None.
        model: the model to run, if known (its layers can change the rule).
        jit_compile: True/False to force, None for the rule.
        environ: the environment to read ``KERAS_FCN_JIT`` from (``os.environ`` if None).

    Returns:
        ``{"precision": str, "jit_compile": bool, "reason": str}``.

    Example:
        >>> fast_path("float32", {"isa": ("avx2",), "gpu": False})["jit_compile"]
        True
    """
    info = cpu_info() if info is None else info
    resolved = resolve_precision(precision, info=info, model=model)
    if jit_compile is not None:
        return {"precision": resolved, "jit_compile": bool(jit_compile), "reason": "argument"}
    override = jit_override(environ)
    if override is not None:
        return {"precision": resolved, "jit_compile": override, "reason": JIT_ENV}
    if info["gpu"]:
        return {"precision": resolved, "jit_compile": False, "reason": "GPU: TF kernels"}
    if model is not None and has_depthwise(model):
        return {"precision": resolved, "jit_compile": False,
                "reason": "depthwise convolutions: slow under XLA"}
    if resolved == "float32":
        return {"precision": resolved, "jit_compile": True, "reason": "CPU float32: XLA"}
    return {"precision": resolved, "jit_compile": False,
            "reason": f"CPU {resolved}: oneDNN low-precision kernels"}
