"""Reading the reference Caffe ``.caffemodel`` files and converting them to keras_fcn weights.

The files of fcn.berkeleyvision.org (Long, Shelhamer, Darrell, CVPR 2015) are read without
Caffe or protoc, by a small protobuf wire-format decoder of the few messages needed
(NetParameter, LayerParameter, V1LayerParameter, BlobProto, BlobShape, ConvolutionParameter).
The output is ``{keras_layer_name: [kernel, bias?]}`` in Keras layouts
(:mod:`keras_fcn.weights.layouts`).

Example:
    >>> weights = convert_caffemodel("fcn8s-heavy-pascal.caffemodel")  # doctest: +SKIP
    >>> set_weights_by_name(build_fcn8s(weights=None), weights)  # doctest: +SKIP
"""

import collections
import os
import re

import numpy as np

from keras_fcn.weights.layouts import (
    KNOWN_LAYERS,
    TRANSPOSED_LAYERS,
    base_layer_name,
    check_rename,
    layer_arrays,
    reject,
)
from keras_fcn.weights.npz import check_finite

# The at-once FCN-8s scales pool4/pool3 by a Caffe Scale layer with a fixed (lr_mult 0) parameter;
# keras_fcn applies these constants without weights, so the blobs are checked and dropped.
FIXED_SCALES = {"scale_pool4": 0.01, "scale_pool3": 0.0001}

# V1LayerParameter.LayerType values (caffe.proto) of the layer types that matter here.
V1_TYPES = {
    4: "Convolution", 39: "Deconvolution", 14: "InnerProduct", 18: "ReLU", 6: "Dropout",
    25: "Eltwise", 17: "Pooling", 5: "Data", 20: "Softmax", 21: "SoftmaxWithLoss",
    22: "Split", 1: "Accuracy", 3: "Concat", 12: "ImageData", 36: "Silence",
}

# Protobuf wire types.
VARINT, I64, LEN, I32 = 0, 1, 2, 5


CaffeLayer = collections.namedtuple("CaffeLayer", ["name", "type", "blobs", "group"])
CaffeLayer.__new__.__defaults__ = (1,)
CaffeLayer.__doc__ = """One layer of a .caffemodel: name, type string, list of blob arrays, group.

The group is ConvolutionParameter.group (1 when absent); it matters for Deconvolution layers
stored with one filter per class (group = num_output).
"""


class CaffeModelError(ValueError):
    """A file is not a readable .caffemodel (truncated, not protobuf, inconsistent blob)."""


class _WireError(ValueError):
    """Malformed protobuf data; re-raised as CaffeModelError naming the file."""


def _read_varint(buf, pos):
    """Decodes one base-128 varint.

    Args:
      buf: a bytes-like object (memoryview).
      pos: offset of the first byte.

    Returns:
      (value, offset after the varint).

    Example:
      >>> _read_varint(b"\\xac\\x02", 0)
      (300, 2)
    """
    value = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise _WireError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise _WireError(f"varint longer than 10 bytes at byte {pos}")


def _iter_fields(buf):
    """Yields the fields of one serialized message.

    Args:
      buf: the message bytes (memoryview, so that sub-messages are not copied).

    Returns:
      An iterator of (field_number, wire_type, value): an int for varints, a memoryview for
      length-delimited and fixed-width fields.

    Example:
      >>> [(f, w, bytes(v)) for f, w, v in _iter_fields(memoryview(b"\\x0a\\x01a"))]
      [(1, 2, b'a')]
    """
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _WireError(f"field number 0 at byte {pos}")
        if wire == VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire in (I64, I32):
            size = 8 if wire == I64 else 4
            if pos + size > end:
                raise _WireError(f"truncated fixed-width field {field} at byte {pos}")
            value = buf[pos:pos + size]
            pos += size
        elif wire == LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                raise _WireError(
                    f"field {field} claims {size} bytes at byte {pos}, only {end - pos} left")
            value = buf[pos:pos + size]
            pos += size
        else:
            raise _WireError(f"unsupported wire type {wire} (field {field}) at byte {pos}")
        yield field, wire, value


