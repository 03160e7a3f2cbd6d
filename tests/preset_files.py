"""Released models without the network, for the preset tests: tiny versions of the presets'
architectures, their weights as Caffe layers in the reference's layouts, and small
``.caffemodel`` files in the real format (tests/caffe_writer.py) served through file:// URLs."""

import dataclasses

import numpy as np

from caffe_writer import write_caffemodel
from keras_fcn.presets import PRESETS
from keras_fcn.weights import CaffeLayer
from tiny import TINY_FC, TINY_WIDTHS

# Layers whose weights are a transposed convolution (Caffe "Deconvolution").
UPSAMPLING = ("upscore", "upscore2", "upscore16", "upscore_pool4", "upscore8")


def tiny_preset(monkeypatch, name, widths=TINY_WIDTHS, fc_units=TINY_FC):
    """Shrinks a preset of the table to tiny widths for the test; returns it."""
    preset = PRESETS[name]
    tiny = dataclasses.replace(
        preset, build_kwargs={**preset.build_kwargs, "widths": widths, "fc_units": fc_units})
    monkeypatch.setitem(PRESETS, name, tiny)
    return tiny


def caffe_layers(model, suffix="", rename=None, skip=()):
    """The model's weights as Caffe layers (the reference's layouts), random so that a
    conversion that mixes layers or axes shows."""
    rng = np.random.default_rng(len(model.layers))
    layers = []
    for layer in model.layers:
        if not layer.weights or layer.name in skip:
            continue
        base = layer.name.split("_sem")[0].split("_geo")[0]
        kind = "Deconvolution" if base in UPSAMPLING else "Convolution"
        blobs = [rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()]
        blobs = [b.transpose(3, 2, 0, 1) if b.ndim == 4 else b for b in blobs]
        name = (rename or {}).get(layer.name, layer.name)
        # A late-fusion file suffixes each stream's layers but shares the one "upscore".
        layers.append(CaffeLayer(name if base in UPSAMPLING else name + suffix, kind, blobs, 1))
    return layers


def serve(tmp_path, layers, filename="released.caffemodel"):
    """Writes the layers as a .caffemodel; returns its file:// URL and path."""
    folder = tmp_path / "server"
    folder.mkdir(exist_ok=True)
    path = write_caffemodel(layers, str(folder / filename))
    return "file://" + path, path
