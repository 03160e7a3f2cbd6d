"""FCN-GoogLeNet: shapes at odd sizes, the crop offset against an independent PyTorch net, and
the ImageNet net surgery from a BVLC GoogLeNet-style .caffemodel."""

import math

import numpy as np
import pytest

from caffe_writer import write_caffemodel
from keras_fcn.models import build_fcn, googlenet_widths
from keras_fcn.models.googlenet import GOOGLENET_INCEPTIONS, GOOGLENET_OFFSET, GOOGLENET_PAD
from keras_fcn.weights import CaffeLayer
from keras_fcn.weights.surgery import caffe_trunk_weights

CLASSES = 3
WIDTHS = googlenet_widths(16)


def tiny_googlenet(**kwargs):
    return build_fcn("32s", CLASSES, weights=kwargs.pop("weights", None), backbone="googlenet",
                     widths=WIDTHS, dropout=0.0, **kwargs)


def caffe_pool(n):
    """Caffe's ceil-mode 3x3 stride-2 pool output size."""
    return max(math.ceil((n - 3) / 2) + 1, 0)


def covers(n, pad):
    """Whether the upsampled stride-32 map covers an n-pixel image with the crop at pad + 1."""
    f = (n + 2 * pad + 6 - 7) // 2 + 1
    for _ in range(4):
        f = caffe_pool(f)
    return f >= 1 and pad + 1 + n <= 32 * (f - 1) + 63


def test_padding_is_the_smallest_that_covers_every_size():
    assert GOOGLENET_OFFSET == GOOGLENET_PAD + 1
    assert all(covers(n, GOOGLENET_PAD) for n in range(1, 4000))
    assert not all(covers(n, GOOGLENET_PAD - 1) for n in range(1, 4000))


