"""How a preset's weights file goes into its model: one converter per kind of file.

Each :class:`keras_fcn.presets.Preset` names its converter (``converter``; the default is
:func:`convert_caffe`), so a preset of a new kind brings its own and
:func:`keras_fcn.presets.from_preset` needs no change. A converter is
``converter(preset, path, model)``: it sets the model's weights from the file at ``path`` and
returns ``{"set": [...], "missing": [...], "unused": [...]}`` (layer names) for
``from_preset`` to check, or None when it checks the whole file itself. It raises ValueError
for a file that does not convert (a layer shape, an unknown layer).

Example:
    >>> from keras_fcn.presets import get_preset
    >>> get_preset("voc-fcn8s").converter is convert_caffe
    True
"""

from keras_fcn.weights import (
    convert_caffe_layers,
    convert_to_keras_model,
    load_torchvision_weights,
    read_caffe_layers,
    set_weights_by_name,
)
from keras_fcn.weights.surgery import ALEXNET_FC_KERNELS, caffe_trunk_weights

# Late fusion: the reference suffixes each stream's layers; the streams are nested models here.
FUSION_STREAMS = (("color", "rgb_fcn"), ("hha", "hha_fcn"))
FUSION_SHARED = ("upscore",)  # one upsampling of the fused scores, the same in both streams


def convert_caffe(preset, path, model):
    """The reference's ``.caffemodel`` whose layer names are the model's (after
    ``preset.rename``); every layer's shape is checked."""
    return convert_to_keras_model(path, model, rename=preset.rename, strict=True)


def convert_late_fusion(preset, path, model):  # pylint: disable=unused-argument
    """A late-fusion ``.caffemodel`` (``conv1_1color``, ..., ``score_frhha``, one
    ``upscore``) into the two nested streams of
    :func:`keras_fcn.models.build_late_fusion_fcn`."""
    layers = [layer for layer in read_caffe_layers(path) if layer.blobs]
    report = {"set": [], "missing": [], "unused": []}
    claimed = set(FUSION_SHARED)
    for suffix, stream_name in FUSION_STREAMS:
        own = [layer._replace(name=layer.name[:-len(suffix)]) for layer in layers
               if layer.name.endswith(suffix)]
        claimed.update(layer.name + suffix for layer in own)
        shared = [layer for layer in layers if layer.name in FUSION_SHARED]
        stream = model.get_layer(stream_name)
        done = set_weights_by_name(stream, convert_caffe_layers(own + shared, strict=True))
        report["set"] += [f"{stream_name}/{layer}" for layer in done]
        report["missing"] += [f"{stream_name}/{layer.name}" for layer in stream.layers
                              if layer.weights and layer.name not in done]
    report["unused"] = sorted(layer.name for layer in layers if layer.name not in claimed)
    return report


def convert_alexnet(preset, path, model):  # pylint: disable=unused-argument
    """The released FCN-AlexNet: grouped convolutions and conv1..fc7 names, which the
    CaffeNet net surgery converts."""
    converted = caffe_trunk_weights(path, ALEXNET_FC_KERNELS)
    done = set_weights_by_name(model, converted)
    with_weights = {layer.name for layer in model.layers if layer.weights}
    return {"set": done, "missing": sorted(with_weights - set(done)),
            "unused": sorted(set(converted) - set(done))}


def convert_torchvision(preset, path, model):  # pylint: disable=unused-argument
    """torchvision's ``.pth`` state dict: every layer of the model, or an error."""
    load_torchvision_weights(model, path)
