"""Convert the released weights of the reference FCN models into keras_fcn layouts.

Two sources are supported:

* Caffe ``.caffemodel`` files of fcn.berkeleyvision.org (Long, Shelhamer, Darrell, CVPR 2015),
  read without Caffe or protoc by a small protobuf wire-format decoder of the few messages needed
  (NetParameter, LayerParameter, V1LayerParameter, BlobProto, BlobShape, ConvolutionParameter).
* PyTorch state dicts of the "pytorch-fcn" port (``torchfcn.models.FCN32s`` etc.), as a dict of
  tensors/arrays or a ``.pth`` file (torch is imported only to read such a file).

The output is ``{keras_layer_name: [kernel, bias?]}`` in Keras layouts:

* Conv2D kernel ``(kh, kw, in, out)`` from Caffe/PyTorch ``(out, in, kh, kw)``: transpose
  ``(2, 3, 1, 0)``.
* Conv2DTranspose kernel ``(kh, kw, out, in)`` from Caffe Deconvolution / PyTorch ConvTranspose2d
  ``(in, out, kh, kw)``: the same transpose ``(2, 3, 1, 0)``, no spatial flip (both are the adjoint
  of a cross-correlation; checked numerically in tests/test_convert.py).

Weights can be stored portably with :func:`save_npz` / :func:`load_npz` (keys ``layer/0``,
``layer/1``).
"""

import collections
import os
import warnings
import zipfile
import zlib

import numpy as np

# Names of the layers with weights in keras_fcn models.
CONV_LAYERS = (
    "conv1_1", "conv1_2",
    "conv2_1", "conv2_2",
    "conv3_1", "conv3_2", "conv3_3",
    "conv4_1", "conv4_2", "conv4_3",
    "conv5_1", "conv5_2", "conv5_3",
    "fc6", "fc7",
    "score_fr", "score_pool4", "score_pool3",
)
TRANSPOSED_LAYERS = ("upscore", "upscore2", "upscore16", "upscore_pool4", "upscore8")
KNOWN_LAYERS = frozenset(CONV_LAYERS + TRANSPOSED_LAYERS)
# Heads of the two-headed SIFT Flow FCN carry these suffixes (score_fr_sem, upscore2_geo, ...).
HEAD_SUFFIXES = ("_sem", "_geo")

# The at-once FCN-8s scales pool4/pool3 by a Caffe Scale layer with a fixed (lr_mult 0) parameter;
# keras_fcn applies these constants without weights, so the blobs are checked and dropped.
FIXED_SCALES = {"scale_pool4": 0.01, "scale_pool3": 0.0001}

# V1LayerParameter.LayerType values (caffe.proto) of the layer types that matter here.
_V1_TYPES = {
    4: "Convolution", 39: "Deconvolution", 14: "InnerProduct", 18: "ReLU", 6: "Dropout",
    25: "Eltwise", 17: "Pooling", 5: "Data", 20: "Softmax", 21: "SoftmaxWithLoss",
    22: "Split", 1: "Accuracy", 3: "Concat", 12: "ImageData", 36: "Silence",
}
_V1_CODES = {name: code for code, name in _V1_TYPES.items()}



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


# ----------------------------------------------------------------------------------------------
# Protobuf wire format: decoding.

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


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
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if pos + size > end:
                raise _WireError(f"truncated fixed-width field {field} at byte {pos}")
            value = buf[pos:pos + size]
            pos += size
        elif wire == _LEN:
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
        width_wire = _I32 if self.dtype.itemsize == 4 else _I64
        if wire not in (_LEN, width_wire):
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
            dims.extend(_packed_varints(value) if wire == _LEN else [value])
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
        if field == 7 and wire == _LEN:
            shape = _decode_blob_shape(value)
        elif field == 5:
            data.add(wire, value)
        elif field == 8:
            double_data.add(wire, value)
        elif field in (1, 2, 3, 4) and wire == _VARINT:
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
        if field == 5 and wire == _VARINT:
            group = value
    return group


