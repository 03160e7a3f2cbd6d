"""What runs this: the CPU model and its speed-relevant ISA flags, the GPU and its CUDA
compute capability. `keras_fcn.runtime` re-exports these (``runtime.cpu_info()``) and decides
precision and execution paths from them.
"""

import functools
import platform

from keras_fcn import _tf

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


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
    """Returns True when the Keras backend (TensorFlow, JAX or PyTorch) sees a GPU."""
    name = _tf.backend()
    if name == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def _parse_capability(value):
    """``(major, minor)`` from ``"8.6"``, ``(8, 6)`` or ``{"compute_capability": (8, 6)}``;
    None for anything else (a ROCm ``"gfx90a"``, a missing field)."""
    if isinstance(value, dict):
        value = value.get("compute_capability")
    if isinstance(value, str):
        value = value.split(".")
    try:
        major, minor = (int(part) for part in value)
    except (TypeError, ValueError):
        return None
    return major, minor


def gpu_capability():
    """The CUDA compute capability ``(major, minor)`` of the first GPU the Keras backend sees.

    None when there is no GPU or the backend does not tell (a ROCm GPU, an old JAX).
    """
    name = _tf.backend()
    try:
        if name == "jax":
            import jax

            gpus = [device for device in jax.devices() if device.platform == "gpu"]
            return _parse_capability(getattr(gpus[0], "compute_capability", None)) if gpus else None
        if name == "torch":
            import torch

            if torch.cuda.is_available() and torch.version.cuda:
                return _parse_capability(torch.cuda.get_device_capability(0))
            return None
        if name == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return _parse_capability(tf.config.experimental.get_device_details(gpus[0])) \
                if gpus else None
    except (RuntimeError, IndexError, AttributeError):
        return None
    return None


def cpu_info(path="/proc/cpuinfo", gpu=None):
    """Describes the processor: model name, vendor, speed-relevant ISA flags and GPU presence.

    Args:
        path: the Linux ``cpuinfo`` file; when it cannot be read, ``platform`` fills in the
            model and no ISA flag is reported.
        gpu: whether a GPU is present; None asks the Keras backend (and then also reads the
            GPU's compute capability).

    Returns:
        A dict ``{"model": str, "vendor": str, "isa": tuple of the ISA_FLAGS present,
        "gpu": bool, "gpu_capability": (major, minor) or None}``.

    Example:
        >>> info = cpu_info(gpu=False)  # on an AMD EPYC: {'model': 'AMD EPYC ...',
        >>> # 'vendor': 'AuthenticAMD', 'isa': ('avx2', 'avx512f', 'avx512_bf16'), 'gpu': False}
        >>> sorted(info), info["gpu"], set(info["isa"]) <= set(ISA_FLAGS)
        (['gpu', 'gpu_capability', 'isa', 'model', 'vendor'], False, True)
    """
    model, vendor, flags = _read_cpuinfo(path)
    if gpu is None:
        gpu = has_gpu()
        capability = gpu_capability() if gpu else None
    else:
        capability = None
    return {
        "model": model or platform.processor() or platform.machine(),
        "vendor": vendor or "unknown",
        "isa": tuple(flag for flag in ISA_FLAGS if flag in flags),
        "gpu": bool(gpu),
        "gpu_capability": capability,
    }


def describe(info):
    """One line for logs and benchmark tables: ``"AMD EPYC (avx2 avx512f), no GPU"``."""
    isa = " ".join(info["isa"]) or "no AVX2"
    return f"{info['model']} ({isa}), {'GPU' if info['gpu'] else 'no GPU'}"
