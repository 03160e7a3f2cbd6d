"""Tests of the Caffe, PyTorch and .npz weight converters (keras_fcn.weights) and of
tools/convert_weights.py, on tiny hand-made files."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

import caffe_writer
from caffe_writer import write_caffemodel
from keras_fcn import weights
from keras_fcn import weights as weights_lib
from keras_fcn.models import build_fcn
from keras_fcn.weights import (
    CaffeLayer,
    convert_caffemodel,
    convert_torch_state_dict,
    convert_torchvision_state_dict,
    load_torch_state_dict,
)
from tiny import TINY_FC, TINY_WIDTHS
from tool_flags import tool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "convert_weights.py")


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _tiny_caffe_layers():
    """A few layers in Caffe layouts: convs 3->4, a 1x1 score layer, a 2-class deconv."""
    return [
        CaffeLayer("data", "Input", []),
        CaffeLayer("conv1_1", "Convolution", [_rand(4, 3, 3, 3, seed=1), _rand(4, seed=2)]),
        CaffeLayer("relu1_1", "ReLU", []),
        CaffeLayer("fc6", "Convolution", [_rand(5, 4, 7, 7, seed=3), _rand(5, seed=4)]),
        CaffeLayer("drop6", "Dropout", []),
        CaffeLayer("score_fr", "Convolution", [_rand(2, 5, 1, 1, seed=5), _rand(2, seed=6)]),
        CaffeLayer("upscore2", "Deconvolution", [_rand(2, 2, 4, 4, seed=7)]),
        CaffeLayer("fuse_pool4", "Eltwise", []),
    ]


def _assert_keras_conv(kernel, caffe_weight):
    out_, in_, kh, kw = caffe_weight.shape
    assert kernel.shape == (kh, kw, in_, out_)
    for i, j, c, o in np.ndindex(kernel.shape):
        assert kernel[i, j, c, o] == caffe_weight[o, c, i, j]


def _assert_keras_deconv(kernel, caffe_weight):
    in_, out_, kh, kw = caffe_weight.shape
    assert kernel.shape == (kh, kw, out_, in_)
    for i, j, o, c in np.ndindex(kernel.shape):
        assert kernel[i, j, o, c] == caffe_weight[c, o, i, j]


# ------------------------------------------------------------------------------ caffemodel


@pytest.mark.parametrize("v1", [False, True], ids=["layer", "v1layers"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
@pytest.mark.parametrize("legacy_shape", [False, True], ids=["shape", "nchw_dims"])
def test_caffemodel_round_trip(tmp_path, v1, packed, legacy_shape):
    layers = [l for l in _tiny_caffe_layers() if l.type != "Input"]  # V1 has no Input type
    path = write_caffemodel(layers, str(tmp_path / "tiny.caffemodel"), v1=v1,
                                    packed=packed, legacy_shape=legacy_shape)
    blobs = weights_lib.read_caffemodel(path)
    assert list(blobs) == ["conv1_1", "fc6", "score_fr", "upscore2"]
    for layer in layers:
        if not layer.blobs:
            continue
        for got, want in zip(blobs[layer.name], layer.blobs):
            if legacy_shape:  # num/channels/height/width: 1-D biases come back as (1, 1, 1, n)
                want = want.reshape((1,) * (4 - want.ndim) + want.shape)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)


def test_read_caffe_layers_keeps_types_and_layers_without_blobs(tmp_path):
    path = write_caffemodel(_tiny_caffe_layers(), str(tmp_path / "t.caffemodel"))
    layers = weights_lib.read_caffe_layers(path)
    assert [(l.name, l.type, len(l.blobs)) for l in layers] == [
        ("data", "Input", 0), ("conv1_1", "Convolution", 2), ("relu1_1", "ReLU", 0),
        ("fc6", "Convolution", 2), ("drop6", "Dropout", 0), ("score_fr", "Convolution", 2),
        ("upscore2", "Deconvolution", 1), ("fuse_pool4", "Eltwise", 0)]


@pytest.mark.parametrize("v1", [False, True])
def test_convert_caffemodel_transposes_elementwise(tmp_path, v1):
    layers = [l for l in _tiny_caffe_layers() if l.type != "Input"]
    path = write_caffemodel(layers, str(tmp_path / "t.caffemodel"), v1=v1)
    weights = weights_lib.convert_caffemodel(path)
    assert sorted(weights) == ["conv1_1", "fc6", "score_fr", "upscore2"]
    by_name = {l.name: l for l in layers}
    for name in ("conv1_1", "fc6", "score_fr"):
        kernel, bias = weights[name]
        _assert_keras_conv(kernel, by_name[name].blobs[0])
        np.testing.assert_array_equal(bias, by_name[name].blobs[1])
    assert len(weights["upscore2"]) == 1  # no bias
    _assert_keras_deconv(weights["upscore2"][0], by_name["upscore2"].blobs[0])


def test_convert_legacy_bias_shape_is_flattened(tmp_path):
    layers = [CaffeLayer("fc7", "Convolution", [_rand(3, 2, 1, 1), _rand(3)])]
    path = write_caffemodel(layers, str(tmp_path / "t.caffemodel"), legacy_shape=True)
    kernel, bias = weights_lib.convert_caffemodel(path)["fc7"]
    assert kernel.shape == (1, 1, 2, 3) and bias.shape == (3,)


def _descriptor_classes():
    """Message classes of the caffe.proto subset, built at run time by the protobuf package.

    An encoder independent of ours, to check field numbers and wire types.
    """
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="caffe_subset_test.proto", package="caffe_subset_test", syntax="proto2")

    def message(name, *fields):
        m = proto.message_type.add(name=name)
        for fname, number, ftype, repeated, type_name, packed in fields:
            f = m.field.add(name=fname, number=number, type=ftype,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = ".caffe_subset_test." + type_name
            if packed:
                f.options.packed = True

    message("BlobShape", ("dim", 1, F.TYPE_INT64, True, None, True))
    message("BlobProto", ("shape", 7, F.TYPE_MESSAGE, False, "BlobShape", False),
            ("data", 5, F.TYPE_FLOAT, True, None, True),
            ("double_data", 8, F.TYPE_DOUBLE, True, None, True),
            ("num", 1, F.TYPE_INT32, False, None, False),
            ("channels", 2, F.TYPE_INT32, False, None, False),
            ("height", 3, F.TYPE_INT32, False, None, False),
            ("width", 4, F.TYPE_INT32, False, None, False))
    message("ConvolutionParameter", ("num_output", 1, F.TYPE_UINT32, False, None, False),
            ("group", 5, F.TYPE_UINT32, False, None, False))
    message("LayerParameter", ("name", 1, F.TYPE_STRING, False, None, False),
            ("type", 2, F.TYPE_STRING, False, None, False),
            ("bottom", 3, F.TYPE_STRING, True, None, False),
            ("blobs", 7, F.TYPE_MESSAGE, True, "BlobProto", False),
            ("convolution_param", 106, F.TYPE_MESSAGE, False, "ConvolutionParameter", False))
    message("V1LayerParameter", ("name", 4, F.TYPE_STRING, False, None, False),
            ("type", 5, F.TYPE_UINT32, False, None, False),
            ("blobs", 6, F.TYPE_MESSAGE, True, "BlobProto", False),
            ("blobs_lr", 7, F.TYPE_FLOAT, True, None, False))
    message("NetParameter", ("name", 1, F.TYPE_STRING, False, None, False),
            ("layers", 2, F.TYPE_MESSAGE, True, "V1LayerParameter", False),
            ("layer", 100, F.TYPE_MESSAGE, True, "LayerParameter", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"caffe_subset_test.{name}"))
        for name in ("NetParameter", "BlobProto")}


def test_reader_decodes_files_written_by_protobuf(tmp_path):
    net_cls = _descriptor_classes()["NetParameter"]
    net = net_cls(name="fcn")
    conv_w, conv_b, deconv_w = _rand(4, 3, 3, 3), _rand(4, seed=1), _rand(3, 1, 4, 4, seed=2)
    layer = net.layer.add(name="conv1_1", type="Convolution", bottom=["data"])
    layer.convolution_param.num_output = 4
    blob = layer.blobs.add(data=conv_w.ravel().tolist())
    blob.shape.dim.extend(conv_w.shape)
    layer.blobs.add(data=conv_b.tolist()).shape.dim.extend([4])
    deconv = net.layer.add(name="upscore", type="Deconvolution")
    deconv.convolution_param.group = 3
    deconv.blobs.add(double_data=deconv_w.ravel().astype(float).tolist()).shape.dim.extend(
        deconv_w.shape)
    old = net.layers.add(name="score_fr", type=4, blobs_lr=[1.0, 2.0])  # V1 CONVOLUTION = 4
    old.blobs.add(num=2, channels=3, height=1, width=1, data=list(range(6)))
    old.blobs.add(num=1, channels=1, height=1, width=2, data=[7.0, 8.0])
    path = tmp_path / "pb.caffemodel"
    path.write_bytes(net.SerializeToString())

    layers = {l.name: l for l in weights_lib.read_caffe_layers(path)}
    assert layers["upscore"].group == 3 and layers["conv1_1"].group == 1
    assert layers["score_fr"].type == "Convolution"
    np.testing.assert_array_equal(layers["conv1_1"].blobs[0], conv_w)
    np.testing.assert_array_equal(layers["conv1_1"].blobs[1], conv_b)
    assert layers["upscore"].blobs[0].dtype == np.float64
    np.testing.assert_array_equal(layers["upscore"].blobs[0], deconv_w)
    np.testing.assert_array_equal(layers["score_fr"].blobs[0].ravel(), np.arange(6))
    weights = weights_lib.convert_caffe_layers(layers.values())
    assert weights["upscore"][0].shape == (4, 4, 3, 3)  # grouped: one filter per class
    np.testing.assert_array_equal(weights["score_fr"][1], [7.0, 8.0])


@pytest.mark.parametrize("v1", [False, True])
@pytest.mark.parametrize("packed", [True, False])
def test_protobuf_parses_files_we_write(tmp_path, v1, packed):
    net_cls = _descriptor_classes()["NetParameter"]
    layers = [l for l in _tiny_caffe_layers() if l.type != "Input"]
    path = write_caffemodel(layers, str(tmp_path / "t.caffemodel"), v1=v1,
                                    packed=packed)
    net = net_cls.FromString(open(path, "rb").read())
    parsed = net.layers if v1 else net.layer
    assert [l.name for l in parsed] == [l.name for l in layers]
    conv = parsed[0]
    assert (conv.type == 4) if v1 else (conv.type == "Convolution")
    assert tuple(conv.blobs[0].shape.dim) == (4, 3, 3, 3)
    np.testing.assert_array_equal(np.array(conv.blobs[0].data, np.float32),
                                  layers[0].blobs[0].ravel())


def test_grouped_deconvolution_becomes_block_diagonal():
    weight = _rand(3, 1, 4, 4)  # group = 3: class c -> class c only
    kernel = weights_lib.deconv_kernel_to_keras(weight, group=3)
    assert kernel.shape == (4, 4, 3, 3)
    for o, c in np.ndindex(3, 3):
        want = weight[c, 0] if o == c else np.zeros((4, 4))
        np.testing.assert_array_equal(kernel[:, :, o, c], want)
    with pytest.raises(ValueError, match="group=2 does not divide the 3"):
        weights_lib.deconv_kernel_to_keras(weight, group=2)


def test_fixed_scale_layers_of_at_once_are_checked_and_skipped():
    layers = [CaffeLayer("scale_pool4", "Scale", [np.full(4, 0.01, np.float32)]),
              CaffeLayer("scale_pool3", "Scale", [np.full(3, 0.0001, np.float32)])]
    assert weights_lib.convert_caffe_layers(layers) == {}
    bad = [CaffeLayer("scale_pool4", "Scale", [np.full(4, 0.5, np.float32)])]
    with pytest.raises(ValueError, match="scale_pool4.*0.01"):
        weights_lib.convert_caffe_layers(bad)
    with pytest.warns(UserWarning, match="scale_pool4"):
        assert weights_lib.convert_caffe_layers(bad, strict=False) == {}


def test_unknown_layers_raise_or_warn_and_rename_maps_them():
    layers = [CaffeLayer("score59", "Convolution", [_rand(2, 5, 1, 1), _rand(2)]),
              CaffeLayer("bn1", "BatchNorm", [_rand(4), _rand(4), _rand(1)])]
    with pytest.raises(ValueError, match="'score59'.*rename"):
        weights_lib.convert_caffe_layers(layers[:1])
    with pytest.raises(ValueError, match="'bn1' of type 'BatchNorm'"):
        weights_lib.convert_caffe_layers(layers[1:])
    with pytest.warns(UserWarning):
        assert weights_lib.convert_caffe_layers(layers, strict=False) == {}
    renamed = weights_lib.convert_caffe_layers(layers[:1], rename={"score59": "score_fr"})
    _assert_keras_conv(renamed["score_fr"][0], layers[0].blobs[0])


def test_siftflow_head_suffixes_are_known_layers():
    layers = [CaffeLayer("score_fr_sem", "Convolution", [_rand(2, 5, 1, 1), _rand(2)]),
              CaffeLayer("upscore2_geo", "Deconvolution", [_rand(2, 2, 4, 4)])]
    weights = weights_lib.convert_caffe_layers(layers)
    _assert_keras_deconv(weights["upscore2_geo"][0], layers[1].blobs[0])
    sd = {"upscore16_sem.weight": _rand(2, 2, 32, 32), "score_pool4_geo.weight": _rand(2, 4, 1, 1)}
    weights = weights_lib.convert_torch_state_dict(sd)
    _assert_keras_deconv(weights["upscore16_sem"][0], sd["upscore16_sem.weight"])
    _assert_keras_conv(weights["score_pool4_geo"][0], sd["score_pool4_geo.weight"])
    with pytest.raises(ValueError, match="'score_fr_depth'"):
        weights_lib.convert_torch_state_dict({"score_fr_depth.weight": _rand(2, 4, 1, 1)})


def test_conv_named_like_an_upsampling_layer_is_an_error():
    with pytest.raises(ValueError, match="'upscore8' is a transposed conv"):
        weights_lib.convert_caffe_layers([CaffeLayer("upscore8", "Convolution", [_rand(2, 2, 4, 4)])])


def test_nonzero_deconv_bias_is_kept_zero_bias_dropped():
    weight = _rand(2, 2, 4, 4)
    zero = weights_lib.convert_caffe_layers(
        [CaffeLayer("upscore2", "Deconvolution", [weight, np.zeros(2, np.float32)])])
    assert len(zero["upscore2"]) == 1
    kept = weights_lib.convert_caffe_layers(
        [CaffeLayer("upscore2", "Deconvolution", [weight, np.ones(2, np.float32)])])
    assert len(kept["upscore2"]) == 2  # the loader then reports the mismatch


def test_truncated_caffemodel_error_names_file(tmp_path):
    path = write_caffemodel(_tiny_caffe_layers(), str(tmp_path / "cut.caffemodel"))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(weights_lib.CaffeModelError, match="cut.caffemodel.*not a valid .caffemodel"):
        weights_lib.read_caffemodel(path)


@pytest.mark.parametrize("content", [
    b"name: 'FCN'\nlayer { name: 'conv1_1' type: 'Convolution' }\n",  # a text prototxt
    b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4,  # some other binary
    b"",
])
def test_non_protobuf_file_error_names_file(tmp_path, content):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(content)
    with pytest.raises(weights_lib.CaffeModelError, match="bad.caffemodel"):
        weights_lib.convert_caffemodel(path)


def test_blob_with_wrong_element_count_is_an_error(tmp_path):
    blob = caffe_writer.len_field(7, caffe_writer.len_field(1, bytes([2, 3])))  # shape (2, 3)
    blob += caffe_writer.len_field(5, np.zeros(5, "<f4").tobytes())  # 5 values
    layer = caffe_writer.len_field(1, b"conv1_1") + caffe_writer.len_field(7, blob)
    path = tmp_path / "count.caffemodel"
    path.write_bytes(caffe_writer.len_field(100, layer))
    with pytest.raises(weights_lib.CaffeModelError, match=r"count.caffemodel.*\(2, 3\) holds 5"):
        weights_lib.read_caffemodel(path)


# ------------------------------------------------------------------------------ torch


def _tiny_state_dict():
    return {
        "conv1_1.weight": _rand(4, 3, 3, 3, seed=1), "conv1_1.bias": _rand(4, seed=2),
        "score_pool4.weight": _rand(2, 4, 1, 1, seed=3), "score_pool4.bias": _rand(2, seed=4),
        "upscore8.weight": _rand(2, 2, 16, 16, seed=5),
    }


def test_convert_torch_state_dict_of_arrays():
    sd = _tiny_state_dict()
    weights = weights_lib.convert_torch_state_dict(sd)
    assert sorted(weights) == ["conv1_1", "score_pool4", "upscore8"]
    _assert_keras_conv(weights["conv1_1"][0], sd["conv1_1.weight"])
    np.testing.assert_array_equal(weights["conv1_1"][1], sd["conv1_1.bias"])
    _assert_keras_conv(weights["score_pool4"][0], sd["score_pool4.weight"])
    assert len(weights["upscore8"]) == 1
    _assert_keras_deconv(weights["upscore8"][0], sd["upscore8.weight"])


def test_torch_state_dict_prefix_unknown_keys_and_rename():
    sd = {"module." + k: v for k, v in _tiny_state_dict().items()}
    assert sorted(weights_lib.convert_torch_state_dict(sd)) == ["conv1_1", "score_pool4", "upscore8"]
    with pytest.raises(ValueError, match="'classifier'.*rename"):
        weights_lib.convert_torch_state_dict({"classifier.weight": _rand(2, 4, 1, 1)})
    with pytest.raises(ValueError, match="'bn.running_mean'"):
        weights_lib.convert_torch_state_dict({"bn.running_mean": _rand(4)})
    with pytest.warns(UserWarning, match="classifier"):
        assert weights_lib.convert_torch_state_dict(
            {"classifier.weight": _rand(2, 4, 1, 1)}, strict=False) == {}
    renamed = weights_lib.convert_torch_state_dict(
        {"classifier.weight": _rand(2, 4, 1, 1)}, rename={"classifier": "score_fr"})
    assert renamed["score_fr"][0].shape == (1, 1, 4, 2)
    with pytest.raises(ValueError, match="'fc7' has a bias but no weight"):
        weights_lib.convert_torch_state_dict({"fc7.bias": _rand(3)})


def test_weights_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from keras_fcn import weights\n"
            "w = weights.convert_torch_state_dict({'fc7.weight': np.zeros((2, 3, 1, 1))})\n"
            "assert w['fc7'][0].shape == (1, 1, 3, 2)\n"
            "try:\n"
            "    weights.convert_torch_state_dict('x.pth')\n"
            "except ImportError as e:\n"
            "    assert 'x.pth' in str(e) and 'torch' in str(e), e\n"
            "else:\n"
            "    raise AssertionError('no ImportError')\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_pth_file_and_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v) for k, v in _tiny_state_dict().items()}
    torch.save(sd, tmp_path / "plain.pth")
    torch.save({"epoch": 3, "model_state_dict": sd}, tmp_path / "ckpt.pth")
    for name in ("plain.pth", "ckpt.pth"):
        weights = weights_lib.convert_torch_state_dict(str(tmp_path / name))
        _assert_keras_deconv(weights["upscore8"][0], _tiny_state_dict()["upscore8.weight"])
    (tmp_path / "bad.pth").write_bytes(b"not a zip or pickle")
    with pytest.raises(ValueError, match="bad.pth: not a readable PyTorch file"):
        weights_lib.convert_torch_state_dict(str(tmp_path / "bad.pth"))


def test_converted_conv_and_deconv_match_torch_outputs():
    """Numeric check of the layouts: no spatial flip between torch and TF transposed convs."""
    torch = pytest.importorskip("torch")
    import keras

    torch.set_num_threads(1)
    conv_w, conv_b = _rand(5, 3, 3, 3, seed=1), _rand(5, seed=2)
    deconv_w = _rand(5, 4, 4, 4, seed=3)  # (in=5, out=4, k, k): asymmetric in every axis
    x = _rand(1, 3, 9, 11, seed=4)
    with torch.no_grad():
        h = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(conv_w),
                                       torch.from_numpy(conv_b), padding=1)
        want = torch.nn.functional.conv_transpose2d(h, torch.from_numpy(deconv_w), stride=2)
    want = want.numpy().transpose(0, 2, 3, 1)

    weights = weights_lib.convert_torch_state_dict(
        {"conv1_2.weight": conv_w, "conv1_2.bias": conv_b, "upscore2.weight": deconv_w})
    conv = keras.layers.Conv2D(5, 3, padding="same")
    deconv = keras.layers.Conv2DTranspose(4, 4, strides=2, padding="valid", use_bias=False)
    inputs = keras.Input((9, 11, 3))
    model = keras.Model(inputs, deconv(conv(inputs)))
    conv.set_weights(weights["conv1_2"])
    deconv.set_weights(weights["upscore2"])
    got = np.asarray(model(x.transpose(0, 2, 3, 1)))
    assert got.shape == want.shape == (1, 20, 24, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())

    deconv.set_weights([weights["upscore2"][0][::-1, ::-1]])  # a flipped kernel must not match
    assert np.abs(np.asarray(model(x.transpose(0, 2, 3, 1))) - want).max() > 1e-2


# ------------------------------------------------------------------------------ npz


def test_npz_round_trip(tmp_path):
    weights = {"conv1_1": [_rand(3, 3, 3, 4), _rand(4)], "upscore2": [_rand(4, 4, 2, 2)]}
    path = str(tmp_path / "w.weights")  # no .npz suffix: written exactly where asked
    assert weights_lib.save_npz(weights, path) == path and os.path.isfile(path)
    loaded = weights_lib.load_npz(path)
    assert sorted(loaded) == sorted(weights)
    for name, arrays in weights.items():
        assert len(loaded[name]) == len(arrays)
        for got, want in zip(loaded[name], arrays):
            np.testing.assert_array_equal(got, want)
    assert set(np.load(path).files) == {"conv1_1/0", "conv1_1/1", "upscore2/0"}


def test_load_npz_errors(tmp_path):
    np.savez(tmp_path / "badkey.npz", conv1_1=np.zeros(3))
    with pytest.raises(ValueError, match="badkey.npz: key 'conv1_1'"):
        weights_lib.load_npz(tmp_path / "badkey.npz")
    np.savez(tmp_path / "gap.npz", **{"fc7/0": np.zeros(3), "fc7/2": np.zeros(3)})
    with pytest.raises(ValueError, match=r"gap.npz: layer 'fc7' has indices \[0, 2\]"):
        weights_lib.load_npz(tmp_path / "gap.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk.npz: not an \.npz archive \(numpy\.savez writes a zip file; "
                                         r"this one starts with b'junk'\)"):
        weights_lib.load_npz(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="may not contain '/'"):
        weights_lib.save_npz({"a/b": [np.zeros(1)]}, str(tmp_path / "x.npz"))


# ------------------------------------------------------------------------------ conversion


def _tiny_fcn32s_caffemodel(path, num_classes=3):
    """Caffe weights for all layers of a tiny-width FCN-32s."""
    layers, previous = [], 3
    blocks = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for (block, count), width in zip(blocks, TINY_WIDTHS):
        for i in range(1, count + 1):
            layers.append(CaffeLayer(f"conv{block}_{i}", "Convolution",
                                     [_rand(width, previous, 3, 3, seed=len(layers)), _rand(width)]))
            previous = width
    layers += [CaffeLayer("fc6", "Convolution", [_rand(TINY_FC, previous, 7, 7), _rand(TINY_FC)]),
               CaffeLayer("fc7", "Convolution", [_rand(TINY_FC, TINY_FC, 1, 1), _rand(TINY_FC)]),
               CaffeLayer("score_fr", "Convolution",
                          [_rand(num_classes, TINY_FC, 1, 1), _rand(num_classes)]),
               CaffeLayer("upscore", "Deconvolution", [_rand(num_classes, num_classes, 64, 64)])]
    return write_caffemodel(layers, str(path))


def _tiny_fcn32s():
    return build_fcn("32s", num_classes=3, weights=None, widths=TINY_WIDTHS, fc_units=TINY_FC)


def _read_saved(output):
    """{layer: arrays} of a file written by save_weights_file, read back as a user would."""
    if output.endswith(".weights.h5"):  # Keras 3 keys are layer paths: same architecture only
        model = _tiny_fcn32s()
        model.load_weights(output)
        return weights_lib.read_weights(model)
    return weights_lib.read_weights(output)


@pytest.mark.parametrize("suffix", [".weights.h5", ".npz", ".keras"])
def test_convert_to_keras_model_sets_every_layer_and_saves(tmp_path, suffix):
    source = _tiny_fcn32s_caffemodel(tmp_path / "tiny.caffemodel")
    model = _tiny_fcn32s()
    report = weights_lib.convert_to_keras_model(source, model)
    assert report["missing"] == [] and report["unused"] == []
    assert "upscore" in report["set"] and "conv1_1" in report["set"]
    output = str(tmp_path / f"out{suffix}")
    assert weights_lib.save_weights_file(model, output) == output
    assert sorted(os.listdir(tmp_path)) == sorted(["tiny.caffemodel", f"out{suffix}"])
    assert os.stat(output).st_mode & 0o777 == 0o666 & ~_umask()

    saved = _read_saved(output)
    expected = weights_lib.convert_caffemodel(source)
    for name, arrays in expected.items():
        for got, want in zip(saved[name], arrays):
            np.testing.assert_array_equal(got, want)


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_convert_reports_missing_unused_and_misfits(tmp_path):
    source = _tiny_fcn32s_caffemodel(tmp_path / "tiny.caffemodel")
    fcn16s = build_fcn("16s", num_classes=3, weights=None, widths=TINY_WIDTHS, fc_units=TINY_FC)
    report = weights_lib.convert_to_keras_model(source, fcn16s)
    assert report["missing"] == ["score_pool4", "upscore16", "upscore2"]
    assert report["unused"] == ["upscore"]
    with pytest.raises(ValueError, match=r"tiny.caffemodel does not fit the model 'fcn32s'.*score_fr"):
        weights_lib.convert_to_keras_model(
            source, build_fcn("32s", num_classes=5, weights=None, widths=TINY_WIDTHS,
                              fc_units=TINY_FC))
    with pytest.raises(ValueError, match=r"x\.txt.*\.caffemodel"):
        (tmp_path / "x.txt").write_text("x")
        weights_lib.read_converted_weights(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        weights_lib.read_converted_weights(tmp_path / "nope.pth")
    npz = weights_lib.save_npz({"score59": [np.ones((1, 1, 2, 3))]}, str(tmp_path / "w.npz"))
    renamed = weights_lib.read_converted_weights(npz, rename={"score59": "score_fr"})
    assert list(renamed) == ["score_fr"] and renamed["score_fr"][0].sum() == 6


def test_save_weights_file_refuses_to_overwrite(tmp_path):
    output = tmp_path / "out.npz"
    output.write_bytes(b"keep me")
    model = _tiny_fcn32s()
    with pytest.raises(FileExistsError, match="out.npz.*--overwrite"):
        weights_lib.save_weights_file(model, str(output))
    assert output.read_bytes() == b"keep me"
    weights_lib.save_weights_file(model, str(output), overwrite=True)
    assert sorted(weights_lib.load_npz(output))[:2] == ["conv1_1", "conv1_2"]
    with pytest.raises(ValueError, match=r"out\.h5.*\.weights\.h5"):
        weights_lib.save_weights_file(model, str(tmp_path / "out.h5"))


# ------------------------------------------------------------------------------ CLI


def test_cli_converts_and_reports_user_errors_without_traceback(tmp_path, capsys):
    source = _tiny_fcn32s_caffemodel(tmp_path / "tiny.caffemodel")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    base = [sys.executable, TOOL, "--model=fcn32s", "--num_classes=3",
            f"--widths={','.join(map(str, TINY_WIDTHS))}", f"--fc_units={TINY_FC}"]
    output = tmp_path / "out.npz"
    result = subprocess.run(base + [f"--input={source}", f"--output={output}"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "(17 layers set, 0 missing, 0 unused)" in result.stdout
    np.testing.assert_array_equal(weights_lib.load_npz(output)["upscore"][0],
                                  weights_lib.convert_caffemodel(source)["upscore"][0])

    # The user errors: the tool's main in this process (the status it returns is the exit
    # status; the run above checked the script end to end).
    output.write_bytes(b"keep me")
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\x0a\xff\xff\xff\x0f")
    status, err = _convert_in_process(capsys, *base[2:], f"--input={source}",
                                      f"--output={output}")
    assert status == 2 and "--overwrite" in err, err
    assert "Traceback" not in err
    assert output.read_bytes() == b"keep me"
    status, err = _convert_in_process(capsys, *base[2:], f"--input={bad}",
                                      f"--output={tmp_path / 'new.npz'}")
    assert status == 2, err
    assert "bad.caffemodel: not a valid .caffemodel" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "new.npz").exists()


def _convert_in_process(capsys, *args):
    """tools/convert_weights.py's main in this process: (the status it returns, stderr)."""
    capsys.readouterr()
    with tool("convert_weights", *args) as module:
        status = module.main(["convert_weights.py"])
    return status, capsys.readouterr().err