def googlenet_trunk_params():
    """Weights and biases of GoogLeNet's convolutions, from Szegedy et al.'s Table 1."""
    count = (7 * 7 * 3 + 1) * 64 + (64 + 1) * 64 + (9 * 64 + 1) * 192
    channels = 192
    for n1, n3r, n3, n5r, n5, npool in (
            (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), (192, 96, 208, 16, 48, 64),
            (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
            (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128),
            (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)):
        count += (channels + 1) * (n1 + n3r + n5r + npool)
        count += (9 * n3r + 1) * n3 + (25 * n5r + 1) * n5
        channels = n1 + n3 + n5 + npool
    assert channels == 1024
    return count


def test_shapes_names_and_variants():
    model = tiny_googlenet()
    for height, width in ((1, 1), (2, 31), (33, 17), (70, 45)):
        assert model(np.zeros((1, height, width, 3), "float32")).shape == (1, height, width,
                                                                           CLASSES)
    names = {layer.name for layer in model.layers}
    assert {"conv1_7x7_s2", "pool1_norm1", "conv2_norm2", "inception_3a_pool_proj",
            "inception_5b_output", "pool4_3x3_s2", "score_fr", "upscore", "score"} <= names
    assert not any(name.startswith("loss") for name in names)
    full = build_fcn("32s", 21, weights=None, backbone="googlenet")
    assert full.get_layer("inception_5b_output").output.shape[-1] == 1024
    trunk = sum(layer.count_params() for layer in full.layers
                if layer.name not in ("score_fr", "upscore"))
    assert trunk == googlenet_trunk_params()
    with pytest.raises(ValueError, match="variant='8s'"):
        build_fcn("8s", CLASSES, weights=None, backbone="googlenet")
    with pytest.raises(ValueError, match="fc_units=8"):
        build_fcn("32s", CLASSES, weights=None, backbone="googlenet", fc_units=8)
    with pytest.raises(ValueError, match="widths=\\(1, 2\\)"):
        build_fcn("32s", CLASSES, weights=None, backbone="googlenet", widths=(1, 2))


def bvlc_layers(model, seed=0):
    """A BVLC GoogLeNet-style .caffemodel of the model's trunk: Caffe names with "/", random
    weights, plus the classifier and an auxiliary branch that the FCN drops."""
    rng = np.random.default_rng(seed)
    layers = [CaffeLayer("data", "Input", [])]
    for layer in model.layers:
        if not layer.weights or layer.name in ("score_fr", "upscore"):
            continue
        kernel, bias = layer.get_weights()
        block = len("inception_3a") if layer.name.startswith("inception") else len("conv1")
        caffe_name = layer.name[:block] + "/" + layer.name[block + 1:]
        fan_in = np.prod(kernel.shape[:3])
        weight = rng.normal(0, (2 / fan_in) ** 0.5, kernel.shape).transpose(3, 2, 0, 1)
        layers.append(CaffeLayer(caffe_name, "Convolution",
                                 [weight, rng.normal(0, 0.1, bias.shape)]))
    layers += [CaffeLayer("loss1/conv", "Convolution", [np.ones((2, 3, 1, 1)), np.zeros(2)]),
               CaffeLayer("loss1/fc", "InnerProduct", [np.ones((4, 8)), np.zeros(4)]),
               CaffeLayer("loss3/classifier", "InnerProduct", [np.ones((1000, 64)),
                                                              np.zeros(1000)])]
    return layers


def test_imagenet_surgery_from_a_caffemodel(tmp_path):
    layers = bvlc_layers(tiny_googlenet())
    assert "inception_4e/5x5_reduce" in {layer.name for layer in layers}
    path = write_caffemodel(layers, str(tmp_path / "bvlc_googlenet.caffemodel"))
    model = tiny_googlenet(weights=path)
    weights = caffe_trunk_weights(path)
    assert not any(name.startswith("loss") for name in weights)
    blob = next(layer for layer in layers if layer.name == "inception_4e/5x5_reduce").blobs[0]
    np.testing.assert_array_equal(model.get_layer("inception_4e_5x5_reduce").get_weights()[0],
                                  blob.astype("float32").transpose(2, 3, 1, 0))
    short = [layer for layer in layers if layer.name != "inception_5b/pool_proj"]
    path = write_caffemodel(short, str(tmp_path / "short.caffemodel"))
    with pytest.raises(ValueError, match="short.caffemodel.*inception_5b_pool_proj"):
        tiny_googlenet(weights=path)


@pytest.mark.slow  # 9 s: the 57 convolutions convert slowly; AlexNet's export runs always
def test_tflite_float32_has_no_flex_ops():
    from keras_fcn.export import check_tflite_ops, convert_to_tflite

    ops = check_tflite_ops(convert_to_tflite(tiny_googlenet(), input_size=(36, 52)))
    assert ops["LOCAL_RESPONSE_NORMALIZATION"] == 2 and ops["CONCATENATION"] == 9, ops
    assert ops["CONV_2D"] == 3 + 9 * 6 + 1 and ops["TRANSPOSE_CONV"] == 1, ops


try:
    import torch
except ImportError:  # the torch test below is skipped
    torch = None


def torch_googlenet_logits(weights, images, offset):
    """An independent GoogLeNet FCN-32s in PyTorch (Caffe padding, ceil-mode pools) with
    ``weights`` ({keras name: [kernel, bias?]}), cropped at ``offset``."""
    F = torch.nn.functional

    def conv(x, name, stride=1, pad=0):
        kernel = torch.from_numpy(weights[name][0].transpose(3, 2, 0, 1).copy())
        bias = torch.from_numpy(weights[name][1]) if len(weights[name]) > 1 else None
        return F.conv2d(x, kernel, bias, stride, pad)

    def pool(x):
        return F.max_pool2d(x, 3, 2, ceil_mode=True)

    def lrn(x):
        return F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)

    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    h = lrn(pool(F.relu(conv(x, "conv1_7x7_s2", 2, GOOGLENET_PAD + 3))))
    h = F.relu(conv(h, "conv2_3x3_reduce"))
    h = pool(lrn(F.relu(conv(h, "conv2_3x3", pad=1))))
    for block, _ in GOOGLENET_INCEPTIONS:
        p = f"inception_{block}_"
        h = torch.cat([
            F.relu(conv(h, p + "1x1")),
            F.relu(conv(F.relu(conv(h, p + "3x3_reduce")), p + "3x3", pad=1)),
            F.relu(conv(F.relu(conv(h, p + "5x5_reduce")), p + "5x5", pad=2)),
            F.relu(conv(F.max_pool2d(h, 3, 1, 1), p + "pool_proj"))], dim=1)
        if block in ("3b", "4e"):
            h = pool(h)
    h = conv(h, "score_fr")
    up = torch.from_numpy(weights["upscore"][0].transpose(3, 2, 0, 1).copy())
    h = F.conv_transpose2d(h, up, stride=32)
    out = h[:, :, offset:offset + x.shape[2], offset:offset + x.shape[3]]
    return out.numpy().transpose(0, 2, 3, 1)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_logits_equal_torch_and_an_off_by_one_crop_fails(tmp_path):
    torch.set_num_threads(1)
    path = write_caffemodel(bvlc_layers(tiny_googlenet(), seed=1),
                            str(tmp_path / "bvlc_googlenet.caffemodel"))
    model = tiny_googlenet(weights=path)
    rng = np.random.default_rng(2)
    for layer in ("score_fr", "upscore"):  # random, not zero / bilinear
        model.get_layer(layer).set_weights(
            [rng.normal(0, 0.3, w.shape).astype("float32")
             for w in model.get_layer(layer).get_weights()])
    weights = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    for i, (height, width) in enumerate(((1, 1), (29, 41), (67, 50))):
        images = rng.uniform(-128, 128, (1, height, width, 3)).astype("float32")
        got = np.asarray(model(images, training=False))
        want = torch_googlenet_logits(weights, images, GOOGLENET_OFFSET)
        scale = np.abs(want).max()
        assert scale > 0 and np.abs(got - want).max() <= 1e-4 * scale, (height, width)
    for offset in (GOOGLENET_OFFSET - 1, GOOGLENET_OFFSET + 1):
        shifted = torch_googlenet_logits(weights, images, offset)
        assert np.abs(shifted - got).max() > 1e-2 * scale, offset
