"""The builders' ``weights=<preset>`` (``build_fcn8s(weights="voc-fcn8s")``), without the network:
tiny released models are served through file:// URLs (tests/preset_files.py) and the builders
go through the presets' download, conversion and cache. A builder's model must give the same
logits as ``from_preset``'s, and a preset that does not fit the call fails before any download."""

import dataclasses
import os
import re

import numpy as np
import pytest

from keras_fcn.classes import NYUD_MEAN_BGR
from keras_fcn.layers import CaffePreprocessing, preprocess_input
from keras_fcn.models import (build_fcn, build_fcn8s, build_fcn32s, build_rgbd_fcn,
                              build_two_headed_fcn)
from keras_fcn.presets import PRESETS, from_preset
from keras_fcn.presets.builder_weights import check_fits, preset_weights
from keras_fcn.weights import read_weights, set_weights_by_name
from preset_files import caffe_layers, serve, tiny_preset
from tiny import TINY_FC, TINY_WIDTHS

TINY = {"widths": TINY_WIDTHS, "fc_units": TINY_FC}
ALEXNET_TINY = {"widths": (8, 8, 8, 8, 8), "fc_units": 8}


@pytest.fixture
def keras_home(monkeypatch, tmp_path):
    """The Keras cache of this test (the builders have no cache_dir: $KERAS_HOME is theirs)."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _release(monkeypatch, tmp_path, name, groups=None, **tiny):
    """Serves a tiny random version of the preset at a file:// URL put in the table."""
    preset = tiny_preset(monkeypatch, name, **(tiny or TINY))
    # the released file's layer names: the preset's rename maps them to keras_fcn's
    released = {new: old for old, new in (preset.rename or {}).items()}
    layers = [layer._replace(group=(groups or {}).get(layer.name, 1),
                             name=released.get(layer.name, layer.name))
              for layer in caffe_layers(preset.builder(**preset.build_kwargs))]
    url, _ = serve(tmp_path, layers, preset.filename)
    monkeypatch.setitem(PRESETS, name, dataclasses.replace(preset, url=url))


def _image(channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (1, 37, 45, channels)).astype("float32")


def _assert_same_logits(got, want):
    assert np.std(want) > 1e-3  # random released weights: the logits vary
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_builder_downloads_the_preset_and_gives_from_preset_logits(monkeypatch, tmp_path,
                                                                    keras_home):
    _release(monkeypatch, tmp_path, "voc-fcn8s")
    model = build_fcn("8s", weights="voc-fcn8s", include_preprocessing=True, **TINY)
    assert sorted(os.listdir(keras_home / "keras_fcn")) == [
        "fcn8s-heavy-pascal.caffemodel", "voc-fcn8s.keras", "voc-fcn8s.labels.json"]
    reference = from_preset("voc-fcn8s")  # the cached conversion
    image = _image()
    want = reference.predict(image, verbose=0)
    _assert_same_logits(model.predict(image, verbose=0), want)

    # Without the model's own preprocessing: feed preprocess_input, as for any VGG16 FCN.
    plain = build_fcn("8s", weights="voc-fcn8s", **TINY)
    _assert_same_logits(plain.predict(preprocess_input(image), verbose=0), want)

    # Another trunk width: refused before any download, naming the preset's widths.
    with pytest.raises(ValueError, match=r"Preset 'voc-fcn8s' has widths=\(4, 4, 8, 8, 8\): "
                                         r"its weights fit only that trunk"):
        build_fcn("8s", weights="voc-fcn8s", widths=(4, 4, 8, 8, 16), fc_units=TINY_FC)

    # The net surgery the num_classes error proposes: all but the class-sized layers.
    other = build_fcn("8s", num_classes=5, weights=None, **TINY)
    done = set_weights_by_name(other, read_weights(plain), skip_mismatch=True)
    assert "fc7" in done and "score_fr" not in done
    np.testing.assert_array_equal(other.get_layer("fc7").get_weights()[0],
                                  reference.get_layer("fc7").get_weights()[0])


