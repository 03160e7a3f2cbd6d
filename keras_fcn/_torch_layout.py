"""Channels-last convolution and max pooling on the PyTorch backend without layout copies
(imported by `keras_fcn.layers.Conv2D` and `MaxPooling2D` on the torch backend only).

Keras' torch backend runs a channels-last (NHWC) convolution by copying its input to a
contiguous NCHW tensor and then again to PyTorch's channels-last memory format, and a max pool
by the first copy; the gradients copy back. PyTorch's convolutions and pools take NCHW-shaped
tensors whose memory is NHWC (``torch.channels_last``) directly, which is what an NHWC tensor
permuted to NCHW is: no copy at all, and an output that permutes back to a contiguous NHWC
tensor. The operations are the same PyTorch kernels on the same memory layout, so values and
gradients equal Keras' bit for bit (tests/backend_cases.py). Measured by
``benchmarks/torch_layout.py``.

Each function returns None for what it does not cover (symbolic "meta" tensors, "same"
padding that PyTorch cannot express symmetrically); the caller then runs Keras' own op.
"""

import torch
import torch.nn.functional as F
from keras import ops


def _pairs(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _same_padding(kernel_size, dilation):
    """PyTorch's symmetric padding for a stride-1 "same" convolution or pool, or None when
    "same" needs more padding on one side (an even kernel extent)."""
    extents = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
    if any(extent % 2 for extent in extents):
        return None
    return tuple(extent // 2 for extent in extents)


def _pads_only_after(size, window):
    """Whether "same" pooling of ``size`` pixels in windows of ``window`` (stride = window)
    pads after the input only (TensorFlow puts the larger half of the padding after):
    PyTorch's ``ceil_mode`` windows then are the same windows."""
    total = -(-size // window) * window - size
    return size >= window and total // 2 == 0


def conv2d(inputs, kernel, strides, padding, dilation_rate):
    """NHWC ``inputs`` convolved with an HWIO ``kernel`` (Keras' layouts), as
    ``keras.ops.conv``, or None where not covered.

    Example:
        conv2d(torch.ones(1, 5, 5, 2), torch.ones(3, 3, 2, 4), (1, 1), "same", (1, 1))
    """
    inputs, kernel = ops.convert_to_tensor(inputs), ops.convert_to_tensor(kernel)
    strides, dilation = _pairs(strides), _pairs(dilation_rate)
    if inputs.ndim != 4 or inputs.device.type == "meta":
        return None
    if padding == "valid":
        pad = (0, 0)
    elif padding == "same" and strides == (1, 1):
        pad = _same_padding(kernel.shape[:2], dilation)
        if pad is None:
            return None
    else:
        return None
    x = inputs.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last, no copy
    # (out, in, kh, kw) in the channels-last memory PyTorch's kernels want (Keras does the same)
    w = kernel.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    groups = x.shape[1] // w.shape[1]
    outputs = F.conv2d(x, w, stride=strides, padding=pad, dilation=dilation, groups=groups)
    return outputs.permute(0, 2, 3, 1)


def max_pool2d(inputs, pool_size, strides, padding):
    """Max pool of NHWC ``inputs`` as ``keras.ops.max_pool``, or None where not covered.
    "same" is covered for non-overlapping windows padded after the input only (``ceil_mode``:
    the last window is cut at the edge, as TensorFlow's padding that never wins; all 2x2 pools)
    and stride-1 odd windows.

    Example:
        max_pool2d(torch.ones(1, 5, 5, 2), (2, 2), (2, 2), "same").shape  # (1, 3, 3, 2)
    """
    inputs = ops.convert_to_tensor(inputs)
    pool_size, strides = _pairs(pool_size), _pairs(strides)
    if inputs.ndim != 4 or inputs.device.type == "meta":
        return None
    ceil_mode, pad = False, (0, 0)
    if padding == "same":
        if pool_size == strides and all(_pads_only_after(n, k) for n, k in
                                         zip(inputs.shape[1:3], pool_size)):
            ceil_mode = True
        elif strides == (1, 1) and _same_padding(pool_size, (1, 1)) is not None:
            pad = _same_padding(pool_size, (1, 1))
        else:
            return None
    elif padding != "valid":
        return None
    x = inputs.permute(0, 3, 1, 2)
    outputs = F.max_pool2d(x, pool_size, strides, padding=pad, ceil_mode=ceil_mode)
    return outputs.permute(0, 2, 3, 1)
