"""What a built FCN is and how to feed it: its backbone, classes and input preprocessing.

A model built by keras_fcn 0.2 is an :class:`keras_fcn.models.FCN` that records its trunk
(``model.backbone``), and the trunk (:func:`keras_fcn.models.get_trunk`) knows its
preprocessing; these functions read that, looking through wrapped models too (the models of
:func:`with_preprocessing` and :func:`raw_rgb_model` hold the FCN as a nested model). Only a
model saved by keras_fcn 0.1.x, which recorded nothing, has its trunk told from its layers
(:func:`legacy_backbone`).

Example:
    >>> model = keras_fcn.build_fcn8s(num_classes=12, weights=None, backbone="mobilenet_v2")
    >>> backbone_of(model), has_preprocessing(model), num_classes_of(model)
    ('mobilenet_v2', False, 12)
    >>> deployable = raw_rgb_model(model)  # takes RGB 0..255, scales it inside
"""

import keras
import numpy as np

from keras_fcn.layers import CaffePreprocessing, ImageNetNormalization
from keras_fcn.models.mobilenet_v2 import PadToMultiple
from keras_fcn.models.trunk import CAFFE, FCN, TRUNKS, all_layers, get_trunk

__all__ = ["all_layers", "backbone_of", "legacy_backbone", "has_preprocessing",
           "preprocessing_fn", "normalization_of", "num_classes_of", "check_single_output",
           "with_preprocessing", "raw_rgb_model", "recorded_fcn", "check_rgb_input",
           "recorded_normalization"]


def recorded_fcn(model):
    """The first :class:`FCN` with a recorded trunk in ``model`` or nested in it, or None."""
    for candidate in (model, *all_layers(model)):
        if isinstance(candidate, FCN) and candidate.backbone:
            return candidate
    return None


def legacy_backbone(model):
    """The trunk of a model that recorded none (saved by keras_fcn 0.1.x), told from its
    layers: a MobileNetV2 FCN pads its input with a :class:`PadToMultiple` layer,
    FCN-GoogLeNet has ``inception_3a_*`` layers and FCN-AlexNet a ``norm1`` local response
    normalization and a VGG16 FCN ``conv1_1`` and ``fc6`` (0.1.x built no other trunks).

    Raises:
        ValueError: the model has none of these marks (it was not built by keras_fcn), so
            its input preprocessing cannot be told; preprocess its input yourself, or add
            a ``preprocess`` layer (:func:`has_preprocessing`).
    """
    names = set()
    for layer in all_layers(model):
        if isinstance(layer, PadToMultiple):
            return "mobilenet_v2"
        names.add(layer.name)
    if "inception_3a_output" in names:
        return "googlenet"
    if "norm1" in names:
        return "alexnet"
    if {"conv1_1", "fc6"} <= names:
        return "vgg16"
    raise ValueError(
        f"Cannot tell the trunk of model {model.name!r}: it records no backbone (it was not "
        "built by keras_fcn) and has none of the layers of keras_fcn's VGG16, MobileNetV2, "
        "AlexNet or GoogLeNet FCNs, so its input preprocessing is unknown. Build it with "
        "keras_fcn, or give it its own layer named 'preprocess' that takes RGB 0..255.")


def backbone_of(model):
    """The trunk an FCN was built on: ``"vgg16"``, ``"mobilenet_v2"``, ``"alexnet"``, ...

    Read from the model (``model.backbone``, kept in its saved config), or from the FCN
    nested in a wrapper; a model saved by keras_fcn 0.1.x falls back to
    :func:`legacy_backbone`.

    Raises:
        ValueError: a model that records no trunk and has no keras_fcn trunk's layers.

    Example:
        >>> backbone_of(keras_fcn.build_fcn32s(weights=None))
        'vgg16'
    """
    fcn = recorded_fcn(model)
    return fcn.backbone if fcn is not None else legacy_backbone(model)


def trunk_of(model):
    """The registered :class:`~keras_fcn.models.Trunk` that ``model`` was built on.

    Raises:
        ValueError: naming the model and its trunk, when this process has not registered
            that trunk (one's own trunk, registered by the code that built the model).

    Example:
        >>> trunk_of(keras_fcn.build_fcn32s(weights=None, backbone="alexnet")).variants
        ('32s',)
    """
    name = backbone_of(model)
    if name in TRUNKS:
        return TRUNKS[name]
    raise ValueError(f"Model {model.name!r} was built on the trunk {name!r}, which this "
                     "process has not registered: call keras_fcn.register_trunk with it (as "
                     "the code that built the model did) before this; for the command-line "
                     "tools, build and save the model with include_preprocessing=True (its "
                     "input preprocessing inside: they then need no trunk). Registered "
                     f"trunks: {tuple(TRUNKS)}")


