"""The model-building and preset API on bad arguments (models API audit): each case was
accepted and silently built something else (a string flag read as True, a bool size, a NaN
fusion weight, a trunk width ignored), or failed deep inside Keras, NumPy or os without
naming the argument. Now each is a ValueError naming the argument and its value.
"""

import re

import numpy as np
import pytest
from tiny import TINY_FC, TINY_WIDTHS

import keras_fcn
from keras_fcn import layers as fcn_layers
from keras_fcn.models import build_fcn, build_late_fusion_fcn, build_rgbd_fcn
from keras_fcn.models import build_two_headed_fcn, get_trunk
from keras_fcn.presets import download_caffemodel, from_preset, get_preset, model_file

TINY = {"widths": TINY_WIDTHS, "fc_units": TINY_FC}
RESNET_TINY = {"widths": (4, 4, 8, 8)}


# --- flags: a string or a number is truthy, so "False" meant True ----------------------


@pytest.mark.parametrize("flag", ["trainable_upsampling", "include_preprocessing"])
def test_string_flags_are_refused_not_read_as_true(flag):
    with pytest.raises(ValueError, match=f"`{flag}` must be True or False. "
                                         f"Received: {flag}='False'"):
        build_fcn("32s", 3, weights=None, **{flag: "False"}, **TINY)


def test_aux_and_at_once_must_be_bools():
    with pytest.raises(ValueError, match="Received: aux='no'"):
        build_fcn("dilated", 3, weights=None, backbone="resnet50", aux="no", **RESNET_TINY)
    with pytest.raises(ValueError, match="Received: at_once='no'"):
        keras_fcn.build_fcn8s(3, weights=None, at_once="no")
    with pytest.raises(ValueError, match="Received: trainable_upsampling='yes'"):
        build_two_headed_fcn("16s", 3, 3, weights=None, trainable_upsampling="yes", **TINY)


def test_a_bool_input_size_is_not_a_1_pixel_image():
    with pytest.raises(ValueError, match=r"input_shape=\(True, True, 3\)"):
        build_fcn("32s", 3, input_shape=(True, True, 3), weights=None, **TINY)
    # numpy sizes are sizes
    model = build_fcn("32s", 3, input_shape=(np.int64(37), 50, 3), weights=None, **TINY)
    assert model.input_shape == (None, 37, 50, 3)


# --- trunk options -------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(4, 4), (4, 4, 8, 8, 16), (0, 4, 8, 8), (4.5, 4, 8, 8), 4,
                                    (True, 4, 8, 8)])
def test_resnet_widths_are_checked(widths):
    # (4, 4, 8, 8, 16) built a model ignoring the 5th width; (4, 4) was an IndexError.
    with pytest.raises(ValueError, match=r"widths must be 4 positive ints .* Received: "
                                         rf"widths={re_escape(widths)}"):
        build_fcn("dilated", 3, weights=None, backbone="resnet50", widths=widths)


def re_escape(value):
    import re

    return re.escape(repr(value))


def test_alexnet_and_googlenet_widths_refuse_bools_and_name_non_sequences():
    with pytest.raises(ValueError, match="Received: fc_units=True"):
        build_fcn("32s", 3, weights=None, backbone="alexnet", widths=(4,) * 5, fc_units=True)
    with pytest.raises(ValueError, match="Received: widths=4"):
        build_fcn("32s", 3, weights=None, backbone="alexnet", widths=4, fc_units=8)
    stem, blocks = keras_fcn.models.googlenet_widths(16)
    with pytest.raises(ValueError, match="GoogLeNet widths"):
        build_fcn("32s", 3, weights=None, backbone="googlenet",
                  widths=((True, 2, 6), blocks))
    # numpy ints are channel counts, as for VGG16
    build_fcn("32s", 3, weights=None, backbone="alexnet",
              widths=tuple(np.int64(4) for _ in range(5)), fc_units=np.int64(8))


@pytest.mark.parametrize("backbone, options", [
    ("vgg16", TINY), ("alexnet", {"widths": (4,) * 5, "fc_units": 8}),
    ("resnet50", RESNET_TINY)])