# Review 7: state dicts or Caffe files with values that must not load as weights (bfloat16,
# integers, NaN), and blob shapes that do not fit their layer.


def _conv_state_dict(dtype="float32"):
    import torch

    rng = np.random.default_rng(0)
    weight = torch.tensor(rng.normal(size=(4, 3, 3, 3)).astype("float32"))
    return {"conv1_1.weight": weight.to(getattr(torch, dtype)),
            "conv1_1.bias": torch.arange(4, dtype=torch.float32).to(getattr(torch, dtype))}


def test_a_bfloat16_state_dict_converts_like_its_float32_values():
    """numpy has no bfloat16: the conversion failed with torch's TypeError ("Got unsupported
    ScalarType BFloat16"), a traceback in tools/convert_weights.py."""
    bf16 = _conv_state_dict("bfloat16")
    as_float = {key: value.float() for key, value in bf16.items()}
    got, expected = convert_torch_state_dict(bf16), convert_torch_state_dict(as_float)
    for a, b in zip(got["conv1_1"], expected["conv1_1"]):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    tv = convert_torchvision_state_dict({"backbone.conv1.weight": bf16["conv1_1.weight"]})
    np.testing.assert_array_equal(tv["conv1"][0], expected["conv1_1"][0])


def test_an_integer_state_dict_is_refused_naming_the_key():
    """Integer (quantized, or wrong) tensors were cast to float and loaded as weights."""
    ints = _conv_state_dict("int32")
    with pytest.raises(ValueError, match=r"^state dict: entry 'conv1_1\.weight' holds int32 "
                                         r"values; expected floating-point weights"):
        convert_torch_state_dict(ints)
    with pytest.raises(ValueError, match=r"^state dict: entry 'backbone\.conv1\.weight' holds "
                                         r"int32 values"):
        convert_torchvision_state_dict({"backbone.conv1.weight": ints["conv1_1.weight"],
                                        "backbone.bn1.num_batches_tracked": 3})


