"""Acceptance test: keras_fcn models with converted weights reproduce the PyTorch port's logits.

The PyTorch FCNs are the project's one port, benchmarks/torch_fcn.py (shared with
benchmarks/gpu.py): they follow the public port "pytorch-fcn" (torchfcn.models FCN32s, FCN16s,
FCN8s, FCN8sAtOnce) layer for layer: same attribute names (so the same state dict keys), conv1_1
padding 100, ceil-mode max pooling, fc6 7x7, bias-free ConvTranspose2d, crops 19 / 5, 27 /
5, 9, 31, and pool4 * 0.01, pool3 * 0.0001 in the at-once model. Only the channel widths are
parameters, so the tests run in seconds; filled with random weights, including non-zero score
layers and random (not bilinear) transposed-conv kernels.
"""

import importlib.util
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

_PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "torch_fcn.py")
_SPEC = importlib.util.spec_from_file_location("benchmarks_torch_fcn", _PATH)
torch_fcn = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(torch_fcn)
TorchFCN, randomize = torch_fcn.TorchFCN, torch_fcn.randomize
CONVS_PER_BLOCK = torch_fcn.CONVS_PER_BLOCK

from caffe_writer import write_caffemodel  # noqa: E402
from keras_fcn.models import build_fcn  # noqa: E402
from keras_fcn.weights import (  # noqa: E402
    CaffeLayer,
    convert_caffemodel,
    convert_torch_state_dict,
    set_weights_by_name,
)

VARIANTS = ("32s", "16s", "8s", "8s_at_once")
SIZES = ((1, 1), (17, 23), (64, 64), (97, 131))
SMALL_WIDTHS = (4, 6, 8, 10, 12)
SMALL_FC = 16
NUM_CLASSES = 3


def torch_logits(model, images_nhwc):
    with torch.no_grad():
        out = model(torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy()))
    return out.numpy().transpose(0, 2, 3, 1)


def keras_model_from(torch_model, variant, widths, fc_units, weights=None):
    """Builds our model and loads the converted state dict; checks that every layer was set."""
    model = build_fcn(variant, num_classes=NUM_CLASSES, input_shape=(None, None, 3), weights=None,
                      widths=widths, fc_units=fc_units)
    if weights is None:
        weights = convert_torch_state_dict(torch_model.state_dict())
    done = set_weights_by_name(model, weights)
    with_weights = {layer.name for layer in model.layers if layer.weights}
    assert set(done) == with_weights == set(weights), (done, with_weights, sorted(weights))
    return model


def assert_same_logits(keras_model, torch_model, height, width, seed=0):
    images = np.random.default_rng(seed).uniform(-1, 1, (1, height, width, 3)).astype("float32")
    want = torch_logits(torch_model, images)
    got = np.asarray(keras_model(images, training=False))
    assert got.shape == want.shape == (1, height, width, NUM_CLASSES)
    scale = np.abs(want).max()
    assert scale > 0
    error = np.abs(got - want).max()
    assert error <= 1e-4 * scale, f"{height}x{width}: max |diff| {error} vs max |logit| {scale}"


@pytest.fixture(autouse=True)
def _few_torch_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_state_dict_reproduces_torch_logits(variant):
    torch.manual_seed(0)
    torch_model = randomize(TorchFCN(variant, NUM_CLASSES, SMALL_WIDTHS, SMALL_FC))
    keras_model = keras_model_from(torch_model, variant, SMALL_WIDTHS, SMALL_FC)
    for i, (height, width) in enumerate(SIZES):
        assert_same_logits(keras_model, torch_model, height, width, seed=i)


def test_state_dict_keys_are_those_of_pytorch_fcn():
    keys = set(TorchFCN("8s", NUM_CLASSES).state_dict())
    convs = [f"conv{b}_{i}" for b, n in enumerate(CONVS_PER_BLOCK, 1) for i in range(1, n + 1)]
    expected = {f"{c}.{p}" for c in convs + ["fc6", "fc7", "score_fr", "score_pool4",
                                             "score_pool3"] for p in ("weight", "bias")}
    expected |= {"upscore2.weight", "upscore_pool4.weight", "upscore8.weight"}
    assert keys == expected