def test_alexnet_preset_in_the_builder(monkeypatch, tmp_path, keras_home):
    _release(monkeypatch, tmp_path, "voc-fcn-alexnet", {"conv2": 2, "conv4": 2, "conv5": 2},
             **ALEXNET_TINY)
    model = build_fcn("32s", backbone="alexnet", weights="voc-fcn-alexnet",
                      include_preprocessing=True, **ALEXNET_TINY)
    image = _image()
    _assert_same_logits(model.predict(image, verbose=0),
                        from_preset("voc-fcn-alexnet").predict(image, verbose=0))


def test_nyud_presets_take_their_own_inputs(monkeypatch, tmp_path, keras_home):
    """The colour model has the NYUDv2 mean (fed preprocessed here, from_preset preprocesses
    itself); the RGB-D model fits build_rgbd_fcn."""
    _release(monkeypatch, tmp_path, "nyud-fcn32s-color")
    color = build_fcn("32s", num_classes=40, weights="nyud-fcn32s-color", **TINY)
    image = _image()
    preprocessed = CaffePreprocessing(NYUD_MEAN_BGR)(image)
    _assert_same_logits(color.predict(preprocessed, verbose=0),
                        from_preset("nyud-fcn32s-color").predict(image, verbose=0))
    with pytest.raises(ValueError, match=r"own mean_bgr=\(.*include_preprocessing=False"):
        build_fcn("32s", num_classes=40, weights="nyud-fcn32s-color",
                  include_preprocessing=True, **TINY)

    _release(monkeypatch, tmp_path, "nyud-fcn32s-color-d")
    rgbd = build_rgbd_fcn("32s", num_classes=40, weights="nyud-fcn32s-color-d", **TINY)
    image = _image(channels=4, seed=1)
    _assert_same_logits(rgbd.predict(image, verbose=0),
                        from_preset("nyud-fcn32s-color-d").predict(image, verbose=0))


def test_siftflow_preset_in_the_two_headed_builder(monkeypatch, tmp_path, keras_home):
    """Both heads of the released SIFT Flow model (its own mean: fed preprocessed here)."""
    _release(monkeypatch, tmp_path, "siftflow-fcn16s")
    model = build_two_headed_fcn("16s", weights="siftflow-fcn16s", **TINY)
    reference = from_preset("siftflow-fcn16s")
    image = _image()
    want = reference.predict(image, verbose=0)
    got = model.predict(CaffePreprocessing(PRESETS["siftflow-fcn16s"].mean_bgr)(image),
                        verbose=0)
    for head in ("semantic", "geometric"):
        _assert_same_logits(got[head], want[head])


