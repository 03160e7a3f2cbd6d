"""Walkthrough 25 of weight loading and trunk alignment: a kernel with fewer input channels
loaded into any layer (its missing channels filled with the mean of its filters, exit status
0), derive_offsets' bare KeyError for a trunk without a map a variant needs, and messages that
did not say what was wrong (a truncated or empty .pth, a missing bias, a fully connected
matrix given for fc6). Each test failed before its fix."""

import os

import keras
import numpy as np
import pytest

from keras_fcn.models import CAFFE, PadToMultiple, Trunk, build_fcn, derive_offsets
from keras_fcn.weights import convert_to_keras_model, read_weights, set_weights_by_name
from keras_fcn.weights.torch import convert_torch_state_dict
from test_convert import _convert_in_process
from tiny import TINY_FC, TINY_WIDTHS

torch = pytest.importorskip("torch")

TINY_FLAGS = ("--model=fcn8s", "--num_classes=3", f"--widths={','.join(map(str, TINY_WIDTHS))}",
              f"--fc_units={TINY_FC}")


def _tiny(variant="8s", **kwargs):
    return build_fcn(variant, 3, weights=None, widths=TINY_WIDTHS, fc_units=TINY_FC,
                     name=f"fcn{variant}", **kwargs)


def _state_dict(model, seed=0):
    """A pytorch-fcn state dict of ``model``'s layers, random values in torch layouts (Conv2D
    and Conv2DTranspose kernels alike: Keras (kh, kw, a, b) -> torch (b, a, kh, kw))."""
    rng = np.random.default_rng(seed)
    sd = {}
    for name, arrays in read_weights(model).items():
        kernel = rng.normal(0, 0.1, arrays[0].shape).astype("float32")
        sd[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        if len(arrays) > 1:
            sd[f"{name}.bias"] = torch.from_numpy(rng.normal(0, 0.1, arrays[1].shape)
                                                  .astype("float32"))
    return sd


def _assert_unchanged(model, before):
    for name, arrays in read_weights(model).items():
        for got, want in zip(arrays, before[name]):
            np.testing.assert_array_equal(got, want)


# 1. Only the first convolution extends RGB filters to more input channels.


def test_a_trunk_kernel_with_fewer_input_channels_is_refused_by_the_tool(tmp_path, capsys):
    """conv3_2 (8 input channels) given a 1-channel kernel: "wrote o.keras (21 layers set)"."""
    sd = _state_dict(_tiny())
    sd["conv3_2.weight"] = torch.randn(TINY_WIDTHS[2], 1, 3, 3)
    path, out = str(tmp_path / "mid.pth"), str(tmp_path / "o.keras")
    torch.save(sd, path)
    status, err = _convert_in_process(capsys, f"--input={path}", f"--output={out}", *TINY_FLAGS)
    assert status == 2
    assert ("mid.pth does not fit the model 'fcn8s': Weight shape mismatch for layer 'conv3_2': "
            "the file has (3, 3, 1, 8), the model expects (3, 3, 8, 8).") in err
    assert not os.path.exists(out)


def test_a_head_kernel_with_one_input_channel_is_refused():
    model = _tiny()
    before = read_weights(model)
    with pytest.raises(ValueError, match=rf"^Weight shape mismatch for layer 'score_fr': the "
                                         rf"file has \(1, 1, 1, 3\), the model expects "
                                         rf"\(1, 1, {TINY_FC}, 3\)\.$"):
        set_weights_by_name(model, {"conv1_2": [np.ones((3, 3, 4, 4)), np.ones(4)],
                                    "score_fr": [np.ones((1, 1, 1, 3)), np.zeros(3)]})
    _assert_unchanged(model, before)


def test_only_the_first_convolution_of_an_rgbd_model_is_extended():
    from keras_fcn.weights.io import input_layer_names  # new in this fix

    rgbd = _tiny("16s", input_shape=(None, None, 4))
    assert input_layer_names(rgbd) == {"conv1_1"}
    assert input_layer_names(_tiny(include_preprocessing=True)) == {"conv1_1"}  # after preprocess
    rgb = np.random.default_rng(1).normal(size=(3, 3, 3, 4)).astype("float32")
    assert set_weights_by_name(rgbd, {"conv1_1": [rgb, np.zeros(4)]}) == ["conv1_1"]
    kernel = rgbd.get_layer("conv1_1").get_weights()[0]
    np.testing.assert_array_equal(kernel[:, :, :3], rgb)
    np.testing.assert_allclose(kernel[:, :, 3], rgb.mean(axis=2), rtol=1e-6)
    with pytest.raises(ValueError, match=r"layer 'conv1_2': the file has \(3, 3, 3, 4\), the "
                                         r"model expects \(3, 3, 4, 4\)\.$"):
        set_weights_by_name(rgbd, {"conv1_2": [rgb, np.zeros(4)]})


def test_a_one_channel_first_convolution_into_an_rgb_model_is_refused():
    """Its filter was copied into all three channels: three times the grey response."""
    model = _tiny()
    with pytest.raises(ValueError, match=r"layer 'conv1_1': the file has \(3, 3, 1, 4\), the "
                                         r"model expects \(3, 3, 3, 4\)\. The first "
                                         r"convolution's extra input channels are filled only "
                                         r"from RGB filters \(3 input channels.*have 1\.$"):
        set_weights_by_name(model, {"conv1_1": [np.ones((3, 3, 1, 4)), np.zeros(4)]})


# 2. derive_offsets names the map a variant needs.


def _features(x, dropout, stride8=True):
    x = PadToMultiple(32)(x)
    maps = []
    for i in range(5):
        x = keras.layers.Conv2D(1, 3, strides=2, padding="same", name=f"conv{i}")(x)
        maps.append(x)
    return (maps[2] if stride8 else None), maps[3], keras.layers.Dropout(dropout)(maps[4])


def test_derive_offsets_names_the_missing_map_and_the_variant():
    trunk = Trunk("no8", lambda x, d: _features(x, d, stride8=False), {}, CAFFE,
                  lambda model, weights: [])
    with pytest.raises(ValueError, match=r"^Trunk 'no8': features\(\) must return \(stride8, "
                                         r"stride16, stride32\); its stride-8 map is None, "
                                         r"which variant '8s' needs \(or leave '8s' out of its "
                                         r"variants\)$"):
        derive_offsets(trunk, sizes=((320, 384),))
    fewer = Trunk("no8", lambda x, d: _features(x, d, stride8=False), {}, CAFFE,
                  lambda model, weights: [], variants=("32s", "16s"))
    with_8 = Trunk("all", _features, {}, CAFFE, lambda model, weights: [])
    offsets = derive_offsets(fewer, sizes=((320, 384),))
    assert offsets["score"] == {key: value for key, value in
                                derive_offsets(with_8, sizes=((320, 384),))["score"].items()
                                if key != "8s"}


# 3. Messages.


def test_a_truncated_or_empty_pth_is_named_as_such(tmp_path):
    path = str(tmp_path / "whole.pth")
    torch.save(_state_dict(_tiny("32s")), path)
    data = open(path, "rb").read()
    cut, empty = str(tmp_path / "cut.pth"), str(tmp_path / "empty.pth")
    open(cut, "wb").write(data[:len(data) // 2])
    open(empty, "wb").close()
    with pytest.raises(ValueError, match=rf"cut\.pth: not a readable PyTorch file: the file "
                                         rf"looks truncated or damaged: a zip archive without "
                                         rf"its end \(central directory\), {len(data) // 2} "
                                         rf"bytes .*download or save it again"):
        convert_torch_state_dict(cut)
    with pytest.raises(ValueError, match=r"empty\.pth: not a readable PyTorch file: the file is "
                                         r"empty \(0 bytes\)"):
        convert_torch_state_dict(empty)


def test_a_missing_bias_is_named(tmp_path):
    sd = _state_dict(_tiny())
    del sd["conv3_2.bias"]
    path = str(tmp_path / "nobias.pth")
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"nobias\.pth does not fit the model 'fcn8s': layer "
                                         r"'conv3_2' has 2 weight arrays \(kernel, bias\), the "
                                         r"file has 1: the bias is missing \('conv3_2\.bias'\)"):
        convert_to_keras_model(path, _tiny())
    with pytest.raises(ValueError, match=r"^Layer 'conv3_2' has 2 weight arrays \(kernel, "
                                         r"bias\), the source has 1: no bias\.$"):
        set_weights_by_name(_tiny(), {"conv3_2": [np.ones((3, 3, 8, 8))]})


def test_a_fully_connected_fc6_matrix_gets_the_reshape_it_needs():
    """torchvision's VGG16 classifier.0, (4096, 25088), renamed to fc6."""
    model = _tiny()
    sd = _state_dict(model)
    conv = sd["fc6.weight"].numpy()  # (TINY_FC, 8, 7, 7)
    sd["fc6.weight"] = conv.reshape(TINY_FC, -1)  # what a Linear on flattened pool5 holds
    with pytest.raises(ValueError, match=(
            rf"layer 'fc6': expected a 4-D conv weight .*got shape \({TINY_FC}, 392\); a fully "
            r"connected layer's \(out, in\) matrix must be reshaped to the convolution's "
            rf"\(out, in, kh, kw\) first: weight\.reshape\({TINY_FC}, 8, 7, 7\)")):
        convert_torch_state_dict(sd)
    sd["fc6.weight"] = sd["fc6.weight"].reshape(TINY_FC, 8, 7, 7)  # as the message says
    set_weights_by_name(model, convert_torch_state_dict(sd))
    np.testing.assert_array_equal(model.get_layer("fc6").get_weights()[0],
                                  conv.transpose(2, 3, 1, 0))