def _packed_varints(value):
    """Returns the ints of a packed repeated varint field."""
    out, pos = [], 0
    while pos < len(value):
        number, pos = _read_varint(value, pos)
        out.append(number)
    return out


class _Repeated:
    """Collects a repeated numeric field that may come packed, unpacked, or both."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.chunks = []

    def add(self, wire, value):
        """Adds one occurrence (a packed run, or one fixed-width element)."""
        width_wire = I32 if self.dtype.itemsize == 4 else I64
        if wire not in (LEN, width_wire):
            raise _WireError(f"{self.dtype} field with wire type {wire}")
        if len(value) % self.dtype.itemsize:
            raise _WireError(f"packed {self.dtype} run of {len(value)} bytes")
        self.chunks.append(value)

    def array(self):
        """Returns the values as a 1-D array (empty when the field never occurred)."""
        if len(self.chunks) == 1:  # the packed case: no copy of large blobs here
            return np.frombuffer(self.chunks[0], dtype=self.dtype)
        return np.frombuffer(b"".join(self.chunks), dtype=self.dtype)


def _decode_blob_shape(buf):
    """Decodes a BlobShape message into a tuple of dims."""
    dims = []
    for field, wire, value in _iter_fields(buf):
        if field == 1:
            dims.extend(_packed_varints(value) if wire == LEN else [value])
    return tuple(int(d) for d in dims)


def _decode_blob(buf):
    """Decodes a BlobProto message.

    Args:
      buf: the serialized BlobProto.

    Returns:
      A numpy array of the blob's data with its shape (float32, or float64 for double_data).
    """
    data, double_data = _Repeated("<f4"), _Repeated("<f8")
    shape, legacy = None, {}
    for field, wire, value in _iter_fields(buf):
        if field == 7 and wire == LEN:
            shape = _decode_blob_shape(value)
        elif field == 5:
            data.add(wire, value)
        elif field == 8:
            double_data.add(wire, value)
        elif field in (1, 2, 3, 4) and wire == VARINT:
            legacy[field] = value
    values = data.array()
    if not values.size and double_data.chunks:
        values = double_data.array()
    if shape is None:
        shape = tuple(legacy.get(f, 0) for f in (1, 2, 3, 4)) if legacy else (values.size,)
    if int(np.prod(shape, dtype=np.int64)) != values.size:
        raise _WireError(f"blob of shape {shape} holds {values.size} values")
    return values.astype(values.dtype.type).reshape(shape)


def _decode_group(buf):
    """Returns ConvolutionParameter.group (field 5), 1 when absent."""
    group = 1
    for field, wire, value in _iter_fields(buf):
        if field == 5 and wire == VARINT:
            group = value
    return group


def _decode_layer(buf, v1):
    """Decodes a LayerParameter (v1=False) or V1LayerParameter (v1=True) into a CaffeLayer."""
    name_field, type_field, blob_field, conv_field = (4, 5, 6, 10) if v1 else (1, 2, 7, 106)
    name, type_, blobs, group = None, None, [], 1
    for field, wire, value in _iter_fields(buf):
        if field == name_field and wire == LEN:
            name = bytes(value).decode("utf-8")
        elif field == type_field:
            if v1 and wire == VARINT:
                type_ = V1_TYPES.get(value, f"V1Type{value}")
            elif not v1 and wire == LEN:
                type_ = bytes(value).decode("utf-8")
        elif field == blob_field and wire == LEN:
            blobs.append(_decode_blob(value))
        elif field == conv_field and wire == LEN:
            group = _decode_group(value)
        elif v1 and field == 1 and wire == LEN:
            raise _WireError("V0LayerParameter (pre-2014 Caffe format) is not supported")
    if name is None:
        raise _WireError("a layer without a name")
    return CaffeLayer(name, type_ or "", blobs, group)


def _decode_net(buf):
    """Decodes a NetParameter into a list of CaffeLayer (both `layer` and legacy `layers`)."""
    layers = []
    for field, wire, value in _iter_fields(buf):
        if field == 100 and wire == LEN:
            layers.append(_decode_layer(value, v1=False))
        elif field == 2 and wire == LEN:
            layers.append(_decode_layer(value, v1=True))
    return layers


def read_caffe_layers(path):
    """Reads every layer of a .caffemodel, with its type and group.

    Args:
      path: path of a binary .caffemodel (NetParameter).

    Returns:
      A list of CaffeLayer(name, type, blobs, group) in file order, layers without blobs included.

    Raises:
      CaffeModelError: the file is truncated, not protobuf, or holds no layers; the message names
        the file.
      ValueError: a blob with NaN or infinite values (the message names the layer).

    Example:
      >>> layers = read_caffe_layers("fcn8s-heavy-pascal.caffemodel")  # doctest: +SKIP
      >>> [(l.name, l.type) for l in layers][:2]  # doctest: +SKIP
      [('data', 'Input'), ('conv1_1', 'Convolution')]
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        layers = _decode_net(memoryview(data))
    except (_WireError, UnicodeDecodeError) as e:
        raise CaffeModelError(_text_prototxt(path, data) or (
            f"{path}: not a valid .caffemodel (binary Caffe NetParameter): {e}")) from None
    if not layers:
        raise CaffeModelError(_text_prototxt(path, data) or (
            f"{path}: no Caffe layers found (expected NetParameter field 100 `layer` "
            f"or field 2 `layers`); is this a .caffemodel?"))
    for layer in layers:  # a diverged snapshot must not load as weights
        for i, blob in enumerate(layer.blobs):
            check_finite(blob, path, f"{layer.name}/{i}")
    return layers


