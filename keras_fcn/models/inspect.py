"""What a built FCN is and how to feed it: its backbone, classes and input preprocessing.

The one place that tells a VGG16 FCN from a MobileNetV2 one, and that knows which
preprocessing each backbone expects. It looks through wrapped models too (the models of
:func:`with_preprocessing` and :func:`raw_rgb_model` hold the FCN as a nested model).

Example:
    >>> model = build_fcn8s(num_classes=12, weights=None, backbone="mobilenet_v2")
    >>> backbone_of(model), has_preprocessing(model), num_classes_of(model)
    ('mobilenet_v2', False, 12)
    >>> deployable = raw_rgb_model(model)  # takes RGB 0..255, scales it inside
"""

import keras

from keras_fcn.layers import FCN_MEAN_BGR, CaffePreprocessing, preprocess_input
from keras_fcn.models.mobilenet_v2 import (
    INPUT_OFFSET,
    INPUT_SCALE,
    PadToMultiple,
    mobilenet_v2_preprocess_input,
    mobilenet_v2_preprocessing,
)

# Per backbone: the in-graph preprocessing layer (called with name=) and the same function
# on arrays, both taking RGB 0..255.
# Per backbone: the preprocessing layer and the same on arrays. The Caffe trunks (VGG16,
# AlexNet, GoogLeNet) take BGR minus the ImageNet mean; MobileNetV2 takes x / 127.5 - 1.
PREPROCESSING = {
    "vgg16": (CaffePreprocessing, preprocess_input),
    "alexnet": (CaffePreprocessing, preprocess_input),
    "googlenet": (CaffePreprocessing, preprocess_input),
    "mobilenet_v2": (mobilenet_v2_preprocessing, mobilenet_v2_preprocess_input),
}


def all_layers(model):
    """Yields the layers of ``model`` and, depth first, of every model nested in it."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def backbone_of(model):
    """The backbone of an FCN: ``"mobilenet_v2"``, ``"alexnet"``, ``"googlenet"`` or ``"vgg16"``.

    A MobileNetV2 FCN pads its input with a :class:`PadToMultiple` layer, FCN-GoogLeNet has
    ``inception_3a_*`` layers and FCN-AlexNet a ``norm1`` local response normalization (in the
    model or a model nested in it); every other model is taken for a VGG16 FCN.

    Example:
        >>> backbone_of(build_fcn32s(weights=None))
        'vgg16'
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
    return "vgg16"


def has_preprocessing(model):
    """Tells whether ``model`` (or a model nested in it) has a layer named ``preprocess``.

    Returns:
        True if the model takes raw RGB in [0, 255] itself.

    Example:
        >>> has_preprocessing(build_fcn("32s", weights=None, include_preprocessing=True))
        True
    """
    return any(layer.name == "preprocess" for layer in all_layers(model))


def preprocessing_fn(model):
    """The function on float32 RGB 0..255 arrays that ``model`` expects before its input.

    Returns:
        None if the model has its own ``preprocess`` layer; else
        ``keras_fcn.layers.preprocess_input`` (Caffe BGR mean) for VGG16 or
        ``mobilenet_v2_preprocess_input`` (``x / 127.5 - 1``) for MobileNetV2.

    Example:
        >>> preprocessing_fn(build_fcn8s(weights=None)) is preprocess_input
        True
    """
    if has_preprocessing(model):
        return None
    return PREPROCESSING[backbone_of(model)][1]


def normalization_of(model):
    """Describes the input normalization of an FCN (as written in export metadata).

    Returns:
        A dict: ``{"type": "caffe_bgr_mean", "mean_bgr": [...], "formula": ...}`` for the
        VGG16 models or ``{"type": "scale", "scale": 1/127.5, "offset": -1.0, "formula": ...}``
        for MobileNetV2.

    Example:
        >>> normalization_of(build_fcn32s(weights=None))["type"]
        'caffe_bgr_mean'
    """
    if backbone_of(model) == "mobilenet_v2":
        return {"type": "scale", "scale": INPUT_SCALE, "offset": INPUT_OFFSET,
                "formula": "x / 127.5 - 1 on RGB"}
    mean = next((layer.mean_bgr for layer in all_layers(model)
                 if isinstance(layer, CaffePreprocessing)), FCN_MEAN_BGR)
    return {"type": "caffe_bgr_mean", "mean_bgr": [float(m) for m in mean],
            "formula": "RGB -> BGR, minus mean_bgr, no scaling"}


def num_classes_of(model):
    """The number of classes (last axis of the first output) of an FCN.

    Example:
        >>> num_classes_of(build_fcn32s(num_classes=5, weights=None))
        5
    """
    return int(model.outputs[0].shape[-1])


def with_preprocessing(model, input_dtype="uint8", name=None):
    """Wraps a float-input FCN so that it takes raw RGB images (``uint8`` by default).

    The preprocessing layer is the one of the model's backbone (Caffe BGR mean for VGG16,
    ``x / 127.5 - 1`` for MobileNetV2), named ``preprocess``. Use it on a model built with
    ``include_preprocessing=False`` before export, so the deployed model needs no outside
    preprocessing.

    Raises:
        ValueError: the model already has a ``preprocess`` layer.

    Example:
        >>> deployable = with_preprocessing(trained_model)
        >>> deployable.predict(np.zeros((1, 64, 64, 3), np.uint8)).shape
        (1, 64, 64, 21)
    """
    if has_preprocessing(model):
        raise ValueError(f"Model {model.name!r} already has a 'preprocess' layer.")
    preprocessing_layer = PREPROCESSING[backbone_of(model)][0]
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=input_dtype, name="image")
    outputs = model(preprocessing_layer(name="preprocess")(inputs))
    return keras.Model(inputs, outputs, name=name or f"{model.name}_{input_dtype}")


def raw_rgb_model(model):
    """Returns a model taking raw RGB in [0, 255], adding the preprocessing if it is missing.

    A model with a ``preprocess`` layer is returned as is; any other is wrapped by
    :func:`with_preprocessing` with float32 input.

    Example:
        >>> deployable = raw_rgb_model(trained)  # trained on preprocess_input(images)
    """
    if has_preprocessing(model):
        return model
    return with_preprocessing(model, input_dtype="float32", name=f"{model.name}_raw_rgb")
