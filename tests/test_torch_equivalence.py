"""Acceptance test: keras_fcn models with converted weights reproduce the PyTorch port's logits.

The PyTorch FCNs below follow the public port "pytorch-fcn" (torchfcn.models FCN32s, FCN16s,
FCN8s, FCN8sAtOnce) layer for layer: same attribute names (so the same state dict keys), conv1_1
padding 100, ceil-mode max pooling, fc6 7x7, bias-free ConvTranspose2d, crops 19 / 5, 27 /
5, 9, 31, and pool4 * 0.01, pool3 * 0.0001 in the at-once model. Only the channel widths are
parameters, so the tests run in seconds; filled with random weights, including non-zero score
layers and random (not bilinear) transposed-conv kernels.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

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
CONVS_PER_BLOCK = (2, 2, 3, 3, 3)


class TorchFCN(nn.Module):
    """pytorch-fcn's FCN32s / FCN16s / FCN8s / FCN8sAtOnce with configurable widths."""

    def __init__(self, variant, n_class, widths=(64, 128, 256, 512, 512), fc_units=4096):
        super().__init__()
        self.variant = variant
        previous = 3
        for block, (width, count) in enumerate(zip(widths, CONVS_PER_BLOCK), start=1):
            for i in range(1, count + 1):
                padding = 100 if (block, i) == (1, 1) else 1
                setattr(self, f"conv{block}_{i}", nn.Conv2d(previous, width, 3, padding=padding))
                setattr(self, f"relu{block}_{i}", nn.ReLU(inplace=True))
                previous = width
            setattr(self, f"pool{block}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.fc6 = nn.Conv2d(widths[4], fc_units, 7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout2d()
        self.fc7 = nn.Conv2d(fc_units, fc_units, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout2d()
        self.score_fr = nn.Conv2d(fc_units, n_class, 1)
        if variant == "32s":
            self.upscore = nn.ConvTranspose2d(n_class, n_class, 64, stride=32, bias=False)
            return
        self.score_pool4 = nn.Conv2d(widths[3], n_class, 1)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        if variant == "16s":
            self.upscore16 = nn.ConvTranspose2d(n_class, n_class, 32, stride=16, bias=False)
            return
        self.score_pool3 = nn.Conv2d(widths[2], n_class, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_class, n_class, 16, stride=8, bias=False)

    def _block(self, h, block):
        for i in range(1, CONVS_PER_BLOCK[block - 1] + 1):
            h = getattr(self, f"relu{block}_{i}")(getattr(self, f"conv{block}_{i}")(h))
        return getattr(self, f"pool{block}")(h)

    def forward(self, x):
        h = self._block(x, 1)
        h = self._block(h, 2)
        pool3 = h = self._block(h, 3)  # 1/8
        pool4 = h = self._block(h, 4)  # 1/16
        h = self._block(h, 5)  # 1/32
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        h = self.score_fr(h)
        if self.variant == "32s":
            h = self.upscore(h)
            return h[:, :, 19:19 + x.size()[2], 19:19 + x.size()[3]].contiguous()

        at_once = self.variant == "8s_at_once"
        upscore2 = self.upscore2(h)  # 1/16
        h = self.score_pool4(pool4 * 0.01 if at_once else pool4)
        h = h[:, :, 5:5 + upscore2.size()[2], 5:5 + upscore2.size()[3]]
        h = upscore2 + h
        if self.variant == "16s":
            h = self.upscore16(h)
            return h[:, :, 27:27 + x.size()[2], 27:27 + x.size()[3]].contiguous()

        upscore_pool4 = self.upscore_pool4(h)  # 1/8
        h = self.score_pool3(pool3 * 0.0001 if at_once else pool3)
        h = h[:, :, 9:9 + upscore_pool4.size()[2], 9:9 + upscore_pool4.size()[3]]
        h = upscore_pool4 + h
        h = self.upscore8(h)
        return h[:, :, 31:31 + x.size()[2], 31:31 + x.size()[3]].contiguous()


def randomize(model, seed=0):
    """He-scaled random weights and biases everywhere; skip score layers of the at-once model are
    scaled up by 1/0.01 and 1/0.0001 so that their contribution is visible in the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_children():
            if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            weight = module.weight
            fan_in = weight[0].numel() if isinstance(module, nn.Conv2d) else weight.shape[0]
            scale = (2.0 / fan_in) ** 0.5
            if model.variant == "8s_at_once":
                scale *= {"score_pool4": 100.0, "score_pool3": 10000.0}.get(name, 1.0)
            weight.copy_(torch.randn(weight.shape, generator=generator) * scale)
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model.eval()


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
