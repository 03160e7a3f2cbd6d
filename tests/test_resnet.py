"""FCN-ResNet50/101 against torchvision's own fcn_resnet50/101: the same weights give the same
logits (both heads, odd sizes); the state-dict converter's errors; save/load; torchvision's
input normalization; the ImageNet trunk weights through the offline-safe download."""

import hashlib
import os
import sys

import keras
import numpy as np
import pytest

import keras_fcn
from keras_fcn.layers import ImageNetNormalization
from keras_fcn.models import resnet
from keras_fcn.models.resnet import (
    RESNET_TRUNKS,
    build_fcn_resnet50,
    build_fcn_resnet101,
    build_resnet_fcn,
    resnet_features,
    torchvision_normalization,
    torchvision_preprocess_input,
)
from keras_fcn.models.trunk import TRUNKS
from keras_fcn.weights import convert_torchvision_state_dict, load_torchvision_weights
from keras_fcn.weights import torchvision as tv_weights

# torch 2.14.1's wheel on our machines is the CUDA build and brings triton, whose LLVM clashes
# with TensorFlow's in one process: importing torchvision (which imports torch._dynamo, which
# probes triton) after TensorFlow segfaults. Triton only compiles GPU kernels; hidden, torch
# finds it absent (importlib.util.find_spec gives None) and runs as on a CPU build.
sys.modules.setdefault("triton", None)
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

NUM_CLASSES = 5
TINY_WIDTHS = (4, 4, 8, 8)
# Logits within this fraction of their largest magnitude of torchvision's (float32 through
# ~50 layers: about 1e-6 measured).
TOLERANCE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def resnet_trunks():
    """The ResNet trunks in the builders' table for this module only (until the package
    registers them itself, other modules must not see them)."""
    with pytest.MonkeyPatch.context() as patch:
        for trunk in RESNET_TRUNKS.values():
            patch.setitem(TRUNKS, trunk.name, trunk)
        yield


def randomized_torchvision(builder, seed=0, **kwargs):
    """torchvision's FCN with random weights and non-trivial batch-norm statistics, in eval
    mode (fresh BN layers have mean 0, var 1, gamma 1, beta 0: a wrong mapping would hide)."""
    torch.manual_seed(seed)
    model = builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **kwargs)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                shape = module.running_mean.shape
                module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(shape, generator=generator) * 0.2)
    return model.eval()


def torch_logits(model, x):
    with torch.no_grad():
        out = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    return {key: value.numpy().transpose(0, 2, 3, 1) for key, value in out.items()}


def assert_close(got, want):
    got = np.asarray(got)
    assert got.shape == want.shape and got.dtype == np.float32
    scale = np.abs(want).max()
    assert scale > 1.0  # the outputs are not trivially small
    assert np.abs(got - want).max() <= TOLERANCE * scale


def normalized_images(size, seed=0):
    rng = np.random.default_rng(seed)
    return torchvision_preprocess_input(rng.integers(0, 256, (1, *size, 3)).astype("uint8"))


@pytest.fixture(scope="module")
def torch_fcn50():
    return randomized_torchvision(torchvision.models.segmentation.fcn_resnet50, aux_loss=True)


@pytest.fixture(scope="module")
def state_dict50(torch_fcn50):
    return {key: value.numpy() for key, value in torch_fcn50.state_dict().items()}


@pytest.fixture(scope="module")
def keras_fcn50(resnet_trunks, state_dict50):  # pylint: disable=unused-argument
    model = build_fcn_resnet50(num_classes=NUM_CLASSES, aux=True)
    load_torchvision_weights(model, state_dict50)
    return model


@pytest.mark.parametrize("size", [(65, 47), (33, 51)])
def test_resnet50_logits_equal_torchvision(torch_fcn50, keras_fcn50, size):
    x = normalized_images(size)
    want = torch_logits(torch_fcn50, x)
    got = keras_fcn50(x)
    assert sorted(got) == ["aux", "out"]
    for key in ("out", "aux"):
        assert_close(got[key], want[key])


