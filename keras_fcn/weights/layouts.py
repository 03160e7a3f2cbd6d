"""Kernel layouts of Caffe and PyTorch into Keras, and the names of the keras_fcn layers
that hold weights: what the Caffe and PyTorch converters share.

* Conv2D kernel ``(kh, kw, in, out)`` from Caffe/PyTorch ``(out, in, kh, kw)``: transpose
  ``(2, 3, 1, 0)``.
* Conv2DTranspose kernel ``(kh, kw, out, in)`` from Caffe Deconvolution / PyTorch
  ConvTranspose2d ``(in, out, kh, kw)``: the same transpose ``(2, 3, 1, 0)``, no spatial flip
  (both are the adjoint of a cross-correlation; checked numerically in tests/test_convert.py).

Example:
    >>> conv_kernel_to_keras(np.zeros((64, 3, 3, 3))).shape
    (3, 3, 3, 64)
"""

import warnings

import numpy as np

from keras_fcn.weights.imagenet import VGG16_FCN_LAYERS

# Names of the layers with weights in keras_fcn models.
CONV_LAYERS = VGG16_FCN_LAYERS + ("score_fr", "score_pool4", "score_pool3")
TRANSPOSED_LAYERS = ("upscore", "upscore2", "upscore16", "upscore_pool4", "upscore8")
KNOWN_LAYERS = frozenset(CONV_LAYERS + TRANSPOSED_LAYERS)
# Heads of the two-headed SIFT Flow FCN carry these suffixes (score_fr_sem, upscore2_geo, ...).
HEAD_SUFFIXES = ("_sem", "_geo")


def base_layer_name(name):
    """Returns the keras_fcn layer name without a SIFT Flow head suffix, or None if unknown.

    Example:
      >>> base_layer_name("upscore2_sem"), base_layer_name("fc7"), base_layer_name("score59")
      ('upscore2', 'fc7', None)
    """
    if name in KNOWN_LAYERS:
        return name
    for suffix in HEAD_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in KNOWN_LAYERS:
            return name[: -len(suffix)]
    return None


def conv_kernel_to_keras(weight):
    """Converts a Caffe/PyTorch conv weight (out, in, kh, kw) to a Keras kernel (kh, kw, in, out).

    Example:
      >>> conv_kernel_to_keras(np.zeros((4, 3, 5, 7))).shape
      (5, 7, 3, 4)
    """
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"expected a 4-D conv weight (out, in, kh, kw), got shape {weight.shape}")
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def deconv_kernel_to_keras(weight, group=1):
    """Converts a Caffe Deconvolution / PyTorch ConvTranspose2d weight to a Conv2DTranspose kernel.

    Args:
      weight: array (in, out // group, kh, kw).
      group: number of groups; grouped filters are spread into a block-diagonal full kernel.

    Returns:
      Keras kernel (kh, kw, out, in). No spatial flip is needed.

    Example:
      >>> deconv_kernel_to_keras(np.zeros((21, 21, 4, 4))).shape
      (4, 4, 21, 21)
      >>> deconv_kernel_to_keras(np.ones((21, 1, 4, 4)), group=21)[..., 0].sum(axis=(0, 1))[:2]
      array([16.,  0.])
    """
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(
            f"expected a 4-D transposed-conv weight (in, out, kh, kw), got shape {weight.shape}")
    n_in, out_per_group = weight.shape[:2]
    if group < 1 or n_in % group:
        raise ValueError(f"group={group} does not divide the {n_in} input channels")
    kernel = weight.transpose(2, 3, 1, 0)  # (kh, kw, out // group, in)
    if group == 1:
        return np.ascontiguousarray(kernel)
    in_per_group = n_in // group
    full = np.zeros(kernel.shape[:2] + (out_per_group * group, n_in), dtype=kernel.dtype)
    for g in range(group):
        ins = slice(g * in_per_group, (g + 1) * in_per_group)
        outs = slice(g * out_per_group, (g + 1) * out_per_group)
        full[:, :, outs, ins] = kernel[:, :, :, ins]
    return full


def layer_arrays(name, weight, bias, transposed, group=1):
    """Returns the Keras arrays [kernel, bias?] of one conv or transposed-conv layer."""
    weight = np.asarray(weight, dtype=np.float32)
    if transposed:
        try:
            arrays = [deconv_kernel_to_keras(weight, group)]
        except ValueError as error:
            raise ValueError(f"layer {name!r}: {error} (weight shape {weight.shape})") from None
        # keras_fcn's transposed convs have no bias; a zero bias is the same function.
        if bias is not None and np.any(np.asarray(bias)):
            arrays.append(np.asarray(bias, dtype=np.float32).reshape(-1))
        return arrays
    if group != 1:
        raise ValueError(f"layer {name!r}: grouped convolution (group={group}) is not supported")
    try:
        arrays = [conv_kernel_to_keras(weight)]
    except ValueError as error:
        raise ValueError(f"layer {name!r}: {error}{_dense_hint(name, weight)}") from None
    if bias is not None:
        arrays.append(np.asarray(bias, dtype=np.float32).reshape(-1))
    return arrays


def _dense_hint(name, weight):
    """For ``fc6``/``fc7`` given a fully connected layer's ``(out, in)`` matrix (torchvision
    VGG16's ``classifier.0``/``classifier.3``): the reshape to ``(out, in, kh, kw)`` it needs
    (fc6 is 7x7 on VGG16's 512 x 7 x 7 pool5, fc7 1x1); nothing for other layers or shapes.

    Example:
      >>> _dense_hint("fc6", np.zeros((4096, 25088)))[-76:]
      'first: weight.reshape(4096, 512, 7, 7) (fc6 is 7x7, fc7 1x1; docs/models.md)'
    """
    fc = base_layer_name(name)
    if weight.ndim != 2 or fc not in ("fc6", "fc7"):
        return ""
    out, n_in = weight.shape
    side = 7 if fc == "fc6" and n_in % 49 == 0 else 1
    return (f"; a fully connected layer's (out, in) matrix must be reshaped to the "
            f"convolution's (out, in, kh, kw) first: weight.reshape({out}, "
            f"{n_in // side ** 2}, {side}, {side}) (fc6 is 7x7, fc7 1x1; docs/models.md)")


def check_rename(rename, names, origin):
    """Refuses a ``rename`` ({source name: keras_fcn name}) that names a layer the source does
    not have, or that maps two of its layers (``names``: those with weights, in order) onto one.

    Example:
      >>> check_rename({"score_pool4": "score_fr"}, ["score_fr", "score_pool4"], "w.pth")
      Traceback (most recent call last):
      ValueError: w.pth: two of its layers would load into the one layer 'score_fr': ...
    """
    for old, new in rename.items():
        if old not in names:
            more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
            raise ValueError(f"{origin}: rename={{{old!r}: {new!r}}} names the layer {old!r}, "
                             f"which the file does not have; its layers with weights are "
                             f"{', '.join(names[:8])}{more}")
    sources = {}
    for name in names:
        sources.setdefault(rename.get(name, name), []).append(name)
    for new, olds in sources.items():
        if len(olds) > 1:
            renamed = {old: new for old in olds if old != new}
            raise ValueError(f"{origin}: two of its layers would load into the one layer "
                             f"{new!r}: {olds[0]!r} and {olds[1]!r} (rename={renamed!r}); the "
                             "second would overwrite the first. Map each to a name of its own.")


def reject(problem, strict):
    """Raises ValueError in strict mode, else warns."""
    if strict:
        raise ValueError(problem + " (pass strict=False to skip it)")
    warnings.warn(problem + "; skipped", stacklevel=3)