# How a text prototxt (the net's definition, not its weights) starts.
PROTOTXT_START = re.compile(rb"\s*(#|name\s*:|layers?\s*\{|input(_shape|_dim)?\s*[:{]"
                            rb"|force_backward\s*:)")


def _text_prototxt(path, data):
    """The error for a text prototxt given as the weights, or None for other data.

    Example:
      >>> _text_prototxt("fcn8s.caffemodel", b'name: "FCN8s"\\nlayer {')[:47]
      'fcn8s.caffemodel: this is a text prototxt (it s'
    """
    if not PROTOTXT_START.match(data[:256]):
        return None
    head = bytes(data[:24]).split(b"\n")[0].decode("utf-8", "replace")
    return (f"{path}: this is a text prototxt (it starts with {head!r}), the definition of a "
            "net; the conversion needs the binary .caffemodel weights (e.g. "
            "fcn8s-heavy-pascal.caffemodel from fcn.berkeleyvision.org)")


def read_caffemodel(path):
    """Reads the raw blobs of a .caffemodel, without Caffe.

    Args:
      path: path of a binary .caffemodel.

    Returns:
      {layer_name: [blob arrays in Caffe layout]} for the layers that hold blobs, in file order.
      A convolution gives [weight (out, in, kh, kw), bias (out,)].

    Raises:
      CaffeModelError: the file is not a readable .caffemodel.

    Example:
      >>> blobs = read_caffemodel("fcn32s-heavy-pascal.caffemodel")  # doctest: +SKIP
      >>> blobs["fc6"][0].shape  # doctest: +SKIP
      (4096, 512, 7, 7)
    """
    return {layer.name: layer.blobs for layer in read_caffe_layers(path) if layer.blobs}


def _check_fixed_scale(layer, strict):
    """Checks the fixed Scale blob of the at-once FCN-8s against keras_fcn's constant."""
    expected = FIXED_SCALES[layer.name]
    values = np.concatenate([np.ravel(b) for b in layer.blobs])
    if not np.allclose(values, expected, rtol=1e-6, atol=0):
        reject(f"Scale layer {layer.name!r} holds values in [{values.min()}, {values.max()}] "
                f"but keras_fcn applies the fixed constant {expected}", strict)


