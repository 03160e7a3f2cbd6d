"""Where an FCN's pixels sit on its input: Caffe's ``coord_map`` for Keras graphs, and the crop
offsets that align a trunk of one's own.

The reference computes its crop offsets from the net's geometry (Caffe's ``coord_map``: each
layer of kernel ``k``, stride ``s`` and top padding ``p`` puts its output pixel ``y`` on input
coordinate ``s * y + (k - 1) / 2 - p``). :func:`coord_maps` does the same over a Keras model
built at a fixed input size, along every path of the graph (the FCN-8s has three: the
``fc7``, ``pool4`` and ``pool3`` paths), and :func:`derive_offsets` gives the
:class:`~keras_fcn.models.Trunk` ``offsets`` for which the heads line up a trunk's feature
maps with each other and the output with the input: the shipped trunks' offsets are derived
again in tests/test_alignment.py.

A map is a pair ``(scale, offset)``: pixel ``y`` of the tensor is centred on input row (or
column) ``scale * y + offset``, pixel ``i`` of the input covering ``[i - 0.5, i + 0.5]``. An
FCN's output is aligned when every path maps to ``(1.0, 0.0)``.

Example:
    >>> model = keras_fcn.build_fcn("32s", 2, input_shape=(97, 131, 3), weights=None,
    ...                             widths=(4, 4, 8, 8, 8), fc_units=8)
    >>> coord_maps(model)
    [(1.0, 0.0)]
"""

import itertools
import math

import keras

from keras_fcn.layers import CropToReference, ResizeToReference
from keras_fcn.models.heads import DEPTHS, SKIPS, depth_of
from keras_fcn.models.trunk import PAPER_VARIANTS

MERGES = (keras.layers.Add, keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum,
          keras.layers.Multiply, keras.layers.Subtract, keras.layers.Concatenate)
GLOBAL_POOLS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
WINDOWED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
            keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
# Input sizes whose halvings are odd at one level each (rows 320 + 2**k, columns 384 + 2**k;
# 320 and 384 halve to even sizes down to stride 32): a trunk whose grid moves between them
# (stride-2 "same" layers pad by one pixel more at odd sizes, at whatever depth) cannot be
# aligned by fixed crops.
PROBE_SIZES = tuple((320 + r, 384 + r) for r in (0, 1, 2, 4, 8, 16))
STRIDES = (8, 16, 32)  # of a trunk's three feature maps


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _pair(value, axis):
    return value[axis] if isinstance(value, (list, tuple)) else value