def test_nan_weights_are_refused_naming_the_file_and_array(tmp_path):
    """A diverged snapshot's NaN loaded silently from .pth and .caffemodel files (the .npz,
    .h5 and .keras readers refused them)."""
    import torch

    state = _conv_state_dict()
    state["conv1_1.weight"][0, 0, 0, 0] = float("nan")
    path = str(tmp_path / "diverged.pth")
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"diverged\.pth: array 'conv1_1\.weight' has 1 NaN or "
                                         r"infinite values of 108"):
        convert_torch_state_dict(path)
    with pytest.raises(ValueError, match=r"^state dict: array 'backbone\.conv1\.weight' has 1 "):
        convert_torchvision_state_dict({"backbone.conv1.weight": state["conv1_1.weight"]})
    blob = np.zeros((4, 3, 3, 3), "float32")
    blob[1, 2, 0, 0] = np.inf
    caffemodel = write_caffemodel([CaffeLayer("conv1_1", "Convolution", [blob], 1)],
                                  str(tmp_path / "diverged.caffemodel"))
    with pytest.raises(ValueError, match=r"diverged\.caffemodel: array 'conv1_1/0' has 1 NaN or "
                                         r"infinite values of 108"):
        convert_caffemodel(caffemodel)


def test_a_pickled_model_file_is_one_line_naming_what_to_save(tmp_path):
    """torch's weights_only error is many lines with terminal colours: not a CLI error line."""
    import torch

    path = str(tmp_path / "module.pth")
    torch.save(torch.nn.Conv2d(3, 4, 3), path)
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(path)
    assert str(info.value) == (
        f"{path}: not a readable PyTorch file: it holds pickled Python objects, not only "
        "tensors (a whole model saved with torch.save(model)?); save model.state_dict() "
        "instead")