def has_preprocessing(model):
    """Tells whether ``model`` (or a model nested in it) has a layer named ``preprocess``.

    Returns:
        True if the model takes raw RGB in [0, 255] itself.

    Example:
        >>> has_preprocessing(keras_fcn.build_fcn("32s", weights=None, include_preprocessing=True))
        True
    """
    return _preprocess_layer(model) is not None


def _preprocess_layer(model):
    """The layer named ``preprocess`` in ``model`` or nested in it, or None."""
    return next((layer for layer in all_layers(model) if layer.name == "preprocess"), None)


def preprocessing_fn(model):
    """The function on float32 RGB 0..255 arrays that ``model`` expects before its input.

    Returns:
        None if the model has its own ``preprocess`` layer; else the trunk's array
        preprocessing: ``keras_fcn.layers.preprocess_input`` (Caffe BGR mean) for VGG16,
        AlexNet and GoogLeNet, ``mobilenet_v2_preprocess_input`` (``x / 127.5 - 1``) for
        MobileNetV2.

    Raises:
        ValueError: a model without a ``preprocess`` layer whose trunk cannot be told
            (:func:`legacy_backbone`): its preprocessing is unknown.

    Example:
        >>> preprocessing_fn(keras_fcn.build_fcn8s(weights=None)) is keras_fcn.preprocess_input
        True
    """
    if has_preprocessing(model):
        return None
    check_rgb_input(model, what="keras_fcn's prediction")
    return trunk_of(model).preprocessing.array


def recorded_normalization(model):
    """The input normalization a run recorded in ``model`` (its ``fcn_info["labels"]``, written
    by `keras_fcn.training.fit`: the NYUDv2 HHA, RGB-D and fusion runs record their inputs'),
    or None."""
    info = getattr(model, "fcn_info", None)
    labels = info.get("labels") if isinstance(info, dict) else None
    normalization = labels.get("normalization") if isinstance(labels, dict) else None
    return normalization if isinstance(normalization, dict) else None


def check_rgb_input(model, normalization=None, what="keras_fcn's prediction"):
    """Refuses a model without a ``preprocess`` layer that was trained on inputs other than
    RGB photos with its trunk's preprocessing (a NYUDv2 HHA model: HHA minus its mean):
    ``what`` would feed it RGB photos preprocessed for the trunk, a silently wrong input.

    Args:
        model: a keras_fcn model.
        normalization: the normalization its labels record (a ``labels.json`` or sidecar);
            None: the model's own record (:func:`recorded_normalization`).
        what: who feeds the model, for the message.

    Raises:
        ValueError: the recorded normalization is not the trunk's (named, with its formula).
    """
    recorded = normalization or recorded_normalization(model)
    if not isinstance(recorded, dict) or has_preprocessing(model):
        return
    backbone = backbone_of(model)
    trunk = trunk_of(model).preprocessing.normalization(model)
    if recorded.get("type") == trunk.get("type"):
        return
    raise ValueError(
        f"{what} feeds RGB photos preprocessed for the {backbone} trunk "
        f"({trunk.get('formula', trunk.get('type'))}), but model {model.name!r} was trained on "
        f"other inputs: {recorded.get('formula', recorded.get('type'))} (normalization type "
        f"{recorded.get('type')!r}). Preprocess its inputs as it was trained (e.g. "
        "keras_fcn.datasets.nyud.preprocess_hha) and call model.predict on them.")


def normalization_of(model):
    """Describes the input normalization of an FCN (as written in export metadata): the
    trunk's :class:`keras_fcn.models.trunk.Preprocessing`.

    Returns:
        A dict: ``{"type": "caffe_bgr_mean", "mean_bgr": [...], "formula": ...}`` for the
        Caffe trunks (the mean of the model's own ``preprocess`` layer if it has one),
        ``{"type": "scale", "scale": 1/127.5, "offset": -1.0, "formula": ...}`` for
        MobileNetV2.

        A model with its own ``preprocess`` layer is described by that layer (a
        ``Rescaling`` as ``{"type": "scale", ...}``, a layer keras_fcn does not know as
        ``{"type": "custom", "layer": <class name>, ...}``), whatever its trunk.

    Raises:
        ValueError: a model without a ``preprocess`` layer that records no trunk and has no
            keras_fcn trunk's layers (:func:`legacy_backbone`).

    Example:
        >>> normalization_of(keras_fcn.build_fcn32s(weights=None))["type"]
        'caffe_bgr_mean'
    """
    own = _preprocess_layer(model)
    if own is None:
        return trunk_of(model).preprocessing.normalization(model)
    return _layer_normalization(own, model)