def test_pth_file_reproduces_torch_logits(tmp_path):
    torch_model = randomize(TorchFCN("8s", NUM_CLASSES, SMALL_WIDTHS, SMALL_FC), seed=1)
    path = tmp_path / "fcn8s.pth"
    torch.save(torch_model.state_dict(), path)
    weights = convert_torch_state_dict(str(path))
    keras_model = keras_model_from(torch_model, "8s", SMALL_WIDTHS, SMALL_FC, weights)
    assert_same_logits(keras_model, torch_model, 37, 29)


def _as_caffe_layers(torch_model):
    """The torch weights as the reference Caffe net would store them (same NCHW layouts)."""
    layers = [CaffeLayer("data", "Input", [])]
    for name, module in torch_model.named_children():
        if isinstance(module, nn.ConvTranspose2d):
            layers.append(CaffeLayer(name, "Deconvolution", [module.weight.detach().numpy()]))
        elif isinstance(module, nn.Conv2d):
            layers.append(CaffeLayer(
                name, "Convolution", [module.weight.detach().numpy(),
                                      module.bias.detach().numpy()]))
        elif isinstance(module, nn.ReLU):
            layers.append(CaffeLayer(name, "ReLU", []))
    if torch_model.variant == "8s_at_once":
        layers += [CaffeLayer("scale_pool4", "Scale", [np.full(1, 0.01, "float32")]),
                   CaffeLayer("scale_pool3", "Scale", [np.full(1, 0.0001, "float32")])]
    layers.append(CaffeLayer("score", "Crop", []))
    return layers


@pytest.mark.parametrize("variant", ["16s", "8s_at_once"])
def test_caffemodel_of_the_same_net_reproduces_torch_logits(tmp_path, variant):
    torch_model = randomize(TorchFCN(variant, NUM_CLASSES, SMALL_WIDTHS, SMALL_FC), seed=2)
    path = write_caffemodel(_as_caffe_layers(torch_model),
                            str(tmp_path / f"fcn{variant}.caffemodel"))
    weights = convert_caffemodel(path)
    keras_model = keras_model_from(torch_model, variant, SMALL_WIDTHS, SMALL_FC, weights)
    assert_same_logits(keras_model, torch_model, 45, 38)


@pytest.mark.slow
def test_full_size_fcn8s_reproduces_torch_logits():
    torch_model = randomize(TorchFCN("8s", NUM_CLASSES), seed=3)
    keras_model = keras_model_from(torch_model, "8s", (64, 128, 256, 512, 512), 4096)
    assert_same_logits(keras_model, torch_model, 64, 64)
    # the default forward path on a CPU: fc6 (7x7, 512 -> 4096) as one matmul
    from keras_fcn.inference import forward_fn

    images = np.random.default_rng(5).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    want = torch_logits(torch_model, images)
    got = forward_fn(keras_model, output="logits", conv_matmul=True)(images).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("jit_compile, conv_matmul", [
    (False, True), (False, False), (True, True), (True, False)])
def test_every_execution_path_reproduces_torch_logits(jit_compile, conv_matmul):
    """The graph and XLA paths of the one forward function (what predict, evaluate and the
    export gate run), with fc6 as a convolution or as one matmul (the CPU default), stay
    float32-exact to the PyTorch FCN-8s; bfloat16 keeps the labels."""
    from keras_fcn.inference import forward_fn

    torch_model = randomize(TorchFCN("8s", NUM_CLASSES, SMALL_WIDTHS, SMALL_FC), seed=3)
    keras_model = keras_model_from(torch_model, "8s", SMALL_WIDTHS, SMALL_FC)
    for i, (height, width) in enumerate(SIZES[:3]):
        images = np.random.default_rng(i).uniform(-1, 1, (1, height, width, 3)).astype("float32")
        want = torch_logits(torch_model, images)
        got = forward_fn(keras_model, output="logits", jit_compile=jit_compile,
                         conv_matmul=conv_matmul)(images).numpy()
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= 1e-4 * scale, (height, width)
        bf16 = forward_fn(keras_model, output="logits", precision="bfloat16",
                          jit_compile=jit_compile, conv_matmul=conv_matmul)(images).numpy()
        assert bf16.dtype == np.float32
        agree = np.mean(bf16.argmax(-1) == want.argmax(-1))
        assert agree >= 0.9, (height, width, agree)
        assert np.abs(bf16 - want).max() > 0  # it did run in bfloat16