def test_a_bad_blob_shape_names_its_layer(tmp_path):
    """A grouped Deconvolution whose group does not divide its inputs, or a blob that is not
    4-D, gave an error without the layer's name."""
    from keras_fcn.weights import convert_caffe_layers, read_converted_weights

    with pytest.raises(ValueError, match=r"^layer 'upscore': group=2 does not divide the 3 "
                                         r"input channels \(weight shape \(3, 1, 4, 4\)\)$"):
        convert_caffe_layers([CaffeLayer("upscore", "Deconvolution",
                                         [np.zeros((3, 1, 4, 4), "float32")], 2)])
    with pytest.raises(ValueError, match=r"^layer 'conv1_1': expected a 4-D conv weight "
                                         r"\(out, in, kh, kw\), got shape \(4, 27\)$"):
        convert_caffe_layers([CaffeLayer("conv1_1", "Convolution",
                                         [np.zeros((4, 27), "float32")], 1)])
    with pytest.raises(IsADirectoryError, match=r"is a directory; expected one of the files"):
        read_converted_weights(str(tmp_path))


# Audit round 5 leftovers: strict weight conversion refuses a model whose trunk layers get no weights.


FLAGS = flags.FLAGS


def _tiny_named_fcn32s():
    return build_fcn("32s", 3, weights=None, name="fcn32s", widths=TINY_WIDTHS, fc_units=TINY_FC)