def test_without_the_aux_head_the_aux_weights_are_dropped(torch_fcn50, state_dict50):
    model = build_fcn_resnet50(num_classes=NUM_CLASSES)
    done = load_torchvision_weights(model, state_dict50)
    assert not any(name.startswith("aux_classifier") for name in done)
    assert model.output_shape == (None, None, None, NUM_CLASSES)
    x = normalized_images((41, 37), seed=1)
    assert_close(model(x), torch_logits(torch_fcn50, x)["out"])


def test_dilations_follow_torchvision():
    """layer3.0 keeps the dilation before it (1), the rest get 2; layer4: 2, then 4."""
    image = keras.Input((None, None, 3))
    features = keras.Model(image, resnet_features(image, 50, TINY_WIDTHS))
    dilation = {layer.name: layer.dilation_rate[0] for layer in features.layers
                if layer.name.endswith("_conv2")}
    assert [dilation[f"layer3_{i}_conv2"] for i in range(6)] == [1, 2, 2, 2, 2, 2]
    assert [dilation[f"layer4_{i}_conv2"] for i in range(3)] == [2, 4, 4]
    assert {dilation[f"layer{s}_{i}_conv2"] for s, n in ((1, 3), (2, 4)) for i in range(n)} == {1}
    # Stride 8 for all three (ceil(65 / 8) = 9 rows, ceil(47 / 8) = 6 columns); 4x the widths.
    outputs = features(np.zeros((1, 65, 47, 3), "float32"))
    assert [tuple(f.shape[1:]) for f in outputs] == [(9, 6, 16), (9, 6, 32), (9, 6, 32)]


def test_resnet101_logits_equal_torchvision():
    """Every parameter of torchvision's FCN-ResNet101 has its layer (23 blocks in layer3), and
    the logits are the same."""
    torch_model = randomized_torchvision(torchvision.models.segmentation.fcn_resnet101,
                                         seed=2, aux_loss=True)
    model = build_fcn_resnet101(num_classes=NUM_CLASSES, aux=True)
    done = load_torchvision_weights(model, torch_model.state_dict())
    assert "layer3_22_conv3" in done and done == sorted(
        layer.name for layer in model.layers if layer.weights)
    x = normalized_images((35, 29), seed=2)
    want, got = torch_logits(torch_model, x), model(x)
    for key in ("out", "aux"):
        assert_close(got[key], want[key])


def test_converter_layouts(state_dict50):
    weights = convert_torchvision_state_dict(state_dict50)
    assert "num_batches_tracked" not in str(sorted(weights))
    np.testing.assert_array_equal(weights["layer1_0_conv1"][0],
                                  state_dict50["backbone.layer1.0.conv1.weight"]
                                  .transpose(2, 3, 1, 0))
    bn = [state_dict50[f"classifier.1.{p}"]
          for p in ("weight", "bias", "running_mean", "running_var")]
    for got, want in zip(weights["classifier_1"], bn):
        np.testing.assert_array_equal(got, want)
    assert [a.shape for a in weights["classifier_4"]] == [(1, 1, 512, NUM_CLASSES),
                                                           (NUM_CLASSES,)]
    assert [a.shape for a in weights["layer2_0_downsample_0"]] == [(1, 1, 256, 512)]


def test_converter_errors_name_the_key(state_dict50):
    model = build_fcn_resnet50(num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match=r"'backbone.layer5.0.conv1.weight' is not a param"):
        convert_torchvision_state_dict({**state_dict50, "backbone.layer5.0.conv1.weight":
                                        np.zeros((1, 1, 1, 1))})
    with pytest.raises(ValueError, match=r"'classifier.1.running_varx'.*takes"):
        convert_torchvision_state_dict({"classifier.1.running_var": np.ones(2),
                                        "classifier.1.running_varx": np.ones(2)})
    partial = {k: v for k, v in state_dict50.items() if k != "classifier.1.running_var"}
    with pytest.raises(ValueError, match=r"'classifier.1' lacks \['running_var'\]"):
        convert_torchvision_state_dict(partial)
    twenty_one = {**state_dict50, "classifier.4.weight": np.zeros((21, 512, 1, 1), "float32"),
                  "classifier.4.bias": np.zeros(21, "float32")}
    with pytest.raises(ValueError, match=r"'classifier.4.weight' has shape \(1, 1, 512, 21\).*"
                                         r"'classifier_4' needs \(1, 1, 512, 5\)"):
        load_torchvision_weights(model, twenty_one)
    missing = {k: v for k, v in state_dict50.items() if not k.startswith("backbone.layer4.2.")}
    with pytest.raises(ValueError, match=r"\['layer4_2_bn1', .*'layer4_2_conv3'\] have no"):
        load_torchvision_weights(model, missing)
    deeper = {**state_dict50, "backbone.layer3.6.conv1.weight": np.zeros((256, 1024, 1, 1))}
    with pytest.raises(ValueError, match=r"does not have: \['backbone.layer3.6.conv1.weight'\]"):
        load_torchvision_weights(model, deeper)
    with pytest.raises(TypeError, match="state dict or a .pth path"):
        convert_torchvision_state_dict(42)


