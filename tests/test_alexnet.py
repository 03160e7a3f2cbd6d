"""FCN-AlexNet against an independent PyTorch implementation of the reference voc-fcn-alexnet,
its Caffe net surgery, the LRN layer, and its TFLite export."""

import numpy as np
import pytest

from caffe_writer import write_caffemodel
from keras_fcn.export import check_tflite_ops, convert_to_tflite
from keras_fcn.layers import LocalResponseNormalization
from keras_fcn.models import build_fcn
from keras_fcn.weights import CaffeLayer
from keras_fcn.weights.surgery import (
    ALEXNET_FC_KERNELS,
    caffe_trunk_weights,
    fetch_caffe_imagenet_weights,
)

WIDTHS = (8, 12, 16, 12, 8)
FC = 16
CLASSES = 3
SIZES = ((1, 1), (17, 23), (45, 38), (97, 131))
CONVS = (("conv1", 11, 4, 0, 1), ("conv2", 5, 1, 2, 2), ("conv3", 3, 1, 1, 1),
         ("conv4", 3, 1, 1, 2), ("conv5", 3, 1, 1, 2))


def tiny_alexnet(**kwargs):
    return build_fcn("32s", CLASSES, weights=None, backbone="alexnet", widths=WIDTHS,
                     fc_units=FC, dropout=0.0, **kwargs)