def _npz_without(tmp_path, *dropped):
    """The weights of a tiny FCN-32s without the `dropped` layers, as an .npz file."""
    source = weights.read_weights(_tiny_named_fcn32s())
    for name in dropped:
        del source[name]
    return weights.save_npz(source, str(tmp_path / "partial.npz"))


def test_strict_conversion_refuses_a_missing_trunk_layer(tmp_path):
    path = _npz_without(tmp_path, "conv1_1")
    model = _tiny_named_fcn32s()
    before = weights.read_weights(model)
    with pytest.raises(ValueError) as info:
        weights.convert_to_keras_model(path, model, strict=True)
    for name, arrays in weights.read_weights(model).items():  # refused before setting any
        for got, want in zip(arrays, before[name]):
            np.testing.assert_array_equal(got, want)
    assert str(info.value) == (
        f"{path} does not fit the model 'fcn32s': the model's layers without weights in the "
        "file: ['conv1_1'] (1 of its 15 trunk layers). Expected a weight for every trunk "
        "layer; strict=False (--nostrict in tools/convert_weights.py) keeps these at their "
        "initialization.")


def test_strict_conversion_names_five_missing_layers_and_the_count(tmp_path):
    path = _npz_without(tmp_path, "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1",
                        "conv3_2", "fc7")
    with pytest.raises(ValueError, match=re.escape(
            "without weights in the file: ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', "
            "'conv3_1'] and 2 more (7 of its 15 trunk layers)")):
        weights.convert_to_keras_model(path, _tiny_named_fcn32s())  # strict is the default


