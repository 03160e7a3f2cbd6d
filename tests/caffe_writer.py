"""A small protobuf encoder of Caffe ``.caffemodel`` files, for tests: it writes files in the
reference format (``layer`` or legacy V1 ``layers``, packed or not, ``shape`` or the old
num/channels/height/width dims) that ``keras_fcn.weights.caffe`` must read back.

Example:
    >>> write_caffemodel([("conv1_1", "Convolution", [np.ones((4, 3, 3, 3)), np.zeros(4)])],
    ...                  "/tmp/tiny.caffemodel")
"""

import numpy as np

from keras_fcn.weights.caffe import I32, LEN, V1_TYPES, VARINT, CaffeLayer

V1_CODES = {name: code for code, name in V1_TYPES.items()}


def varint(value):
    """Encodes a non-negative int as a varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def len_field(field, payload):
    return key(field, LEN) + varint(len(payload)) + payload


def encode_blob(array, packed, legacy_shape):
    """Encodes an array as a BlobProto (float32 `data`)."""
    array = np.asarray(array)
    flat = np.ascontiguousarray(array, dtype="<f4").ravel()
    if legacy_shape:
        if array.ndim > 4:
            raise ValueError(f"legacy blob shapes have at most 4 dims, got {array.shape}")
        dims = (1,) * (4 - array.ndim) + array.shape
        out = b"".join(key(f, VARINT) + varint(d) for f, d in zip((1, 2, 3, 4), dims))
    else:
        dims = b"".join(varint(d) for d in array.shape)
        out = len_field(7, len_field(1, dims) if packed else
                         b"".join(key(1, VARINT) + varint(d) for d in array.shape))
    if packed:
        out += len_field(5, flat.tobytes())
    else:
        out += b"".join(key(5, I32) + v.tobytes() for v in flat)
    return out


def encode_layer(layer, v1, packed, legacy_shape):
    """Encodes a CaffeLayer as LayerParameter or V1LayerParameter bytes."""
    name_field, type_field, blob_field, conv_field = (4, 5, 6, 10) if v1 else (1, 2, 7, 106)
    out = len_field(name_field, layer.name.encode("utf-8"))
    if v1:
        if layer.type not in V1_CODES:
            raise ValueError(f"no V1 type code for {layer.type!r}; known: {sorted(V1_CODES)}")
        out += key(type_field, VARINT) + varint(V1_CODES[layer.type])
    else:
        out += len_field(type_field, layer.type.encode("utf-8"))
    for blob in layer.blobs:
        out += len_field(blob_field, encode_blob(blob, packed, legacy_shape))
    if layer.group != 1:
        out += len_field(conv_field, key(5, VARINT) + varint(layer.group))
    return out


def write_caffemodel(layers, path, v1=False, packed=True, legacy_shape=False):
    """Writes a small binary .caffemodel (used by tests to make files in the reference format).

    Args:
      layers: iterable of CaffeLayer (or (name, type, blobs[, group]) tuples).
      path: output path.
      v1: write legacy V1LayerParameter `layers` (field 2, enum types) instead of `layer`.
      packed: write `data` and `shape.dim` packed (as Caffe does) or one element per field.
      legacy_shape: write num/channels/height/width instead of `shape` (left-padded with 1s).

    Returns:
      The path written.

    Example:
      >>> import numpy as np
      >>> write_caffemodel([("conv1_1", "Convolution", [np.ones((4, 3, 3, 3)), np.zeros(4)])],
      ...                  "/tmp/tiny.caffemodel")  # doctest: +SKIP
    """
    field = 2 if v1 else 100
    payload = b"".join(
        len_field(field, encode_layer(CaffeLayer(*layer), v1, packed, legacy_shape))
        for layer in layers)
    with open(path, "wb") as f:
        f.write(payload)
    return path
