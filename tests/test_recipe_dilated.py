"""The recipe trains the 'dilated' FCN-ResNets (torchvision's FCN-ResNet50/101) from a
`TrainConfig`, and refuses a --model a backbone does not have, naming both, before reading data.
Tiny trunks (widths 4,4,8,8), 32-pixel shapes, one step: seconds on a CPU."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from absl import flags

from known_values import assert_same_metrics, confusion_counts
from tiny import TINY_FC, TINY_WIDTHS
from tool_flags import run_in_process
from keras_fcn.datasets import shapes
from keras_fcn.metrics import segmentation_metrics
from keras_fcn.models import get_trunk
from keras_fcn.training import config as config_lib
from keras_fcn.training import recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESNET_TINY = (4, 4, 8, 8)  # layer1 .. layer4 planes (torchvision's 64, 128, 256, 512)


def _dilated_config(tmp_path, **changes):
    return config_lib.TrainConfig().replace(
        dataset="shapes", model="dilated", backbone="resnet50", widths=RESNET_TINY,
        dropout=0.0, epochs=1, steps_per_epoch=1, batch_size=2, num_train=2, num_val=2,
        shapes_size=32, optimizer="adam", learning_rate=1e-2, weights="none",
        output_dir=str(tmp_path / "run"), verbose=0, **changes)


def test_a_tiny_dilated_resnet50_trains_one_step_through_the_recipe(tmp_path, monkeypatch,
                                                                   eager_tf):
    config = _dilated_config(tmp_path)
    initial, build_model = [], recipe.build_model

    def build_and_record(*args):
        model = build_model(*args)
        initial.append([np.array(w) for w in model.get_weights()])
        return model

    monkeypatch.setattr(recipe, "build_model", build_and_record)
    result = recipe.run(config)
    report = result["reports"]["dilated"]
    assert report["status"] == "completed" and [e["epoch"] for e in report["history"]] == [1]
    assert np.isfinite(report["history"][0]["loss"])
    saved = keras.models.load_model(os.path.join(result["run_dir"], "model.keras"),
                                    compile=False)
    assert (saved.backbone, saved.variant, saved.name) == ("resnet50", "dilated",
                                                           "fcn_resnet50")
    assert saved.output_shape == (None, None, None, 4)
    assert saved.get_layer("conv1").kernel.shape[-1] == RESNET_TINY[0]  # the widths reached it
    labels = json.load(open(os.path.join(result["run_dir"], "labels.json")))
    assert labels["model_name"] == "fcn_resnet50"
    # the one step moved the weights the recipe built (BN statistics and kernels)
    assert len(initial) == 1 and len(initial[0]) == len(saved.get_weights())
    moved = [not np.array_equal(a, b) for a, b in zip(saved.get_weights(), initial[0])]
    assert sum(moved) > len(moved) // 2
    assert saved.get_layer("classifier_4").get_weights()[0].any()  # FCNHead: not zero-init
    # The final figures are the saved model's predictions on the two validation images.
    images, masks = shapes.shapes_arrays(2, size=32, seed=0, start=shapes.VAL_OFFSET)
    preds = np.asarray(saved.predict(images.astype("float32"), verbose=0)).argmax(-1)
    counts = confusion_counts(masks, preds, 4, 255)
    expected = dict(segmentation_metrics(counts), confusion_matrix=counts)
    assert_same_metrics(result["final"], expected, moved_pixels=2)


def test_the_flags_take_model_dilated_and_the_resnets():
    values = flags.FlagValues()
    config_lib.define_flags(values)
    values(["prog", "--model=dilated", "--backbone=resnet101", "--widths=4,4,8,8"])
    config = config_lib.config_from_flags(values)
    assert (config.model.variant, config.model.backbone, config.model.widths) == (
        "dilated", "resnet101", (4, 4, 8, 8))
    assert recipe.check_model(config) == ("dilated",)
    assert recipe.model_name(config, "dilated") == "fcn_resnet101"
    model = recipe.build_model(config, "dilated", 3, None)
    assert (model.backbone, model.variant, model.output_shape) == (
        "resnet101", "dilated", (None, None, None, 3))


@pytest.mark.parametrize("model, backbone", [
    ("dilated", "vgg16"), ("dilated", "mobilenet_v2"), ("fcn8s", "resnet50"),
    ("staged", "resnet101"), ("fcn16s", "alexnet")])
def test_a_model_the_backbone_does_not_have_is_refused_naming_both(tmp_path, model, backbone):
    config = _dilated_config(tmp_path).replace(model=model, backbone=backbone, widths=None)
    with pytest.raises(ValueError) as error:
        recipe.run(config)
    message = str(error.value)
    assert f"Received: model={model!r}, backbone={backbone!r}" in message
    # the models it has are listed, read from the trunk
    has = [name for name, variant in recipe.VARIANTS.items()
           if variant in get_trunk(backbone).variants]
    assert f"(its models: {', '.join(has)})" in message
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_trunk_options_reach_the_trunk_or_are_refused():
    """widths/fc_units went to VGG16 only: set for another trunk they were silently dropped."""
    base = config_lib.TrainConfig()
    alexnet = recipe.build_model(base.replace(backbone="alexnet", model="fcn32s",
                                              widths=(8, 8, 8, 8, 8), fc_units=8),
                                 "32s", 3, None)
    assert alexnet.get_layer("fc6").kernel.shape[-1] == 8
    assert alexnet.get_layer("conv1").kernel.shape[-1] == 8
    vgg = recipe.build_model(base.replace(widths=TINY_WIDTHS, fc_units=TINY_FC), "8s", 3, None)
    assert vgg.get_layer("fc7").kernel.shape[-1] == TINY_FC
    with pytest.raises(ValueError, match=r"resnet50 trunk has no option fc_units.*"
                                         r"Received: fc_units=8"):
        recipe.build_model(base.replace(backbone="resnet50", fc_units=8), "dilated", 3, None)
    with pytest.raises(ValueError, match=r"mobilenet_v2 trunk has no option widths"):
        recipe.build_model(base.replace(backbone="mobilenet_v2", widths=TINY_WIDTHS), "8s", 3,
                           None)


@pytest.mark.slow  # ~45 s; the one-step recipe test above runs by default
def test_train_script_trains_the_dilated_resnet_with_its_own_widths(tmp_path):
    """examples/train.py's demo widths are VGG16's (5 widths and fc_units): a ResNet backbone
    is built with its own, or the ones given."""
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "train.py"), "--model=dilated",
         "--backbone=resnet50", "--widths=4,4,8,8", "--epochs=1", "--steps_per_epoch=1",
         "--num_train=2", "--num_val=1", "--shapes_size=32", "--batch_size=2",
         "--export=false", "--verbose=0", f"--output_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0, result.stderr[-2000:]
    saved = keras.models.load_model(str(tmp_path / "run" / "model.keras"), compile=False)
    assert (saved.name, saved.get_layer("conv1").kernel.shape[-1]) == ("fcn_resnet50", 4)


def test_train_script_refuses_a_model_its_backbone_lacks_in_one_line():
    # In this process, as `python examples/train.py` runs (test_train.py runs the script)
    result = run_in_process("examples/train.py", "--model=dilated", "--backbone=vgg16",
                            "--output_dir=/nonexistent/never")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert errors == ["error: The vgg16 backbone has no --model=dilated (its models: fcn32s, "
                      "fcn16s, fcn8s, fcn8s_at_once). Received: model='dilated', "
                      "backbone='vgg16'"], result.stderr[-2000:]


def _dropout_rates(model):
    def walk(layer):
        for inner in getattr(layer, "layers", []):
            yield from walk(inner)
        yield layer
    return sorted(layer.rate for layer in walk(model) if isinstance(layer, keras.layers.Dropout))


def test_the_default_dropout_is_the_trunks():
    """No --dropout: 0.1 in the ResNets' head (torchvision), the paper's 0.5 after fc6/fc7."""
    default = config_lib.TrainConfig()
    assert default.model.dropout is None
    resnet = default.replace(model="dilated", backbone="resnet50", widths=RESNET_TINY)
    assert _dropout_rates(recipe.build_model(resnet, "dilated", 3, None)) == [0.1]
    vgg = default.replace(widths=TINY_WIDTHS, fc_units=TINY_FC)
    assert _dropout_rates(recipe.build_model(vgg, "8s", 3, None)) == [0.5, 0.5]
    assert _dropout_rates(recipe.build_model(vgg.replace(dropout=0.25), "8s", 3, None)) == [
        0.25, 0.25]