def test_imagenet_with_narrow_widths_is_refused_before_any_download(backbone, options,
                                                                    monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    variant = get_trunk(backbone).variants[0]
    with pytest.raises(ValueError, match=r"weights='imagenet' is the .* default widths=.*"
                                         r"Received: widths="):
        build_fcn(variant, 3, weights="imagenet", backbone=backbone, **options)
    with pytest.raises(ValueError, match=r"weights='imagenet'.*Received: widths="):
        build_two_headed_fcn("16s", 3, 3, weights="imagenet", **TINY)
    assert not list(tmp_path.rglob("*.*"))  # nothing was downloaded


# --- multi-modal builders ------------------------------------------------------------------


@pytest.mark.parametrize("fusion_weights", [(float("nan"), 1.0), (1.0, float("inf"))])
def test_non_finite_fusion_weights_are_refused(fusion_weights):
    with pytest.raises(ValueError, match=r"fusion_weights must be two finite numbers.*"
                                         r"Received: fusion_weights="):
        build_late_fusion_fcn("32s", 3, None, None, fusion_weights=fusion_weights, **TINY)
    build_late_fusion_fcn("32s", 3, None, None, fusion_weights=(np.float32(0.5), 1), **TINY)


@pytest.mark.parametrize("builder", [build_rgbd_fcn, build_late_fusion_fcn])
def test_input_size_is_named(builder):
    for input_size in (32, (32,), (True, 32)):
        with pytest.raises(ValueError, match=rf"Received: input_size={re_escape(input_size)}"):
            builder("32s", 3, None, input_size=input_size, **TINY)


def test_a_huge_geometric_class_count_is_refused_before_allocating():
    # was a MemoryError (58 TiB) from NumPy: only num_semantic was checked
    with pytest.raises(ValueError, match="num_geometric=1000000 would give"):
        build_two_headed_fcn("8s", 3, 10 ** 6, weights=None, **TINY)


def test_two_headed_dropout_none_is_the_trunk_default():
    model = build_two_headed_fcn("32s", 3, 3, weights=None, dropout=None, **TINY)
    assert model.get_layer("drop6").rate == 0.5


# --- layers --------------------------------------------------------------------------------


@pytest.mark.parametrize("make, message", [
    (lambda: fcn_layers.CropToReference(True), "offset=True"),
    (lambda: fcn_layers.bilinear_kernel(True), "size=True"),
    (lambda: fcn_layers.Scale(float("nan")), "factor=nan"),
    (lambda: fcn_layers.Scale("x"), "factor='x'"),
    (lambda: fcn_layers.LocalResponseNormalization(True), "size=True"),
    (lambda: fcn_layers.LocalResponseNormalization(5, float("nan")), "alpha=nan"),
    (lambda: fcn_layers.LocalResponseNormalization(5, 1e-4, "x"), "beta='x'"),
    (lambda: fcn_layers.CaffePreprocessing((1.0, 2.0, float("nan"))), r"mean_bgr=\(1.0, 2.0, nan\)"),
    (lambda: fcn_layers.CaffePreprocessing(5), "mean_bgr=5"),
    (lambda: fcn_layers.CaffePreprocessing("abc"), "mean_bgr='abc'"),
    (lambda: fcn_layers.ImageNetNormalization(std_rgb=(1, 1, float("nan"))), "std_rgb="),
    (lambda: fcn_layers.ImageNetNormalization(mean_rgb=1), "mean_rgb=1"),
])
def test_layer_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_preprocess_input_takes_nested_lists():
    out = fcn_layers.preprocess_input([[[0, 0, 0]]])
    np.testing.assert_allclose(out[0, 0], -np.asarray(fcn_layers.FCN_MEAN_BGR), rtol=1e-6)


# --- names: typos get the close names ------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda: build_fcn("8S", 3, weights=None, **TINY), r"Did you mean '8s'\? Received: variant='8S'"),
    (lambda: build_fcn("8s", 3, weights=None, backbone="VGG16", **TINY),
     r"Did you mean 'vgg16'\? Received: backbone='VGG16'"),
    (lambda: build_fcn("8s", 3, weights=None, backbone=["vgg16"], **TINY),
     r"Received: backbone=\['vgg16'\]"),
    (lambda: build_fcn("8s", 21, weights="voc-fcn8", **TINY),
     r"Did you mean 'voc-fcn8s'.*Received: weights='voc-fcn8'"),
    (lambda: build_fcn("8s", 21, weights="imagnet", **TINY), r"Did you mean 'imagenet'"),
    (lambda: get_preset("voc_fcn8s"), r"Did you mean 'voc-fcn8s'.*Received: name='voc_fcn8s'"),
    (lambda: get_preset("VOC-FCN32S"), r"Did you mean 'voc-fcn32s'"),
    (lambda: get_preset(["voc-fcn8s"]), r"Received: name=\['voc-fcn8s'\]"),
    (lambda: model_file("voc-fcn8"), r"Did you mean 'voc-fcn8s'.*Received: 'voc-fcn8'"),
    (lambda: model_file(3), r"Received: 3"),
])
def test_unknown_names_suggest_the_close_ones(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- the preset cache ----------------------------------------------------------------------


def test_a_cache_dir_that_is_a_file_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for call in (lambda: from_preset("voc-fcn8s", cache_dir=str(blocker)),
                 lambda: download_caffemodel("voc-fcn8s", cache_dir=str(blocker))):
        with pytest.raises(ValueError, match=rf"Received: cache_dir='{blocker}'"):
            call()
    (tmp_path / "keras_fcn").write_text("a file where the cache folder goes")
    with pytest.raises(ValueError, match="a file stands in its way"):
        from_preset("voc-fcn8s", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="Received: cache_dir=3"):
        from_preset("voc-fcn8s", cache_dir=3)
    assert blocker.read_text() == "not a folder"


def test_a_missing_model_path_is_named_as_a_file(tmp_path):
    """`--model /x/nope.keras` was answered with the list of the 17 presets."""
    for path, there in ((tmp_path / "nope.keras", "does not exist"), (tmp_path, "is a folder"),
                        ("nope.keras", "does not exist")):
        with pytest.raises(FileNotFoundError, match=rf"^Model file '{re.escape(str(path))}' "
                                                    rf"{there}; expected a saved \.keras model"):
            model_file(path)