def _caffe_weight_and_bias(layer):
    if len(layer.blobs) > 2:
        raise ValueError(f"layer {layer.name!r} ({layer.type}) has {len(layer.blobs)} blobs, "
                         f"expected weight and optional bias")
    return layer.blobs[0], (layer.blobs[1] if len(layer.blobs) == 2 else None)


def convert_caffe_layers(layers, rename=None, strict=True, origin="the Caffe layers"):
    """Converts decoded Caffe layers (see read_caffe_layers) to keras_fcn weights.

    Args:
      layers: iterable of CaffeLayer.
      rename: optional {caffe_name: keras_name}, e.g. {"score59": "score_fr"}; a name that is
        not a layer with weights, or two layers mapped onto one name, raise ValueError.
      strict: raise on a layer with weights that cannot be mapped (else warn and skip it).
      origin: what the layers come from, for the messages (the file).

    Returns:
      {keras_layer_name: [kernel, bias?]} in Keras layouts (float32).

    Example:
      >>> w = convert_caffe_layers([CaffeLayer("fc7", "Convolution",
      ...                            [np.zeros((8, 6, 1, 1)), np.zeros(8)])])
      >>> w["fc7"][0].shape
      (1, 1, 6, 8)
    """
    rename, layers = dict(rename or {}), list(layers)
    check_rename(rename, [layer.name for layer in layers if layer.blobs], origin)
    weights = {}
    for layer in layers:
        if not layer.blobs:
            continue  # Crop, ReLU, Dropout, Eltwise, Pooling, data and loss layers
        if layer.type == "Scale" and layer.name in FIXED_SCALES:
            _check_fixed_scale(layer, strict)
            continue
        name = rename.get(layer.name, layer.name)
        if layer.type not in ("Convolution", "Deconvolution"):
            reject(f"Caffe layer {layer.name!r} of type {layer.type!r} has weights but is not a "
                    f"Convolution or Deconvolution", strict)
            continue
        if base_layer_name(name) is None:
            reject(f"Caffe layer {layer.name!r} has weights but keras_fcn has no layer named "
                    f"{name!r}; map it with rename={{{layer.name!r}: ...}} to one of "
                    f"{sorted(KNOWN_LAYERS)}", strict)
            continue
        weight, bias = _caffe_weight_and_bias(layer)
        transposed = layer.type == "Deconvolution"
        if transposed != (base_layer_name(name) in TRANSPOSED_LAYERS):
            raise ValueError(f"Caffe layer {layer.name!r} is a {layer.type} but keras_fcn layer "
                             f"{name!r} is {'a transposed conv' if not transposed else 'a conv'}")
        weights[name] = layer_arrays(name, weight, bias, transposed, layer.group)
    return weights


def convert_caffemodel(path, rename=None, strict=True):
    """Reads a reference .caffemodel and converts its weights to keras_fcn layouts.

    Args:
      path: binary .caffemodel of fcn.berkeleyvision.org (FCN-32s/16s/8s/8s at-once).
      rename: optional {caffe_name: keras_name} for layers named differently (e.g. "score59").
      strict: raise on a layer with weights that cannot be mapped (else warn and skip it).

    Returns:
      {keras_layer_name: [kernel, bias?]}, e.g. "conv1_1": [(3, 3, 3, 64), (64,)],
      "upscore8": [(16, 16, 21, 21)].

    Raises:
      CaffeModelError: unreadable file. ValueError: unmappable layer (strict).

    Example:
      >>> weights = convert_caffemodel("fcn8s-heavy-pascal.caffemodel")  # doctest: +SKIP
      >>> weights["fc6"][0].shape  # doctest: +SKIP
      (7, 7, 512, 4096)
    """
    return convert_caffe_layers(read_caffe_layers(path), rename=rename, strict=strict,
                                origin=os.fspath(path))