def test_non_strict_conversion_warns_and_keeps_the_initialization(tmp_path):
    path = _npz_without(tmp_path, "conv1_1")
    model = _tiny_named_fcn32s()
    before = model.get_layer("conv1_1").get_weights()[0].copy()
    with pytest.warns(UserWarning, match=re.escape(
            "without weights in the file: ['conv1_1'] (1 of its 15 trunk layers); they keep "
            "their initialization (strict=False).")):
        report = weights.convert_to_keras_model(path, model, strict=False)
    assert report["missing"] == ["conv1_1"] and "conv1_2" in report["set"]
    np.testing.assert_array_equal(model.get_layer("conv1_1").get_weights()[0], before)


def test_strict_conversion_accepts_missing_heads(tmp_path):
    """A stage's new heads (score*, upscore*) are not in an earlier stage's file."""
    path = _npz_without(tmp_path, "score_fr", "upscore")
    report = weights.convert_to_keras_model(path, _tiny_named_fcn32s(), strict=True)
    assert report["missing"] == ["score_fr", "upscore"] and len(report["set"]) == 15


def test_convert_weights_tool_strict_fails_on_a_missing_trunk_layer(tmp_path):
    path = _npz_without(tmp_path, "conv1_1")
    output = tmp_path / "out.npz"
    with tool("convert_weights", f"--input={path}", "--model=fcn32s", "--num_classes=3",
              f"--output={output}", f"--widths={','.join(map(str, TINY_WIDTHS))}",
              f"--fc_units={TINY_FC}") as module:
        assert FLAGS.strict
        with pytest.raises(ValueError, match=r"\['conv1_1'\] \(1 of its 15 trunk layers\)"):
            module.convert()
    assert not output.exists()