def test_pth_file_and_builder_weights(tmp_path, torch_fcn50, keras_fcn50):
    path = str(tmp_path / "fcn.pth")
    torch.save(torch_fcn50.state_dict(), path)
    model = build_fcn_resnet50(num_classes=NUM_CLASSES, aux=True, weights=path)
    x = normalized_images((17, 23), seed=3)
    got, want = model(x), keras_fcn50(x)
    for key in ("out", "aux"):
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))


def test_save_and_load_round_trip(tmp_path):
    model = build_fcn_resnet50(num_classes=3, widths=TINY_WIDTHS, include_preprocessing=True,
                               aux=True)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path
                               or "gamma" in w.path else rng.normal(0, 0.2, w.shape)
                               for w in layer.weights])
    path = str(tmp_path / "resnet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras_fcn.FCN)
    assert (loaded.backbone, loaded.variant, loaded.name) == ("resnet50", "dilated",
                                                             "fcn_resnet50")
    assert isinstance(loaded.get_layer("preprocess"), ImageNetNormalization)
    raw = rng.integers(0, 256, (1, 37, 29, 3)).astype("float32")
    want, got = model(raw), loaded(raw)
    assert np.ptp(np.asarray(want["out"])) > 0
    for key in ("out", "aux"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]), rtol=0,
                                   atol=1e-6)


def test_preprocessing_is_torchvisions():
    from torchvision.transforms import functional as tvf

    raw = np.random.default_rng(5).integers(0, 256, (1, 6, 7, 3)).astype("uint8")
    want = tvf.normalize(tvf.to_tensor(raw[0]), mean=[0.485, 0.456, 0.406],
                         std=[0.229, 0.224, 0.225]).numpy().transpose(1, 2, 0)
    array = torchvision_preprocess_input(raw)
    assert isinstance(array, np.ndarray) and array.dtype == np.float32
    np.testing.assert_allclose(array[0], want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ImageNetNormalization()(raw)), array, rtol=0,
                               atol=1e-5)
    tensor = torchvision_preprocess_input(keras.ops.convert_to_tensor(raw))
    np.testing.assert_allclose(np.asarray(tensor), array, rtol=0, atol=1e-6)
    assert torchvision_normalization() == {
        "type": "mean_std", "mean_rgb": [0.485, 0.456, 0.406], "std_rgb": [0.229, 0.224, 0.225],
        "formula": "(RGB / 255 - mean_rgb) / std_rgb"}
    layer = ImageNetNormalization.from_config(ImageNetNormalization(name="p").get_config())
    assert (layer.mean_rgb, layer.std_rgb) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with pytest.raises(ValueError, match=r"std_rgb must be positive"):
        ImageNetNormalization(std_rgb=(1, 0, 1))
    with pytest.raises(ValueError, match=r"3 channels last. Received: shape=\(2, 4\)"):
        torchvision_preprocess_input(np.zeros((2, 4)))


def test_builder_arguments_are_checked():
    with pytest.raises(ValueError, match=r"only as the 'dilated' variant.*variant='8s'"):
        build_resnet_fcn("8s", 21, (None, None, 3), None, 0.1, False, False)
    with pytest.raises(ValueError, match=r"Received: depth=34"):
        build_resnet_fcn("dilated", 21, (None, None, 3), None, 0.1, False, False, depth=34)
    model = build_resnet_fcn("dilated", 4, (None, None, 3), None, 0.1, False, False,
                             depth=101, widths=TINY_WIDTHS)
    assert (model.backbone, model.name, model.output_shape) == (
        "resnet101", "fcn_resnet101", (None, None, None, 4))
    with pytest.raises(ValueError, match=r"resnet50 trunk has no option fc_units"):
        keras_fcn.build_fcn("dilated", 2, weights=None, backbone="resnet50", fc_units=8)