def _local_map(layer, axis, inputs, output):
    """``(s, t)``: output pixel ``y`` of ``layer`` is centred on ``s * y + t`` of its (first)
    input's grid; None for a layer that keeps every pixel where it is. A layer of one's own
    that moves pixels says where by a method ``coord_map(axis)`` returning ``(s, t)`` (as
    ``PadToMultiple``)."""
    if callable(getattr(layer, "coord_map", None)):  # a layer of one's own says it
        return layer.coord_map(axis)
    if isinstance(layer, MERGES):
        return None
    config = layer.get_config()
    size = inputs[0].shape[1 + axis]
    if isinstance(layer, keras.layers.Conv2DTranspose):
        if config["padding"] != "valid":
            raise ValueError(f"coord_maps follows transposed convolutions with padding='valid' "
                             f"only. Received: layer {layer.name!r} with "
                             f"padding={config['padding']!r}")
        stride = _pair(config["strides"], axis)
        extent = (_pair(config["kernel_size"], axis) - 1) * _pair(
            config.get("dilation_rate", 1), axis) + 1
        return 1 / stride, -(extent - 1) / (2 * stride)
    if isinstance(layer, WINDOWED):
        kernel = _pair(config.get("kernel_size", config.get("pool_size")), axis)
        stride = _pair(config.get("strides") or config.get("pool_size"), axis)
        extent = (kernel - 1) * _pair(config.get("dilation_rate", 1), axis) + 1
        top = 0
        if config["padding"] == "same":
            if size is None:
                raise ValueError(f"coord_maps needs a model built at a fixed input size (a "
                                 f"'same' layer pads by its input size). Received: layer "
                                 f"{layer.name!r} with input shape {tuple(inputs[0].shape)}")
            top = max((-(-size // stride) - 1) * stride + extent - size, 0) // 2
        return stride, (extent - 1) / 2 - top
    if isinstance(layer, CropToReference):
        return 1, layer.offset
    if isinstance(layer, keras.layers.Cropping2D):
        return 1, layer.cropping[axis][0]
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return 1, -layer.padding[axis][0]
    if isinstance(layer, (ResizeToReference, keras.layers.UpSampling2D)):
        if size is None or output.shape[1 + axis] is None:
            raise ValueError(f"coord_maps needs a model built at a fixed input size (a resize "
                             f"maps by its sizes' ratio). Received: layer {layer.name!r} with "
                             f"input shape {tuple(inputs[0].shape)}")
        ratio = size / output.shape[1 + axis]  # half-pixel centres
        return ratio, ratio / 2 - 0.5
    if inputs[0].shape[1 + axis] != output.shape[1 + axis] or inputs[0].shape[1 + axis] is None:
        raise ValueError(
            f"coord_maps cannot follow layer {layer.name!r} ({type(layer).__name__}): it changes "
            f"the spatial size ({tuple(inputs[0].shape)} -> {tuple(output.shape)}) and is no "
            "convolution, pooling, padding, crop or resize it knows (or the model has no fixed "
            "input size)")
    return None


def coord_maps(model, axis=0, tensor=None):
    """The input coordinates of ``tensor``'s pixels (the model's first output by default), one
    map per distinct path from the input: a sorted list of ``(scale, offset)``, pixel ``y``
    centred on input coordinate ``scale * y + offset`` along ``axis`` (0 rows, 1 columns).

    Args:
        model: a functional ``keras.Model`` built at a fixed input size, its layers and
            nested models applied once each (``keras.applications`` trunks built with
            ``input_tensor=``). A tensor that comes from a global pooling (squeeze-excite's
            channel weights) has no grid and is left out where it is merged with a map.
        axis: 0 for rows, 1 for columns.
        tensor: a tensor of ``model``'s graph, e.g. a trunk feature map.

    Raises:
        ValueError: a layer it cannot follow (named), or a model of unknown input size.

    Example:
        >>> model = keras_fcn.build_fcn8s(2, input_shape=(97, 131, 3), weights=None,
        ...                               backbone="mobilenet_v2")
        >>> coord_maps(model)  # the fc7, pool4 and pool3 paths: +4, -4 and 0 pixels
        [(1.0, -4.5), (1.0, -0.5), (1.0, 3.5)]
    """
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (rows) or 1 (columns). Received: axis={axis!r}")
    found = _tracer(model, axis)(model.outputs[0] if tensor is None else tensor)
    if found is GLOBAL:
        raise ValueError(f"coord_maps: {tensor!r} of model {model.name!r} has no spatial grid "
                         "(it comes from a global pooling or a tensor of another rank)")
    return sorted(found)


# What a tensor without a spatial grid maps to: a global pooling's output and all it feeds
# alone (squeeze-excite's channel weights), dropped where merged with a map.
GLOBAL = frozenset()


def _call_node(layer):
    """The node of ``layer``'s one call in the graph (Keras keeps no public handle on a nested
    model's outer tensors)."""
    nodes = getattr(layer, "_inbound_nodes", None)  # pylint: disable=protected-access
    if not nodes or len(nodes) != 1:
        raise ValueError(f"coord_maps cannot follow the nested model {layer.name!r} (called "
                         f"{len(nodes or ())} times): build its layers on the input tensor "
                         "instead (keras.applications: input_tensor=x)")
    return nodes[0]


def _tracer(model, axis):
    """``maps(tensor)``: the set of ``(scale, offset)`` of a tensor of ``model``'s graph, or
    :data:`GLOBAL`; nested models are followed into."""
    producers = {}
    # a Functional's operations: its layers and the raw ops of `x + 1.0` or `keras.ops.*`
    # (MobileNetV3's hard-swish), which are no layers; a Sequential has layers only
    for layer in getattr(model, "operations", model.layers):
        outputs = _call_node(layer).output_tensors if isinstance(layer, keras.Model) \
            else _as_list(layer.output)
        for index, out in enumerate(outputs):
            producers[id(out)] = (layer, index)
    memo = {id(source): {(1.0, 0.0)} for source in model.inputs}  # (a Sequential's too)

    def compose(outer, inner):
        if outer is GLOBAL or inner is GLOBAL:
            return GLOBAL
        return {(float(a * s), float(a * t + b)) for a, b in outer for s, t in inner}

    def maps(node):
        if id(node) in memo:
            return memo[id(node)]
        if id(node) not in producers:
            raise ValueError(f"coord_maps cannot find the layer or operation that made {node!r} "
                             f"in model {model.name!r} (a layer applied more than once?)")
        layer, index = producers[id(node)]
        if isinstance(layer, keras.layers.InputLayer):
            found = {(1.0, 0.0)}
        elif isinstance(layer, keras.Model):
            call = _call_node(layer)
            inner = _tracer(layer, axis)(layer.outputs[index])
            found = compose(maps(_as_list(call.input_tensors)[0]), inner)
        elif len(node.shape) != 4 or isinstance(layer, GLOBAL_POOLS):
            found = GLOBAL
        elif not isinstance(layer, keras.layers.Layer):  # a raw op: elementwise, as a merge
            found = _raw_op_map(layer, axis, node, maps)
        else:
            inputs = _as_list(layer.input)
            sources = inputs if isinstance(layer, MERGES) else inputs[:1]
            traced = [maps(source) for source in sources]
            gridded = [t for t in traced if t is not GLOBAL]
            if not gridded:
                found = GLOBAL
            else:
                local = _local_map(layer, axis, inputs, node)
                found = set().union(*gridded)
                if local is not None:
                    found = compose(found, {local})
        memo[id(node)] = found
        return found

    return maps


def _raw_op_map(op, axis, node, maps):
    """The maps of a raw operation's output (``x + 1.0``, ``keras.ops.relu6(x) / 6``): the
    union of its grid inputs' maps, when it keeps their spatial size; a ValueError naming it
    otherwise (a resize or a pad in ``keras.ops`` says nothing of where its pixels go)."""
    inputs = [t for t in _as_list(op.input) if len(getattr(t, "shape", ())) == 4]
    traced = [(t, maps(t)) for t in inputs]
    gridded = [(t, m) for t, m in traced if m is not GLOBAL]
    if not gridded:
        return GLOBAL
    for tensor, _ in gridded:
        size, out = tensor.shape[1 + axis], node.shape[1 + axis]
        if size is None or size != out:
            raise ValueError(
                f"coord_maps cannot follow the operation {op.name!r} ({type(op).__name__}): "
                f"it changes the spatial size ({tuple(tensor.shape)} -> {tuple(node.shape)}) "
                "or the model has no fixed input size; it follows elementwise keras.ops and "
                "the layers of a convolution, pooling, padding, crop or resize")
    return set().union(*(m for _, m in gridded))


def check_feature_form(trunk, features):
    """Checks that a trunk's ``features()`` returned three maps of rank 4 or None; returns the
    start of the messages about them.

    Raises:
        ValueError: naming the trunk and what it returned.
    """
    where = f"Trunk {trunk.name!r}: features() must return (stride8, stride16, stride32)"
    if not isinstance(features, (tuple, list)) or len(features) != 3:
        kind = f"{len(features)} values" if isinstance(features, (tuple, list)) else "one value"
        raise ValueError(f"{where} (None for a stride it lacks). Received: {kind}")
    for stride, feature in zip(STRIDES, features):
        if feature is not None and len(getattr(feature, "shape", ())) != 4:
            raise ValueError(f"{where} of shape (N, H, W, C). Received: stride-{stride} map "
                             f"{feature!r}")
    return where


def feature_grids(trunk, size, **options):
    """``{stride: (offset_rows, offset_cols)}`` of a trunk's feature maps at ``size``: pixel
    ``y`` of the stride-``s`` map centred on input coordinate ``s * y + offset``.

    Raises:
        ValueError: a map at another stride, or with several paths that disagree."""
    inputs = keras.Input((*size, trunk.input_channels or 3))
    features = trunk.features(inputs, trunk.dropout, **trunk.check_options(**options))
    check_feature_form(trunk, features)
    model = keras.Model(inputs, [f for f in features if f is not None])
    grids = {}
    for stride, feature in zip(STRIDES, features):
        if feature is None:
            continue
        offsets = []
        for axis in (0, 1):
            found = coord_maps(model, axis, feature)
            scales = {scale for scale, _ in found}
            if len(scales) != 1 or not math.isclose(found[0][0], stride):
                raise ValueError(
                    f"Trunk {trunk.name!r}: its stride-{stride} map is at stride "
                    f"{', '.join(f'{s:g}' for s in sorted(scales))} along "
                    f"{('rows', 'columns')[axis]} (its layers' strides). Received: input "
                    f"coordinates {found} (scale, offset) at input size {size}")
            if len(found) != 1:
                raise ValueError(
                    f"Trunk {trunk.name!r}: its stride-{stride} map merges paths whose pixels "
                    f"sit at different places on the input (offsets "
                    f"{', '.join(f'{o:g}' for _, o in found)} px along "
                    f"{('rows', 'columns')[axis]} at input size {size}): no crop aligns them "
                    "all (the two sides of a merge downsample with other paddings)")
            offsets.append(found[0][1])
        grids[stride] = tuple(offsets)
    return grids


def _best(needed_by_path):
    """The crop of least worst error over the paths' needs (some of them >= 0), among the
    non-negative integers next to them (ties: the larger crop)."""
    low, high = max(math.floor(min(needed_by_path)), 0), math.ceil(max(needed_by_path))
    return min(range(high, low - 1, -1),
               key=lambda o: max(abs(o - need) for need in needed_by_path))


def _derive_axis(grids, skip_count, kernel, axis):
    """The crops of one variant along ``axis``: ``({skip crop name: offset}, final crop)``."""
    crops = {}
    paths = [grids[32][axis]]  # offsets of the fused map's paths at the current stride
    stride = 32
    for skip, skip_stride in zip(SKIPS[:skip_count], (16, 8)):
        # upscore 2x (kernel 4, stride 2) puts pixel y on grid (y - 1.5) / 2 of the coarse map
        up = [offset - 1.5 * stride / 2 for offset in paths]
        skip_offset = grids[skip_stride][axis]
        stride = skip_stride
        need = [(u - skip_offset) / stride for u in up]  # crop the skip to the coarse grid
        if min(need) >= 0:
            crop = _best(need)
            crops[skip.skip_crop] = crop
            paths = up + [skip_offset + crop * stride]
        else:  # crop the upsampled scores to the skip grid instead
            crop = _best([-n for n in need])
            crops[skip.up_crop] = crop
            paths = [u + crop * stride for u in up] + [skip_offset]
    # the last upsampling by ``stride`` with ``kernel``: pixel y at (y - (kernel - 1) / 2) / s;
    # the final crop aligns the finest path (the last fused; at half a pixel: the smaller crop)
    up = [offset - (kernel - 1) / 2 for offset in paths]
    crop = math.floor(-up[-1]) if -up[-1] % 1 <= 0.5 else math.ceil(-up[-1])
    return crops, crop


def derive_offsets(trunk, sizes=PROBE_SIZES, **options):
    """The crop offsets (``Trunk.offsets``) that align the heads of each of ``trunk``'s paper
    variants with its feature maps and the input, from the maps' input coordinates.

    At each skip the skip scores are cropped to the upsampled grid (``score_pool4c``,
    ``score_pool3c``, as VGG16), or the upsampled scores to the skip grid (``upscore2c``,
    ``upscore_pool4c``, as MobileNetV2) when the skip map starts before it. Where the grids
    are off by half a cell (an even kernel on an even stride), each skip crop keeps the paths
    fused so far closest (least worst error; ties: the larger crop) and the final crop aligns
    the finest path with the input (at half a pixel: the smaller crop), as MobileNetV2's
    offsets. ``trunk.offsets`` is not read.

    Args:
        trunk: a :class:`keras_fcn.models.Trunk` (its ``features``, ``variants``,
            ``upsample_kernels``, ``head_variants``; any ``offsets``).
        sizes: input sizes ``(height, width)`` to measure at; the offsets must agree.
        **options: the trunk's options (``widths``...: the geometry is the same for any).

    Returns:
        ``{"score": {depth: offset}, crop name: offset, ...}`` for the trunk's paper variants.

    Raises:
        ValueError: maps that move with the input size (pad the input to a multiple of 32:
            ``keras_fcn.models.PadToMultiple``), a map at the wrong stride, a map that is None
            where one of the trunk's variants needs it (named, with the variant), or a grid
            the heads cannot reach by cropping.

    Example:
        >>> derive_offsets(keras_fcn.get_trunk("vgg16"), widths=(4, 4, 8, 8, 8), fc_units=8)
        {'score': {'32s': 19, '16s': 27, '8s': 31}, 'score_pool4c': 5, 'score_pool3c': 9}
    """
    measured = [feature_grids(trunk, size, **options) for size in sizes]
    for size, grids in zip(sizes[1:], measured[1:]):
        if grids != measured[0]:
            raise ValueError(
                f"Trunk {trunk.name!r}: its feature maps sit elsewhere on the input at size "
                f"{size} than at {sizes[0]} ({grids} against {measured[0]}, stride: (row, "
                "column) offset): fixed crops cannot align them. Stride-2 'same' layers pad "
                "odd sizes differently: pad the input to a multiple of 32 first "
                "(keras_fcn.models.PadToMultiple(32)), or use 'valid' layers after an input "
                "padding (the paper's VGG16: 100 px)")
    grids = measured[0]
    offsets = {"score": {}}
    for variant in trunk.variants:
        if variant not in PAPER_VARIANTS:
            continue
        depth = depth_of(variant, trunk)
        skip_count, last_upsample, stride = DEPTHS[depth]
        for needed in STRIDES[len(STRIDES) - 1 - skip_count:]:  # as build_fcn's check_features
            if needed not in grids:
                raise ValueError(
                    f"Trunk {trunk.name!r}: features() must return (stride8, stride16, "
                    f"stride32); its stride-{needed} map is None, which variant {variant!r} "
                    f"needs (or leave {variant!r} out of its variants)")
        kernel = trunk.upsample_kernels.get(last_upsample) or 2 * stride
        per_axis = [_derive_axis(grids, skip_count, kernel, axis) for axis in (0, 1)]
        if per_axis[0] != per_axis[1]:
            raise ValueError(f"Trunk {trunk.name!r}: rows and columns need different crops "
                             f"for variant {variant!r} ({per_axis[0]} against "
                             f"{per_axis[1]}); the heads crop both alike")
        crops, final = per_axis[0]
        for name, crop in itertools.chain(crops.items(), [("score", final)]):
            if crop < 0:
                raise ValueError(f"Trunk {trunk.name!r}: variant {variant!r} needs a crop of "
                                 f"{crop} at {name!r}: the maps start after the image; pad "
                                 "the input before the trunk")
        offsets["score"][depth] = final
        for name, crop in crops.items():
            if offsets.get(name, crop) != crop:
                raise ValueError(f"Trunk {trunk.name!r}: {name!r} needs {offsets[name]} for "
                                 f"one variant and {crop} for {variant!r}")
            offsets[name] = crop
    return offsets
