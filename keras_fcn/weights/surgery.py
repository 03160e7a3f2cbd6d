"""Net surgery of the Caffe ImageNet classifiers into the FCN-AlexNet and FCN-GoogLeNet trunks.

The paper (Long et al., CVPR 2015, section 3.1 and Table 1) starts its FCN-AlexNet from the
CaffeNet/AlexNet classifier and its FCN-GoogLeNet from the BVLC GoogLeNet, with the fully
connected layers cast into convolutions. This module reads those ``.caffemodel`` files through
:func:`keras_fcn.weights.read_caffe_layers` and returns ``{keras_layer_name: [kernel, bias]}``
in Keras layouts, ready for :func:`keras_fcn.weights.set_weights_by_name`:

* Convolution ``(out, in / group, kh, kw)`` -> Keras ``(kh, kw, in / group, out)``: the layout
  of a Keras ``Conv2D(groups=group)`` kernel, whose groups split the input and output channels
  in the same contiguous order as Caffe's, so grouped AlexNet layers need no reordering.
* InnerProduct ``(out, c * kh * kw)`` (CHW order) -> the convolution ``(kh, kw, c, out)`` for
  the layers named in ``fc_kernels`` (``fc6``: 6x6, ``fc7``: 1x1 for AlexNet).
* Deconvolution (the released FCNs' ``upscore``) -> ``Conv2DTranspose`` kernels.
* ImageNet classifiers are dropped: ``fc8`` (CaffeNet) and every ``loss*`` layer (GoogLeNet's
  ``loss3/classifier`` and the auxiliary ``loss1/*``, ``loss2/*`` branches).
* Names: Keras layer names may not contain ``/``, so ``inception_3a/1x1`` becomes
  ``inception_3a_1x1`` and ``conv1/7x7_s2`` becomes ``conv1_7x7_s2`` (:func:`keras_layer_name`).

Example:
    >>> weights = caffe_trunk_weights("bvlc_googlenet.caffemodel")  # doctest: +SKIP
    >>> weights["inception_3a_1x1"][0].shape  # doctest: +SKIP
    (1, 1, 192, 64)
"""

import os

import numpy as np

from keras_fcn.weights.caffe import read_caffe_layers
from keras_fcn.weights.imagenet import fetch_weights_file
from keras_fcn.weights.io import load_weights, set_weights_by_name
from keras_fcn.weights.layouts import conv_kernel_to_keras, deconv_kernel_to_keras, reject

# The BVLC Model Zoo files (Caffe's models/*/readme.md publish SHA-1 sums, which get_file
# cannot check; the loaders check every layer's shape instead, and take a user's hash).
CAFFE_IMAGENET_URLS = {
    "alexnet": "http://dl.caffe.berkeleyvision.org/bvlc_reference_caffenet.caffemodel",
    "googlenet": "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
}
ALEXNET_FC_KERNELS = {"fc6": 6, "fc7": 1}
# Layers of the ImageNet classifiers that the FCNs drop (names, then name prefixes).
CLASSIFIER_LAYERS = ("fc8",)
CLASSIFIER_PREFIXES = ("loss",)


def keras_layer_name(caffe_name):
    """The Keras name of a Caffe layer: ``/`` (not allowed in Keras names) becomes ``_``.

    Example:
        >>> keras_layer_name("inception_4e/pool_proj")
        'inception_4e_pool_proj'
    """
    return caffe_name.replace("/", "_")


def is_classifier(caffe_name):
    """True for the ImageNet classifier layers that the FCN trunks drop.

    Example:
        >>> is_classifier("fc8"), is_classifier("loss2/fc"), is_classifier("fc7")
        (True, True, False)
    """
    return caffe_name in CLASSIFIER_LAYERS or caffe_name.startswith(CLASSIFIER_PREFIXES)