def _decode_layer(buf, v1):
    """Decodes a LayerParameter (v1=False) or V1LayerParameter (v1=True) into a CaffeLayer."""
    name_field, type_field, blob_field, conv_field = (4, 5, 6, 10) if v1 else (1, 2, 7, 106)
    name, type_, blobs, group = None, None, [], 1
    for field, wire, value in _iter_fields(buf):
        if field == name_field and wire == _LEN:
            name = bytes(value).decode("utf-8")
        elif field == type_field:
            if v1 and wire == _VARINT:
                type_ = _V1_TYPES.get(value, f"V1Type{value}")
            elif not v1 and wire == _LEN:
                type_ = bytes(value).decode("utf-8")
        elif field == blob_field and wire == _LEN:
            blobs.append(_decode_blob(value))
        elif field == conv_field and wire == _LEN:
            group = _decode_group(value)
        elif v1 and field == 1 and wire == _LEN:
            raise _WireError("V0LayerParameter (pre-2014 Caffe format) is not supported")
    if name is None:
        raise _WireError("a layer without a name")
    return CaffeLayer(name, type_ or "", blobs, group)


def _decode_net(buf):
    """Decodes a NetParameter into a list of CaffeLayer (both `layer` and legacy `layers`)."""
    layers = []
    for field, wire, value in _iter_fields(buf):
        if field == 100 and wire == _LEN:
            layers.append(_decode_layer(value, v1=False))
        elif field == 2 and wire == _LEN:
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
        raise CaffeModelError(
            f"{path}: not a valid .caffemodel (binary Caffe NetParameter): {e}") from None
    if not layers:
        raise CaffeModelError(
            f"{path}: no Caffe layers found (expected NetParameter field 100 `layer` "
            f"or field 2 `layers`); is this a .caffemodel?")
    return layers


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


# ----------------------------------------------------------------------------------------------
# Protobuf wire format: encoding (small files for tests and tools).


def _varint(value):
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


def _key(field, wire):
    return _varint(field << 3 | wire)


def _len_field(field, payload):
    return _key(field, _LEN) + _varint(len(payload)) + payload


def _encode_blob(array, packed, legacy_shape):
    """Encodes an array as a BlobProto (float32 `data`)."""
    array = np.asarray(array)
    flat = np.ascontiguousarray(array, dtype="<f4").ravel()
    if legacy_shape:
        if array.ndim > 4:
            raise ValueError(f"legacy blob shapes have at most 4 dims, got {array.shape}")
        dims = (1,) * (4 - array.ndim) + array.shape
        out = b"".join(_key(f, _VARINT) + _varint(d) for f, d in zip((1, 2, 3, 4), dims))
    else:
        dims = b"".join(_varint(d) for d in array.shape)
        out = _len_field(7, _len_field(1, dims) if packed else
                         b"".join(_key(1, _VARINT) + _varint(d) for d in array.shape))
    if packed:
        out += _len_field(5, flat.tobytes())
    else:
        out += b"".join(_key(5, _I32) + v.tobytes() for v in flat)
    return out


def _encode_layer(layer, v1, packed, legacy_shape):
    """Encodes a CaffeLayer as LayerParameter or V1LayerParameter bytes."""
    name_field, type_field, blob_field, conv_field = (4, 5, 6, 10) if v1 else (1, 2, 7, 106)
    out = _len_field(name_field, layer.name.encode("utf-8"))
    if v1:
        if layer.type not in _V1_CODES:
            raise ValueError(f"no V1 type code for {layer.type!r}; known: {sorted(_V1_CODES)}")
        out += _key(type_field, _VARINT) + _varint(_V1_CODES[layer.type])
    else:
        out += _len_field(type_field, layer.type.encode("utf-8"))
    for blob in layer.blobs:
        out += _len_field(blob_field, _encode_blob(blob, packed, legacy_shape))
    if layer.group != 1:
        out += _len_field(conv_field, _key(5, _VARINT) + _varint(layer.group))
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
        _len_field(field, _encode_layer(CaffeLayer(*layer), v1, packed, legacy_shape))
        for layer in layers)
    with open(path, "wb") as f:
        f.write(payload)
    return path


# ----------------------------------------------------------------------------------------------
# Layout conversion.


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


def _layer_arrays(name, weight, bias, transposed, group=1):
    """Returns the Keras arrays [kernel, bias?] of one conv or transposed-conv layer."""
    weight = np.asarray(weight, dtype=np.float32)
    if transposed:
        arrays = [deconv_kernel_to_keras(weight, group)]
        # keras_fcn's transposed convs have no bias; a zero bias is the same function.
        if bias is not None and np.any(np.asarray(bias)):
            arrays.append(np.asarray(bias, dtype=np.float32).reshape(-1))
        return arrays
    if group != 1:
        raise ValueError(f"layer {name!r}: grouped convolution (group={group}) is not supported")
    arrays = [conv_kernel_to_keras(weight)]
    if bias is not None:
        arrays.append(np.asarray(bias, dtype=np.float32).reshape(-1))
    return arrays