def _layer_normalization(layer, model):
    """What the model's own ``preprocess`` layer does, told from the layer itself (a wrapper
    may hold one other than the trunk's)."""
    if isinstance(layer, CaffePreprocessing):
        return CAFFE.normalization(model)
    if isinstance(layer, ImageNetNormalization):
        return get_trunk("resnet50").preprocessing.normalization(model)
    if isinstance(layer, keras.layers.Rescaling) and all(
            np.size(value) == 1 for value in (layer.scale, layer.offset)):
        scale, offset = float(np.squeeze(layer.scale)), float(np.squeeze(layer.offset))
        mobilenet = get_trunk("mobilenet_v2").preprocessing.normalization(model)
        if (scale, offset) == (mobilenet["scale"], mobilenet["offset"]):
            return mobilenet
        return {"type": "scale", "scale": scale, "offset": offset,
                "formula": f"x * {scale:g} + {offset:g} on RGB"}
    return {"type": "custom", "layer": type(layer).__name__,
            "formula": f"the model's own 'preprocess' layer ({type(layer).__name__}) on RGB 0..255"}


def num_classes_of(model):
    """The number of classes (last axis of the first output) of an FCN.

    Example:
        >>> num_classes_of(keras_fcn.build_fcn32s(num_classes=5, weights=None))
        5
    """
    return int(model.outputs[0].shape[-1])


def check_single_output(model, what="export"):
    """Refuses a model with several outputs (an auxiliary head, a two-headed FCN): the exports
    and tools/predict.py take one ``(N, H, W, C)`` logits output. Returns ``model``.

    Args:
        what: what takes the model, named in the message ("export", "prediction").

    Raises:
        ValueError: naming the model and its outputs.

    Example:
        >>> check_single_output(keras_fcn.build_fcn32s(num_classes=5, weights=None)).name
        'fcn32s'
    """
    if len(model.outputs) == 1:
        return model
    output = model.output
    names = list(output) if isinstance(output, dict) else list(model.output_names)
    keep = "export" if what == "export" else "keep"
    fix = (f"{keep} one head, e.g. keras.Model(model.inputs, model.output[{names[0]!r}])"
           if isinstance(output, dict) else f"{keep} one head, e.g. keras.Model(model.inputs, "
           "model.outputs[0])")
    aux = [name for name in names if "aux" in str(name)]
    fix = f"build it without the auxiliary head (aux=False), or {fix}" if aux else fix
    raise ValueError(
        f"Model {model.name!r} has {len(model.outputs)} outputs {names}; {what} takes a "
        f"single-output FCN (logits (N, H, W, C)): {fix}. Received: outputs={names}")


def with_preprocessing(model, input_dtype="uint8", name=None):
    """Wraps a float-input FCN so that it takes raw RGB images (``uint8`` by default).

    The preprocessing layer is the one of the model's backbone (Caffe BGR mean for VGG16,
    ``x / 127.5 - 1`` for MobileNetV2), named ``preprocess``. Use it on a model built with
    ``include_preprocessing=False`` before export, so the deployed model needs no outside
    preprocessing.

    Raises:
        ValueError: the model already has a ``preprocess`` layer, does not take 3-channel
            images, or was trained on other inputs than RGB photos (:func:`check_rgb_input`).

    Example:
        >>> trained = keras_fcn.build_fcn("32s", 21, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> deployable = with_preprocessing(trained)
        >>> deployable.predict(np.zeros((1, 64, 64, 3), np.uint8), verbose=0).shape
        (1, 64, 64, 21)
    """
    if has_preprocessing(model):
        raise ValueError(f"Model {model.name!r} already has a 'preprocess' layer.")
    check_rgb_input(model, what="with_preprocessing (and the export of raw-RGB models)")
    channels = model.inputs[0].shape[-1]
    if channels != 3:
        raise ValueError(f"with_preprocessing adds RGB preprocessing, but model {model.name!r} "
                         f"takes {channels}-channel input (shape {model.inputs[0].shape}); "
                         "preprocess such inputs yourself")
    preprocessing_layer = trunk_of(model).preprocessing.layer
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=input_dtype, name="image")
    outputs = model(preprocessing_layer(name="preprocess")(inputs))
    # an FCN (its trunk and variant recorded): its predict/fit check their inputs, refusing
    # images normalized to [0, 1] as any FCN with a `preprocess` layer does
    return FCN(inputs, outputs, name=name or f"{model.name}_{input_dtype}",
               fcn=dict(getattr(model, "fcn_info", None) or {}))


def raw_rgb_model(model):
    """Returns a model taking raw RGB in [0, 255], adding the preprocessing if it is missing.

    A model with a ``preprocess`` layer is returned as is; any other is wrapped by
    :func:`with_preprocessing` with float32 input.

    Example:
        >>> trained = keras_fcn.build_fcn("32s", 21, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> raw_rgb_model(trained).input.dtype  # trained on preprocess_input(images)
        'float32'
    """
    if has_preprocessing(model):
        return model
    return with_preprocessing(model, input_dtype="float32", name=f"{model.name}_raw_rgb")