def inner_product_to_conv(weight, kernel_size):
    """Casts a Caffe InnerProduct weight into a Keras convolution kernel (net surgery).

    Args:
        weight: ``(out, c * k * k)`` in Caffe's CHW order (legacy 4-D blobs
            ``(1, 1, out, c * k * k)`` too).
        kernel_size: ``k``, the convolution's spatial size.

    Returns:
        The kernel ``(k, k, c, out)``.

    Example:
        >>> inner_product_to_conv(np.zeros((4096, 256 * 36)), 6).shape
        (6, 6, 256, 4096)
    """
    weight = np.asarray(weight, dtype=np.float32)
    out, size = weight.shape[-2], weight.shape[-1]
    area = kernel_size * kernel_size
    if weight.size != out * size or size % area:
        raise ValueError(f"an InnerProduct weight of shape {weight.shape} is not a "
                         f"{kernel_size}x{kernel_size} convolution")
    return conv_kernel_to_keras(weight.reshape(out, size // area, kernel_size, kernel_size))


def _layer_arrays(layer, fc_kernels):
    """The Keras arrays of one Caffe layer with weights."""
    weight = np.asarray(layer.blobs[0], dtype=np.float32)
    bias = [np.asarray(blob, dtype=np.float32).reshape(-1) for blob in layer.blobs[1:]]
    if layer.type == "InnerProduct":
        return [inner_product_to_conv(weight, fc_kernels[layer.name])] + bias
    if layer.type == "Deconvolution":
        # keras_fcn's upsampling layers have no bias; a zero bias is the same function.
        bias = [b for b in bias if np.any(b)]
        return [deconv_kernel_to_keras(weight, layer.group)] + bias
    return [conv_kernel_to_keras(weight)] + bias


def caffe_trunk_weights(source, fc_kernels=None, strict=True):
    """Converts a Caffe ImageNet classifier (or a released FCN) into FCN trunk weights.

    Args:
        source: a ``.caffemodel`` path, or the list of
            :class:`keras_fcn.weights.CaffeLayer` that ``read_caffe_layers`` returns.
        fc_kernels: ``{caffe_name: kernel_size}`` of the InnerProduct layers to cast into
            convolutions (:data:`ALEXNET_FC_KERNELS` for CaffeNet/AlexNet).
        strict: raise on a layer with weights that cannot be converted (an InnerProduct
            not in ``fc_kernels``, an unknown type); else warn and skip it.

    Returns:
        ``{keras_layer_name: [kernel, bias?]}`` in Keras layouts; ImageNet classifier layers
        (``fc8``, ``loss*``) are left out.

    Example:
        >>> weights = caffe_trunk_weights("bvlc_reference_caffenet.caffemodel",
        ...                               ALEXNET_FC_KERNELS)  # doctest: +SKIP
        >>> weights["fc6"][0].shape, weights["conv2"][0].shape  # doctest: +SKIP
        ((6, 6, 256, 4096), (5, 5, 48, 256))
    """
    layers = read_caffe_layers(source) if isinstance(source, (str, os.PathLike)) else source
    fc_kernels = dict(fc_kernels or {})
    weights = {}
    for layer in layers:
        if not layer.blobs or is_classifier(layer.name):
            continue
        known_ip = layer.type == "InnerProduct" and layer.name in fc_kernels
        if layer.type not in ("Convolution", "Deconvolution") and not known_ip:
            reject(f"Caffe layer {layer.name!r} of type {layer.type!r} has weights but is not a "
                   f"convolution or one of the fully connected layers {sorted(fc_kernels)}",
                   strict)
            continue
        if len(layer.blobs) > 2:
            raise ValueError(f"Caffe layer {layer.name!r} has {len(layer.blobs)} blobs, "
                             f"expected a weight and an optional bias")
        weights[keras_layer_name(layer.name)] = _layer_arrays(layer, fc_kernels)
    return weights


def fetch_caffe_imagenet_weights(trunk, cache_dir=None, url=None, file_hash=None):
    """Returns the cached path of the BVLC ImageNet ``.caffemodel`` of ``trunk``.

    Args:
        trunk: ``"alexnet"`` (``bvlc_reference_caffenet``, 233 MB: the CaffeNet variant with
            pooling before normalization, as FCN-AlexNet) or ``"googlenet"``
            (``bvlc_googlenet``, 51 MB).
        cache_dir: cache root; ``None`` means ``$KERAS_HOME``, else ``~/.keras``.
        url: a mirror or ``file://`` URL instead of :data:`CAFFE_IMAGENET_URLS`.
        file_hash: optional SHA-256 or MD5 of the file (the BVLC zoo publishes only SHA-1).

    Raises:
        ValueError: an unknown trunk. RuntimeError: offline and not cached, or a checksum
            failure; the message says where to put the file.

    Example:
        >>> path = fetch_caffe_imagenet_weights("googlenet")  # doctest: +SKIP
    """
    if trunk not in CAFFE_IMAGENET_URLS:
        raise ValueError(f"No Caffe ImageNet weights for this trunk. Expected one of "
                         f"{tuple(CAFFE_IMAGENET_URLS)}. Received: trunk={trunk!r}")
    url = url or CAFFE_IMAGENET_URLS[trunk]
    filename = os.path.basename(CAFFE_IMAGENET_URLS[trunk])
    return fetch_weights_file(
        filename, url, file_hash, cache_dir, f"ImageNet {trunk} Caffe weights",
        f"build_fcn32s(backbone={trunk!r}, weights='/path/to/{filename}')")


def load_caffe_trunk(model, weights, trunk, fc_kernels=None, heads=("score_fr", "upscore")):
    """Loads the ``weights`` argument of the FCN-AlexNet/GoogLeNet builders into ``model``.

    Args:
        model: the freshly built FCN.
        weights: ``"imagenet"`` (:func:`fetch_caffe_imagenet_weights`), a ``.caffemodel``
            (an ImageNet classifier or a released FCN, by net surgery), or anything
            :func:`keras_fcn.weights.load_weights` takes (a ``.keras`` file, a model, ...).
        trunk: ``"alexnet"`` or ``"googlenet"``.
        fc_kernels: see :func:`caffe_trunk_weights`.
        heads: the model's head layers, which a classifier file does not have.

    Returns:
        The sorted names of the layers that were set.

    Raises:
        ValueError: a ``.caffemodel`` lacks a trunk layer, or a shape does not fit.

    Example:
        >>> load_caffe_trunk(model, "bvlc_googlenet.caffemodel", "googlenet")  # doctest: +SKIP
    """
    if isinstance(weights, str) and weights == "imagenet":
        weights = fetch_caffe_imagenet_weights(trunk)
    if not (isinstance(weights, (str, os.PathLike))
            and os.fspath(weights).endswith(".caffemodel")):
        return load_weights(model, weights)
    trunk_layers = [layer.name for layer in model.layers if layer.weights
                    and layer.name not in heads]
    try:
        return set_weights_by_name(model, caffe_trunk_weights(weights, fc_kernels),
                                   required=trunk_layers)
    except ValueError as error:
        raise ValueError(f"{os.fspath(weights)} does not fit the {trunk} FCN "
                         f"{model.name!r}: {error}") from None