def _save_as_torchvision_file(state_dict, folder, stem):
    """Writes a state dict as torchvision names its files: ``<stem>-<sha256 prefix>.pth``."""
    folder.mkdir(exist_ok=True)
    scratch = folder / "scratch.pth"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}, scratch)
    prefix = hashlib.sha256(scratch.read_bytes()).hexdigest()[:8]
    path = folder / f"{stem}-{prefix}.pth"
    os.replace(scratch, path)
    return path


def test_imagenet_weights_fill_the_trunk_offline(monkeypatch, tmp_path):
    """weights="imagenet": torchvision's ResNet-50 from the cache (put there by hand: no
    network), its fc dropped, the heads left at their initialization."""
    backbone = torchvision.models.resnet50(weights=None)
    state = {k: v.numpy() for k, v in backbone.state_dict().items()}
    cache = tmp_path / "home" / ".keras" / "models"
    cache.mkdir(parents=True)
    path = _save_as_torchvision_file(state, cache, "resnet50")
    monkeypatch.setitem(tv_weights.IMAGENET_FILES, 50, path.name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    model = build_fcn_resnet50(num_classes=2, weights="imagenet")
    np.testing.assert_array_equal(model.get_layer("layer4_2_conv3").get_weights()[0],
                                  state["layer4.2.conv3.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("bn1").get_weights()[3],
                                  state["bn1.running_var"])
    head = model.get_layer("classifier_1").get_weights()
    np.testing.assert_array_equal(head[0], np.ones_like(head[0]))  # still a fresh BN


def test_imagenet_download_checks_the_hash_prefix_and_fails_offline(monkeypatch, tmp_path):
    served = tmp_path / "server" / "resnet50-00000000.pth"
    served.parent.mkdir()
    served.write_bytes(b"not the file")
    cache = tmp_path / "cache"
    monkeypatch.setitem(tv_weights.IMAGENET_FILES, 50, served.name)
    with pytest.raises(ValueError, match=r"does not start with 00000000.*deleted"):
        tv_weights.fetch_torchvision_resnet_weights(50, str(cache), url="file://" + str(served))
    assert os.listdir(cache / "models") == []
    absent = "file://" + str(tmp_path / "nowhere" / served.name)
    with pytest.raises(RuntimeError, match=r"no such file: .*nowhere.* put it at "
                       + str(cache / "models" / served.name)):
        tv_weights.fetch_torchvision_resnet_weights(50, str(cache), url=absent)
    with pytest.raises(ValueError, match=r"Received: depth=18"):
        tv_weights.fetch_torchvision_resnet_weights(18)


def test_the_released_file_names_carry_their_hash_prefix():
    assert resnet.TORCH_SUFFIXES == (".pth", ".pt")
    assert tv_weights.IMAGENET_FILES == {50: "resnet50-0676ba61.pth",
                                        101: "resnet101-63fe2227.pth"}
    for depth, weights in ((50, torchvision.models.ResNet50_Weights),
                           (101, torchvision.models.ResNet101_Weights)):
        assert weights.IMAGENET1K_V1.url == tv_weights.MODELS_URL + tv_weights.IMAGENET_FILES[
            depth]


def test_presets_are_torchvisions_released_fcns():
    from keras_fcn.presets import PRESETS, preset_info

    segmentation = torchvision.models.segmentation
    for depth, weights in ((50, segmentation.FCN_ResNet50_Weights),
                           (101, segmentation.FCN_ResNet101_Weights)):
        released = weights.COCO_WITH_VOC_LABELS_V1
        preset = PRESETS[f"coco-fcn-resnet{depth}"]
        assert preset.url == released.url
        assert ["__background__", *preset.class_names[1:]] == released.meta["categories"]
        metrics = released.meta["_metrics"]["COCO-val2017-VOC-labels"]
        paper = preset_info(preset.name)["paper"]
        assert paper.startswith(f"{metrics['miou']} mean IU, {metrics['pixel_acc']} pixel")
        assert preset.build_kwargs["backbone"] == f"resnet{depth}"