def _reject(problem, strict):
    """Raises ValueError in strict mode, else warns."""
    if strict:
        raise ValueError(problem + " (pass strict=False to skip it)")
    warnings.warn(problem + "; skipped", stacklevel=3)


def _check_fixed_scale(layer, strict):
    """Checks the fixed Scale blob of the at-once FCN-8s against keras_fcn's constant."""
    expected = FIXED_SCALES[layer.name]
    values = np.concatenate([np.ravel(b) for b in layer.blobs])
    if not np.allclose(values, expected, rtol=1e-6, atol=0):
        _reject(f"Scale layer {layer.name!r} holds values in [{values.min()}, {values.max()}] "
                f"but keras_fcn applies the fixed constant {expected}", strict)


def _caffe_weight_and_bias(layer):
    if len(layer.blobs) > 2:
        raise ValueError(f"layer {layer.name!r} ({layer.type}) has {len(layer.blobs)} blobs, "
                         f"expected weight and optional bias")
    return layer.blobs[0], (layer.blobs[1] if len(layer.blobs) == 2 else None)


def convert_caffe_layers(layers, rename=None, strict=True):
    """Converts decoded Caffe layers (see read_caffe_layers) to keras_fcn weights.

    Args:
      layers: iterable of CaffeLayer.
      rename: optional {caffe_name: keras_name}, e.g. {"score59": "score_fr"}.
      strict: raise on a layer with weights that cannot be mapped (else warn and skip it).

    Returns:
      {keras_layer_name: [kernel, bias?]} in Keras layouts (float32).

    Example:
      >>> w = convert_caffe_layers([CaffeLayer("fc7", "Convolution",
      ...                            [np.zeros((8, 6, 1, 1)), np.zeros(8)])])
      >>> w["fc7"][0].shape
      (1, 1, 6, 8)
    """
    rename = dict(rename or {})
    weights = {}
    for layer in layers:
        if not layer.blobs:
            continue  # Crop, ReLU, Dropout, Eltwise, Pooling, data and loss layers
        if layer.type == "Scale" and layer.name in FIXED_SCALES:
            _check_fixed_scale(layer, strict)
            continue
        name = rename.get(layer.name, layer.name)
        if layer.type not in ("Convolution", "Deconvolution"):
            _reject(f"Caffe layer {layer.name!r} of type {layer.type!r} has weights but is not a "
                    f"Convolution or Deconvolution", strict)
            continue
        if base_layer_name(name) is None:
            _reject(f"Caffe layer {layer.name!r} has weights but keras_fcn has no layer named "
                    f"{name!r}; map it with rename={{{layer.name!r}: ...}} to one of "
                    f"{sorted(KNOWN_LAYERS)}", strict)
            continue
        weight, bias = _caffe_weight_and_bias(layer)
        transposed = layer.type == "Deconvolution"
        if transposed != (base_layer_name(name) in TRANSPOSED_LAYERS):
            raise ValueError(f"Caffe layer {layer.name!r} is a {layer.type} but keras_fcn layer "
                             f"{name!r} is {'a transposed conv' if not transposed else 'a conv'}")
        weights[name] = _layer_arrays(name, weight, bias, transposed, layer.group)
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
    return convert_caffe_layers(read_caffe_layers(path), rename=rename, strict=strict)


# ----------------------------------------------------------------------------------------------
# PyTorch state dicts.


def _unwrap_checkpoint(obj, path):
    """Returns the state dict inside a torch checkpoint (plain, or under a training key)."""
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got a {type(obj).__name__} "
                         f"(save with torch.save(model.state_dict(), path))")
    return obj


