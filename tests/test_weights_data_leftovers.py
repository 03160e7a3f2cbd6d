"""Leftovers of the weights, presets and data wings (audit round 5):

1. ``strict`` weight conversion refuses a model whose trunk layers get no weights;
2. a preset call whose arguments can never match the released weights (narrow widths, an
   auxiliary head, a file_hash no file can match) fails before any download;
3. ``examples/train_nyud.py --convert_mat`` takes ``--overwrite_splits`` for split files that
   list other ids (and keeps a ``trainval.txt`` consistent);
4. an 8-bit grey PNG mask is opened once, not a second time for its header.
"""

import builtins
import contextlib
import hashlib
import os
import re

import keras
import numpy as np
import pytest
from absl import flags
from PIL import Image

from keras_fcn import data, weights
from keras_fcn.datasets import nyud
from keras_fcn.models import build_fcn
from keras_fcn.presets import PRESETS, from_preset
from keras_fcn.presets.builder_weights import check_fits, preset_weights
from keras_fcn.weights import imagenet
from preset_files import caffe_layers, serve, tiny_preset
from tiny import TINY_FC, TINY_WIDTHS
from tool_flags import load_script, tool

FLAGS = flags.FLAGS


def _tiny_fcn32s():
    return build_fcn("32s", 3, weights=None, name="fcn32s", widths=TINY_WIDTHS, fc_units=TINY_FC)


def _npz_without(tmp_path, *dropped):
    """The weights of a tiny FCN-32s without the `dropped` layers, as an .npz file."""
    source = weights.read_weights(_tiny_fcn32s())
    for name in dropped:
        del source[name]
    return weights.save_npz(source, str(tmp_path / "partial.npz"))


# --- 1. strict conversion and the trunk layers it leaves unset ------------------------------

def test_strict_conversion_refuses_a_missing_trunk_layer(tmp_path):
    path = _npz_without(tmp_path, "conv1_1")
    model = _tiny_fcn32s()
    before = weights.read_weights(model)
    with pytest.raises(ValueError) as info:
        weights.convert_to_keras_model(path, model, strict=True)
    for name, arrays in weights.read_weights(model).items():  # refused before setting any
        for got, want in zip(arrays, before[name]):
            np.testing.assert_array_equal(got, want)
    assert str(info.value) == (
        f"{path} does not fit the model 'fcn32s': the model's layers without weights in the "
        "file: ['conv1_1'] (1 of its 15 trunk layers). Expected a weight for every trunk "
        "layer; strict=False keeps these at their initialization.")


def test_strict_conversion_names_five_missing_layers_and_the_count(tmp_path):
    path = _npz_without(tmp_path, "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1",
                        "conv3_2", "fc7")
    with pytest.raises(ValueError, match=re.escape(
            "without weights in the file: ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', "
            "'conv3_1'] and 2 more (7 of its 15 trunk layers)")):
        weights.convert_to_keras_model(path, _tiny_fcn32s())  # strict is the default


def test_non_strict_conversion_warns_and_keeps_the_initialization(tmp_path):
    path = _npz_without(tmp_path, "conv1_1")
    model = _tiny_fcn32s()
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
    report = weights.convert_to_keras_model(path, _tiny_fcn32s(), strict=True)
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