def caffe_lrn(a, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's LRN ACROSS_CHANNELS on NHWC, written from the formula (numpy)."""
    squares = np.pad(a.astype("float64") ** 2, [(0, 0)] * 3 + [(size // 2, size // 2)])
    window = sum(squares[..., i:i + a.shape[-1]] for i in range(size))
    return a / (k + alpha / size * window) ** beta


def test_lrn_is_caffes_formula_and_serializes():
    x = np.random.default_rng(0).uniform(0, 300, (2, 3, 4, 7)).astype("float32")
    layer = LocalResponseNormalization(5, 1e-4, 0.75, name="norm1")
    np.testing.assert_allclose(np.asarray(layer(x)), caffe_lrn(x), rtol=1e-5)
    assert abs(float(np.asarray(layer(x))[0, 0, 0, 0]) - float(x[0, 0, 0, 0])) > 1e-2
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.size, clone.alpha, clone.beta, clone.k) == (5, 1e-4, 0.75, 1.0)
    with pytest.raises(ValueError, match="size=4"):
        LocalResponseNormalization(4)


def test_only_32s_and_even_widths():
    with pytest.raises(ValueError, match="variant='16s'"):
        build_fcn("16s", CLASSES, weights=None, backbone="alexnet")
    with pytest.raises(ValueError, match="widths=.*3"):
        build_fcn("32s", CLASSES, weights=None, backbone="alexnet", widths=(8, 8, 3, 8, 8))


def test_model_round_trip(tmp_path):
    import keras

    model = tiny_alexnet()
    path = str(tmp_path / "alexnet.keras")
    model.save(path)
    images = np.random.default_rng(1).uniform(-100, 100, (1, 19, 21, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(images)),
                               np.asarray(model(images)), atol=1e-5)
    assert [layer.name for layer in model.layers if layer.weights] == [
        "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "score_fr", "upscore"]
    assert model.get_layer("conv4").groups == 2 and not model.get_layer("upscore").trainable


def random_caffenet_layers(seed=0, fc_as_inner_product=True):
    """A small CaffeNet .caffemodel's layers (V1 types), with an ImageNet fc8 to be dropped."""
    rng = np.random.default_rng(seed)
    layers, previous = [CaffeLayer("data", "Data", [])], 3
    for width, (name, kernel, _, _, groups) in zip(WIDTHS, CONVS):
        fan_in = previous // groups * kernel * kernel
        weight = rng.normal(0, (2 / fan_in) ** 0.5, (width, previous // groups, kernel, kernel))
        layers += [CaffeLayer(name, "Convolution", [weight, rng.normal(0, 0.1, width)], groups),
                   CaffeLayer(f"relu{name[-1]}", "ReLU", [])]
        previous = width
    for name, fan_in, units in (("fc6", WIDTHS[-1] * 36, FC), ("fc7", FC, FC),
                                ("fc8", FC, 1000)):
        weight = rng.normal(0, (2 / fan_in) ** 0.5, (units, fan_in))
        if not fc_as_inner_product:
            kernel = 6 if name == "fc6" else 1
            weight = weight.reshape(units, -1, kernel, kernel)
        layers.append(CaffeLayer(name, "InnerProduct" if fc_as_inner_product else "Convolution",
                                 [weight, rng.normal(0, 0.1, units)]))
    return layers


def test_net_surgery_of_a_caffenet_file(tmp_path):
    layers = random_caffenet_layers()
    path = write_caffemodel(layers, str(tmp_path / "caffenet.caffemodel"), v1=True,
                            legacy_shape=True)
    model = build_fcn("32s", CLASSES, weights=path, backbone="alexnet", widths=WIDTHS,
                      fc_units=FC)
    blobs = {layer.name: [b.astype("float32") for b in layer.blobs] for layer in layers}
    np.testing.assert_array_equal(model.get_layer("conv2").get_weights()[0],
                                  blobs["conv2"][0].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        model.get_layer("fc6").get_weights()[0],
        blobs["fc6"][0].reshape(FC, WIDTHS[-1], 6, 6).transpose(2, 3, 1, 0))
    assert not np.any(model.get_layer("score_fr").get_weights()[0])
    # The same file through the converter: fc8 (the ImageNet classifier) is dropped.
    assert "fc8" not in caffe_trunk_weights(path, ALEXNET_FC_KERNELS)


def test_imagenet_file_is_fetched_once_into_the_cache(tmp_path):
    source = write_caffemodel(random_caffenet_layers(), str(tmp_path / "mirror.caffemodel"))
    cache = tmp_path / "cache"
    path = fetch_caffe_imagenet_weights("alexnet", str(cache), url=f"file://{source}")
    assert path == str(cache / "models" / "bvlc_reference_caffenet.caffemodel")
    assert fetch_caffe_imagenet_weights("alexnet", str(cache), url="file:///nowhere") == path
    with pytest.raises(ValueError, match="trunk='vgg16'"):
        fetch_caffe_imagenet_weights("vgg16")


def test_caffemodel_missing_a_trunk_layer_is_named(tmp_path):
    layers = [layer for layer in random_caffenet_layers() if layer.name != "conv3"]
    path = write_caffemodel(layers, str(tmp_path / "broken.caffemodel"))
    with pytest.raises(ValueError, match="broken.caffemodel.*conv3"):
        build_fcn("32s", CLASSES, weights=path, backbone="alexnet", widths=WIDTHS, fc_units=FC)
    with pytest.raises(ValueError, match="'fc6'.*InnerProduct"):
        caffe_trunk_weights(path)  # fc6 as InnerProduct needs its kernel size


def test_tflite_float32_and_int8_have_no_flex_ops():
    import tensorflow as tf

    from keras_fcn.export import TFLiteRunner
    from keras_fcn.models import raw_rgb_model

    model = tiny_alexnet()
    model.get_layer("score_fr").set_weights(
        [np.random.default_rng(2).normal(0, 0.3, w.shape).astype("float32")
         for w in model.get_layer("score_fr").get_weights()])
    images = np.random.default_rng(3).integers(0, 256, (4, 40, 40, 3)).astype("float32")
    float_model = convert_to_tflite(model, input_size=(40, 40))
    ops = check_tflite_ops(float_model)
    # conv1 .. fc7 and score_fr: the grouped convolutions stay CONV_2D; LRN is its own op.
    assert ops["CONV_2D"] == 8 and ops["LOCAL_RESPONSE_NORMALIZATION"] == 2, ops
    assert ops["TRANSPOSE_CONV"] == 1, ops
    want = np.asarray(raw_rgb_model(model)(images[:1]))[0]
    got = TFLiteRunner(float_model, num_threads=1).outputs(images[0].astype("uint8"))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    int8_ops = check_tflite_ops(convert_to_tflite(
        model, input_size=(40, 40), quantization="int8",
        representative_data=tf.data.Dataset.from_tensor_slices(images),
        num_calibration_images=4))
    assert int8_ops["LOCAL_RESPONSE_NORMALIZATION"] == 2 and int8_ops["DEQUANTIZE"] >= 2


try:
    import torch
except ImportError:  # the torch tests below are skipped
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def torch_fcn_alexnet(n_class, widths, fc_units):
    """voc-fcn-alexnet in PyTorch, written from the reference net.py (not from our model)."""
    nn = torch.nn

    class TorchFCNAlexNet(nn.Module):
        def __init__(self, n_class, widths, fc_units):
            super().__init__()
            previous, trunk = 3, []
            for width, (name, kernel, stride, pad, groups) in zip(widths, CONVS):
                pad = 100 if name == "conv1" else pad
                setattr(self, name, nn.Conv2d(previous, width, kernel, stride, pad,
                                              groups=groups))
                trunk += [getattr(self, name), nn.ReLU()]
                if name in ("conv1", "conv2", "conv5"):
                    trunk.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
                if name in ("conv1", "conv2"):
                    trunk.append(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0))
                previous = width
            self.fc6 = nn.Conv2d(previous, fc_units, 6)
            self.fc7 = nn.Conv2d(fc_units, fc_units, 1)
            self.score_fr = nn.Conv2d(fc_units, n_class, 1)
            self.upscore = nn.ConvTranspose2d(n_class, n_class, 63, stride=32, bias=False)
            self.trunk = nn.Sequential(*trunk, self.fc6, nn.ReLU(), nn.Dropout2d(),
                                       self.fc7, nn.ReLU(), nn.Dropout2d(), self.score_fr)

        def upscore_map(self, x):
            return self.upscore(self.trunk(x))

        def forward(self, x, offset=18):
            h = self.upscore_map(x)
            return h[:, :, offset:offset + x.shape[2], offset:offset + x.shape[3]]

    return TorchFCNAlexNet(n_class, widths, fc_units)


def torch_model_and_caffe_layers(seed):
    """The torch net with random weights (random upscore too) and its Caffe layers."""
    generator = torch.Generator().manual_seed(seed)
    net = torch_fcn_alexnet(CLASSES, WIDTHS, FC)
    layers = []
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "score_fr",
                     "upscore"):
            module = getattr(net, name)
            fan_in = module.weight[0].numel()
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                * (2.0 / fan_in) ** 0.5)
            blobs = [module.weight.numpy().copy()]
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
                blobs.append(module.bias.numpy().copy())
            kind = "Deconvolution" if name == "upscore" else "Convolution"
            layers.append(CaffeLayer(name, kind, blobs, module.groups))
    return net.eval(), layers


def torch_logits(net, images, offset=18):
    with torch.no_grad():
        out = net(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), offset)
    return out.numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The torch net and our model loaded from its weights written as a .caffemodel."""
    torch.set_num_threads(1)
    net, layers = torch_model_and_caffe_layers(seed=0)
    path = write_caffemodel(layers, str(tmp_path_factory.mktemp("caffe") / "fcn.caffemodel"))
    model = build_fcn("32s", CLASSES, weights=path, backbone="alexnet", widths=WIDTHS,
                      fc_units=FC)
    return net, model


@needs_torch
def test_logits_equal_torch_at_odd_sizes(twins):
    net, model = twins
    for i, (height, width) in enumerate(SIZES):
        images = np.random.default_rng(i).uniform(-128, 128, (1, height, width, 3)).astype(
            "float32")
        want = torch_logits(net, images)
        got = np.asarray(model(images, training=False))
        assert got.shape == want.shape == (1, height, width, CLASSES)
        scale = np.abs(want).max()
        assert scale > 0 and np.abs(got - want).max() <= 1e-4 * scale, (height, width)


@needs_torch
def test_lrn_matters_and_an_off_by_one_crop_fails(twins):
    net, model = twins
    images = np.random.default_rng(7).uniform(-128, 128, (1, 45, 38, 3)).astype("float32")
    got = np.asarray(model(images, training=False))
    scale = np.abs(got).max()
    for offset in (17, 19):
        assert np.abs(torch_logits(net, images, offset) - got).max() > 1e-2 * scale, offset
    # The LRNs change the logits at these activations: the comparison above tests them.
    lrns = [m for m in net.trunk if isinstance(m, torch.nn.LocalResponseNorm)]
    for m in lrns:
        m.alpha = 0.0
    try:
        assert np.abs(torch_logits(net, images) - got).max() > 1e-3 * scale
    finally:
        for m in lrns:
            m.alpha = 1e-4