# Data / datasets / weights audit, round 4: each test failed on the code before its fix.


def test_convert_refuses_weights_that_set_no_layer(tmp_path):
    from keras_fcn import weights

    source = str(tmp_path / "other.npz")
    weights.save_npz({"foo_conv": [np.zeros((3, 3, 3, 4), "f4"), np.zeros(4, "f4")]}, source)
    with pytest.raises(ValueError, match=r"The weights of '.*other\.npz' match no layer of "
                                         r"'fcn32s': its layers are \['foo_conv'\]"):
        weights.convert_to_keras_model(source, _tiny_named_fcn32s())


def test_convert_npz_with_keras_applications_names_is_renamed(tmp_path):
    from keras_fcn import weights

    kernel = np.arange(3 * 3 * 3 * 4, dtype="f4").reshape(3, 3, 3, 4)
    source = str(tmp_path / "vgg.npz")
    weights.save_npz({"block1_conv1": [kernel, np.ones(4, "f4")]}, source)
    model = _tiny_named_fcn32s()
    with pytest.warns(UserWarning, match=r"the model's layers without weights in the file"):
        report = weights.convert_to_keras_model(source, model, strict=False)  # only conv1_1
    assert report["set"] == ["conv1_1"] and report["unused"] == []
    np.testing.assert_array_equal(model.get_layer("conv1_1").get_weights()[0], kernel)


def test_convert_weights_tool_exits_2_when_nothing_matches(tmp_path, capsys):
    # The tool's main in this process: the status it returns is the exit status
    # (test_cli_converts_and_reports_user_errors_without_traceback runs the script).
    from keras_fcn import weights

    source = str(tmp_path / "other.npz")
    weights.save_npz({"foo_conv": [np.zeros((3, 3, 3, 4), "f4"), np.zeros(4, "f4")]}, source)
    output = tmp_path / "out.keras"
    status, err = _convert_in_process(capsys, f"--input={source}", "--model=fcn32s",
                                      "--num_classes=3", "--widths=4,4,8,8,8", "--fc_units=8",
                                      f"--output={output}")
    assert status == 2, err
    errors = [line for line in err.splitlines() if line.startswith("convert_weights")]
    assert len(errors) == 1 and "match no layer of 'fcn32s'" in errors[0], err
    assert f"The weights of '{source}'" in errors[0]
    assert "Traceback" not in err and not output.exists()
