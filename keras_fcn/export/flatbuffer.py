"""What is inside a ``.tflite`` file: its ops and tensor shapes, read from the flatbuffer.

An exported FCN must run on the builtin TFLite runtime with static shapes:
:func:`check_tflite_ops` rejects Flex (select-TF) and custom ops, shape ops and tensors of
unknown shape, naming them.

Example:
    check_tflite_ops("fcn8s_int8.tflite")
"""

import os
import struct

import numpy as np

from keras_fcn.weights.io import TFLITE_IDENTIFIER  # the TFL3 identifier, at byte 4

# Ops whose presence means that shapes are computed at run time.
DYNAMIC_SHAPE_OPS = ("SHAPE", "RANK", "BROADCAST_ARGS", "DYNAMIC_UPDATE_SLICE", "WHERE")


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def tflite_name(tflite_model):
    """How errors name a model: its path, or the size of an in-memory flatbuffer.

    Example:
        >>> tflite_name(b"1234")
        'TFLite flatbuffer (4 bytes)'
    """
    if isinstance(tflite_model, (bytes, bytearray)):
        return f"TFLite flatbuffer ({len(tflite_model)} bytes)"
    return f"TFLite file '{os.fspath(tflite_model)}'"


def _tflite_bytes(tflite_model):
    """The flatbuffer of ``tflite_model`` (bytes, or a path that is read)."""
    if isinstance(tflite_model, (bytes, bytearray)):
        return bytes(tflite_model)
    with open(os.fspath(tflite_model), "rb") as f:
        return f.read()


def _read_tflite(tflite_model, read):
    """Returns ``read(root)`` of the parsed flatbuffer; a damaged model raises a ValueError
    naming it (the flatbuffers reader raises ``struct.error`` or ``IndexError``)."""
    data = _tflite_bytes(tflite_model)
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"{tflite_name(tflite_model)} is not a TFLite model: it has no "
                         f"{TFLITE_IDENTIFIER!r} identifier at byte 4 ({len(data)} bytes)")
    try:
        return read(_schema().Model.GetRootAsModel(data, 0))
    except (struct.error, IndexError, ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"{tflite_name(tflite_model)} is not a valid TFLite model (truncated "
                         f"or damaged): {type(error).__name__}: {error}") from error


def _subgraphs(root):
    return (root.Subgraphs(s) for s in range(root.SubgraphsLength()))


def _count_ops(root):
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}"))
    counts = {}
    for graph in _subgraphs(root):
        for o in range(graph.OperatorsLength()):
            name = codes[graph.Operators(o).OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _dynamic_tensor_names(root):
    found = []
    for graph in _subgraphs(root):
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            signature = tensor.ShapeSignatureAsNumpy()
            if not isinstance(signature, int) and np.any(signature < 0):
                found.append(tensor.Name().decode())
    return found


def tflite_ops(tflite_model):
    """Counts the ops of a TFLite model by parsing its flatbuffer (works for Flex models too).

    Args:
        tflite_model: bytes or a ``.tflite`` path.

    Returns:
        ``{op_name: count}`` over all subgraphs; custom ops by their custom code
        (Flex ops are ``Flex<TfOp>``).

    Raises:
        ValueError: the file is not a TFLite model or is damaged (the message names it).

    Example:
        tflite_ops(flatbuffer)
    """
    return _read_tflite(tflite_model, _count_ops)


def dynamic_tensors(tflite_model):
    """Names of the tensors whose shape signature has an unknown (-1) dimension.

    Example:
        dynamic_tensors("fcn8s_int8.tflite")
    """
    return _read_tflite(tflite_model, _dynamic_tensor_names)


def check_tflite_ops(tflite_model, *, allow_dynamic_shapes=False):
    """Checks that a TFLite model runs on the builtin runtime with static shapes.

    Args:
        tflite_model: bytes or a ``.tflite`` path.
        allow_dynamic_shapes: accept ``SHAPE``-like ops and unknown dimensions.

    Returns:
        The op counts (:func:`tflite_ops`).

    Raises:
        ValueError: the model has Flex (select TF) or custom ops, or dynamic-shape ops /
            tensors; the message lists them and the full op list.

    Example:
        check_tflite_ops("fcn8s_int8.tflite")
    """
    ops = tflite_ops(tflite_model)
    flex = sorted(op for op in ops if op.startswith("Flex") or not op.isupper())
    problems = []
    if flex:
        problems.append(f"Flex/custom ops {flex} (need the select-TF runtime)")
    if not allow_dynamic_shapes:
        dynamic = sorted(op for op in ops if op in DYNAMIC_SHAPE_OPS)
        if dynamic:
            problems.append(f"dynamic-shape ops {dynamic}")
        tensors = dynamic_tensors(tflite_model)
        if tensors:
            problems.append(f"{len(tensors)} tensors of unknown shape (e.g. {tensors[:3]})")
    if problems:
        raise ValueError("TFLite model is not deployable: " + "; ".join(problems)
                         + f". Op list: {ops}")
    return ops