def load_torch_state_dict(path):
    """Loads a .pth state dict as numpy arrays (imports torch lazily).

    Args:
      path: a file written by torch.save(model.state_dict(), path), or a checkpoint holding one
        under "model_state_dict" / "state_dict".

    Returns:
      {key: np.ndarray}.

    Example:
      >>> sd = load_torch_state_dict("fcn8s_from_caffe.pth")  # doctest: +SKIP
    """
    path = os.fspath(path)
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError(f"reading {path} needs PyTorch (pip install torch): {e}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"{path}: not a readable PyTorch file: {e}") from None
    return {k: _to_numpy(v) for k, v in _unwrap_checkpoint(obj, path).items()}


def _to_numpy(value):
    """Returns a tensor or array-like as a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _group_state_dict(state_dict, rename, strict):
    """Groups `layer.weight` / `layer.bias` entries by (renamed) layer name."""
    layers = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        layer, _, param = key.rpartition(".")
        if param not in ("weight", "bias") or not layer:
            _reject(f"state dict entry {key!r} is not a `<layer>.weight` or `<layer>.bias`",
                    strict)
            continue
        name = rename.get(layer, layer)
        if base_layer_name(name) is None:
            _reject(f"state dict layer {layer!r} has no keras_fcn counterpart {name!r}; map it "
                    f"with rename={{{layer!r}: ...}} to one of {sorted(KNOWN_LAYERS)}", strict)
            continue
        layers.setdefault(name, {})[param] = _to_numpy(value)
    return layers


def convert_torch_state_dict(state_dict_or_path, rename=None, strict=True):
    """Converts a pytorch-fcn (torchfcn.models.FCN*) state dict to keras_fcn weights.

    Args:
      state_dict_or_path: {"conv1_1.weight": tensor_or_array, ...} or the path of a .pth file.
      rename: optional {torch_layer_name: keras_name}.
      strict: raise on an entry that cannot be mapped (else warn and skip it).

    Returns:
      {keras_layer_name: [kernel, bias?]} in Keras layouts (float32); `upscore*` layers are
      ConvTranspose2d and become Conv2DTranspose kernels (kh, kw, out, in).

    Example:
      >>> sd = {"score_fr.weight": np.zeros((21, 4096, 1, 1)), "score_fr.bias": np.zeros(21)}
      >>> [a.shape for a in convert_torch_state_dict(sd)["score_fr"]]
      [(1, 1, 4096, 21), (21,)]
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        state_dict = load_torch_state_dict(state_dict_or_path)
    elif isinstance(state_dict_or_path, dict):
        state_dict = state_dict_or_path
    else:
        raise TypeError(f"expected a state dict or a .pth path, got "
                        f"{type(state_dict_or_path).__name__}")
    weights = {}
    for name, params in _group_state_dict(state_dict, dict(rename or {}), strict).items():
        if "weight" not in params:
            raise ValueError(f"layer {name!r} has a bias but no weight in the state dict")
        weights[name] = _layer_arrays(name, params["weight"], params.get("bias"),
                                      transposed=base_layer_name(name) in TRANSPOSED_LAYERS)
    return weights


# ----------------------------------------------------------------------------------------------
# Portable named-array files.


def save_npz(weights, path):
    """Saves {layer: [arrays]} as an .npz with keys "layer/0", "layer/1", ...

    Args:
      weights: {layer_name: list of arrays}.
      path: output file; written as given (no ".npz" is appended).

    Returns:
      The path written.

    Example:
      >>> save_npz({"fc7": [np.zeros((1, 1, 4, 4)), np.zeros(4)]}, "/tmp/w.npz")  # doctest: +SKIP
    """
    arrays = {}
    for layer, values in weights.items():
        if "/" in layer:
            raise ValueError(f"layer name {layer!r} may not contain '/'")
        for i, value in enumerate(values):
            arrays[f"{layer}/{i}"] = np.asarray(value)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _npz_array(archive, key, path):
    """Reads one array of an open .npz; a damaged member raises ValueError naming the file."""
    try:
        return archive[key]
    # zipfile.BadZipFile (bad CRC) is not an OSError; numpy raises ValueError/EOFError on a bad
    # .npy header, zlib.error on bad compressed data.
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: array {key!r} is damaged: {e}") from None


def load_npz(path):
    """Loads weights saved by save_npz.

    Args:
      path: an .npz with keys "layer/index".

    Returns:
      {layer_name: [arrays in index order]}.

    Raises:
      ValueError: a key is not "layer/index" or the indices of a layer have gaps.

    Example:
      >>> weights = load_npz("fcn8s.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable .npz file: {e}") from None
    if not hasattr(archive, "files"):
        raise ValueError(f"{path}: expected an .npz archive, got a single array")
    grouped = {}
    with archive:
        for key in archive.files:
            layer, _, index = key.rpartition("/")
            if not layer or not index.isdigit():
                raise ValueError(f"{path}: key {key!r} is not of the form 'layer/index'")
            grouped.setdefault(layer, {})[int(index)] = _npz_array(archive, key, path)
    weights = {}
    for layer, by_index in grouped.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"{path}: layer {layer!r} has indices {sorted(by_index)}, "
                             f"expected 0..{len(by_index) - 1}")
        weights[layer] = [by_index[i] for i in range(len(by_index))]
    return weights