@pytest.mark.parametrize("build, error", [
    (lambda: build_fcn8s(weights="voc-fcn32s"),
     r"has variant='32s': build it with build_fcn32s\(weights='voc-fcn32s'\).*variant='8s'"),
    (lambda: build_fcn8s(weights="voc-fcn8s-atonce"),
     r"build_fcn8s\(at_once=True, weights='voc-fcn8s-atonce'\)"),
    (lambda: build_fcn32s(weights="voc-fcn-alexnet"),
     r"has backbone='alexnet'.*Received: backbone='vgg16'"),
    (lambda: build_fcn32s(backbone="mobilenet_v2", weights="voc-fcn32s"),
     r"has backbone='vgg16'.*Received: backbone='mobilenet_v2'"),
    (lambda: build_fcn8s(num_classes=12, weights="voc-fcn8s"),
     r"has num_classes=21.*skip_mismatch=True.*Received: num_classes=12"),
    (lambda: build_fcn32s(num_classes=40, weights="nyud-fcn32s-color-d"),
     r"input_channels=4: build it with build_rgbd_fcn\('32s', num_classes=40"),
    (lambda: build_fcn32s(num_classes=40, weights="nyud-fcn32s-hha", include_preprocessing=True),
     r"'nyud-fcn32s-hha' takes HHA.*include_preprocessing=False"),
    (lambda: build_fcn32s(num_classes=33, weights="siftflow-fcn32s"),
     r"has two_headed=True, num_geometric=3: build it with build_two_headed_fcn\('32s', "
     r"weights='siftflow-fcn32s'\)"),
    (lambda: build_two_headed_fcn("32s", weights="voc-fcn32s"),
     r"has num_classes=21, two_headed=False, num_geometric=None.*Received: num_classes=33, "
     r"two_headed=True, num_geometric=3"),
    (lambda: build_two_headed_fcn("32s", weights="siftflow-fcn16s"),
     r"has variant='16s': build it with build_two_headed_fcn\('16s'"),
    (lambda: build_fcn32s(num_classes=40, weights="nyud-fcn32s-color-hha"),
     r"build_late_fusion_fcn model.*from_preset\('nyud-fcn32s-color-hha'\)"),
])
def test_a_preset_of_another_architecture_fails_before_any_download(keras_home, build, error):
    with pytest.raises(ValueError, match=error):
        build()
    assert not os.path.exists(keras_home)


def test_unknown_weights_list_the_presets(tmp_path):
    with pytest.raises(ValueError, match=r"list_presets\(\): \[.*'voc-fcn8s'.*"
                                         r"Received: weights='voc-fcn4s'"):
        build_fcn32s(weights="voc-fcn4s")
    with pytest.raises(FileNotFoundError, match=r"missing\.keras'.*'voc-fcn8s'"):
        build_fcn32s(weights=str(tmp_path / "missing.keras"))


# Audit round 5 leftovers: a preset call whose arguments can never match the released weights fails
# before any download.


VGG16_FCN8S = {"variant": "8s", "backbone": "vgg16", "num_classes": 21, "input_channels": 3,
               "include_preprocessing": True}


def test_preset_with_narrow_widths_fails_before_the_download(downloads):
    narrow = {**VGG16_FCN8S, "options": {"widths": TINY_WIDTHS, "fc_units": 4096}}
    with pytest.raises(ValueError) as info:
        preset_weights("voc-fcn8s", narrow)
    assert str(info.value) == (
        "Preset 'voc-fcn8s' has widths=(64, 128, 256, 512, 512): its weights fit only that "
        "trunk and heads. Build it with widths=(64, 128, 256, 512, 512) (the builders' "
        "defaults), or use weights=None. Received: widths=(4, 4, 8, 8, 8)")
    assert downloads == []
    # The same options as the preset's (lists and numpy ints compare by value) pass the check.
    check_fits("voc-fcn8s", {**VGG16_FCN8S, "options": {
        "widths": [64, 128, 256, 512, np.int64(512)], "fc_units": 4096}})


def test_preset_of_tiny_widths_refuses_other_widths(monkeypatch, downloads):
    tiny_preset(monkeypatch, "voc-fcn8s")
    other = {**VGG16_FCN8S, "options": {"widths": (4, 4, 8, 8, 16), "fc_units": TINY_FC}}
    with pytest.raises(ValueError, match=re.escape(
            "Received: widths=(4, 4, 8, 8, 16)")):
        preset_weights("voc-fcn8s", other)
    assert downloads == []


def test_fcn_resnet_preset_with_the_aux_head_fails_before_the_download(downloads):
    with pytest.raises(ValueError, match=re.escape(
            "Preset 'coco-fcn-resnet50' has aux=False: its weights fit only that trunk and "
            "heads. Build it with aux=False (the builders' defaults), or use weights=None. "
            "Received: aux=True")):
        preset_weights("coco-fcn-resnet50", {
            "variant": "dilated", "backbone": "resnet50", "num_classes": 21,
            "input_channels": 3, "include_preprocessing": True, "aux": True})
    assert downloads == []
