"""The trunk contract after a walkthrough (session 21): coord_maps and derive_offsets follow
raw Keras operations (``x + 3.0``, keras.ops: Keras' MobileNetV3 is built of them; "cannot find
the layer" before), a channels-first trunk is named as such (it was "at stride inf"), crop
offsets that do not fit a fixed input size fail at build (at the first predict before), and a
model on a trunk this process has not registered says so (not "Unknown backbone")."""

import dataclasses

import keras
import numpy as np
import pytest

import keras_fcn
from keras_fcn.models import CAFFE, PadToMultiple, Trunk, coord_maps, derive_offsets
from keras_fcn.models.trunk import TRUNKS

OWN_OFFSETS = {"score": {"32s": 0, "16s": 0, "8s": 0}, "upscore2c": 1, "upscore_pool4c": 0}


def _stack(x, raw_ops=False, data_format=None):
    x = PadToMultiple(32)(x)
    if data_format == "channels_first":
        x = keras.layers.Permute((3, 1, 2))(x)
    maps = []
    for i in range(5):
        x = keras.layers.Conv2D(4, 3, strides=2, padding="same", data_format=data_format,
                                name=f"c{i}")(x)
        if raw_ops:  # hard-swish as keras.applications.MobileNetV3 writes it
            x = x * keras.ops.relu6(x + 3.0) * (1.0 / 6.0)
        maps.append(x)
    return maps[2], maps[3], maps[4]


def _trunk(name, **kwargs):
    return Trunk(name, lambda x, dropout: _stack(x, **kwargs), OWN_OFFSETS, CAFFE,
                 lambda model, weights: [])


def test_coord_maps_follow_raw_operations_as_their_layers_would():
    inputs = keras.Input((97, 131, 3))
    conv = keras.layers.Conv2D(2, 3, strides=2, padding="valid")(inputs)
    swished = conv * keras.ops.relu6(conv + 3.0) * (1 / 6)
    for axis in (0, 1):
        assert coord_maps(keras.Model(inputs, swished), axis) == [(2.0, 1.0)]
    # one that changes the size is named, not guessed
    resized = keras.ops.image.resize(conv, (10, 10))
    with pytest.raises(ValueError, match=r"cannot follow the operation .*\(Resize\): it changes "
                                         r"the spatial size \(\(None, 48, 65, 2\) -> \(None, 10, "
                                         r"10, 2\)\)"):
        coord_maps(keras.Model(inputs, resized))


def test_a_trunk_of_raw_operations_gets_the_offsets_of_its_layers(registry):
    assert derive_offsets(_trunk("raw", raw_ops=True)) == derive_offsets(_trunk("plain"))
    keras_fcn.register_trunk(_trunk("raw", raw_ops=True))
    model = keras_fcn.build_fcn8s(3, input_shape=(96, 64, 3), weights=None, backbone="raw")
    for axis in (0, 1):
        assert coord_maps(model, axis) == [(1.0, -4.5), (1.0, -0.5), (1.0, 3.5)]


def test_keras_mobilenet_v3_small_is_a_trunk_of_ones_own(registry):
    def features(x, dropout):
        x = PadToMultiple(32)(x)
        net = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                  input_tensor=x, include_preprocessing=False)
        return tuple(net.get_layer(f"expanded_conv_{i}_add").output for i in (2, 7, 10))

    trunk = Trunk("mnv3", features, {}, CAFFE, lambda model, weights: [])
    trunk = keras_fcn.register_trunk(dataclasses.replace(trunk, offsets=derive_offsets(trunk)))
    assert trunk.offsets == OWN_OFFSETS
    model = keras_fcn.build_fcn8s(3, weights=None, backbone="mnv3")
    image = np.random.default_rng(0).uniform(0, 255, (1, 33, 47, 3)).astype("float32")
    assert model(image).shape == (1, 33, 47, 3)


def test_a_channels_first_trunk_is_named(registry):
    keras_fcn.register_trunk(_trunk("nchw", data_format="channels_first"))
    with pytest.raises(ValueError, match=r"^Trunk 'nchw': .*maps must be channels last \(N, H, "
                                         r"W, C\), but the stride-8 map looks channels first: "
                                         r"its last axis grows with the input \(64 for 512x512, "
                                         r"128 for 1024x1024\)"):
        keras_fcn.build_fcn8s(3, weights=None, backbone="nchw")


def test_offsets_that_do_not_fit_a_fixed_input_size_fail_at_build(registry):
    vgg_like = dataclasses.replace(
        _trunk("tight"), offsets={"score": {"32s": 19, "16s": 27, "8s": 31},
                                  "score_pool4c": 5, "score_pool3c": 9})
    keras_fcn.register_trunk(vgg_like)
    with pytest.raises(ValueError, match=r"Layer 'score_pool4c' crops a window of 6 at offset 5 "
                                         r"along height, but its input has only 4.*"
                                         r"keras_fcn\.derive_offsets"):
        keras_fcn.build_fcn8s(3, input_shape=(64, 64, 3), weights=None, backbone="tight")


def test_a_model_on_a_trunk_not_registered_here_says_so(registry):
    keras_fcn.register_trunk(_trunk("mine"))
    model = keras_fcn.build_fcn32s(3, weights=None, backbone="mine")
    del TRUNKS["mine"]  # a new process that did not register it
    for recorded in (None, {"type": "mean", "mean": [1.0, 2.0, 3.0]}):  # its labels' record too
        if recorded is not None:
            model.fcn_info["labels"] = {"num_classes": 3, "normalization": recorded}
        with pytest.raises(ValueError, match=r"^Model 'fcn32s_mine' was built on the trunk "
                                             r"'mine', which this process has not registered: "
                                             r"call keras_fcn\.register_trunk"):
            keras_fcn.predict(model, np.zeros((8, 8, 3), np.uint8))
