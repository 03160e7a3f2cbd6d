"""Late-fusion, RGB-D and two-headed FCNs at tiny widths."""

import keras
import numpy as np
import pytest

from keras_fcn import models
from keras_fcn.models import multimodal as mm
from keras_fcn.training.two_headed import compile_two_headed, evaluate_segmentation
from tiny import TINY_FC, TINY_WIDTHS

TINY = dict(widths=TINY_WIDTHS, fc_units=TINY_FC)


def _randomize(model, seed=0):
    """Random weights everywhere (score layers start at zero, which would hide bugs)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _images(*shape, seed=0):
    return np.random.default_rng(seed).normal(0, 1, shape).astype("float32")


@pytest.mark.parametrize("variant", ["32s", "16s"])
def test_late_fusion_output_is_the_sum_of_the_streams(variant):
    model = _randomize(mm.build_late_fusion_fcn(variant, 5, weights_rgb=None, weights_hha=None,
                                                dropout=0.0, **TINY))
    rgb, hha = _images(2, 40, 52, 3, seed=1), _images(2, 40, 52, 3, seed=2)
    fused = model({"rgb": rgb, "hha": hha}, training=False)
    separate = (model.get_layer("rgb_fcn")(rgb, training=False)
                + model.get_layer("hha_fcn")(hha, training=False))
    assert fused.shape == (2, 40, 52, 5)
    np.testing.assert_allclose(fused, separate, rtol=1e-5, atol=1e-5)


def test_late_fusion_streams_load_single_stream_models():
    rgb_model = _randomize(models.build_fcn("32s", 4, weights=None, dropout=0.0, **TINY), 1)
    hha_model = _randomize(models.build_fcn("32s", 4, weights=None, dropout=0.0, **TINY), 2)
    fusion = mm.build_late_fusion_fcn("32s", 4, weights_rgb=rgb_model, weights_hha=hha_model,
                                      dropout=0.0, fusion_weights=(0.5, 0.5), **TINY)
    rgb, hha = _images(1, 33, 35, 3, seed=3), _images(1, 33, 35, 3, seed=4)
    expected = 0.5 * rgb_model(rgb) + 0.5 * hha_model(hha)
    np.testing.assert_allclose(fusion({"rgb": rgb, "hha": hha}), expected, rtol=1e-5, atol=1e-5)


def test_late_fusion_bad_weights_are_named():
    with pytest.raises(ValueError, match="fusion_weights"):
        mm.build_late_fusion_fcn("32s", 4, None, None, fusion_weights=(1.0,), **TINY)


def test_rgbd_first_conv_keeps_the_rgb_filters():
    rgb_model = _randomize(models.build_fcn("32s", 4, weights=None, **TINY))
    rgbd = mm.build_rgbd_fcn("32s", 4, weights=rgb_model, **TINY)
    source = rgb_model.get_layer("conv1_1").kernel.numpy()
    kernel = rgbd.get_layer("conv1_1").kernel.numpy()
    assert kernel.shape == (3, 3, 4, 4)
    np.testing.assert_array_equal(kernel[:, :, :3], source)
    np.testing.assert_allclose(kernel[:, :, 3], source.mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(rgbd.get_layer("conv2_1").kernel,
                                  rgb_model.get_layer("conv2_1").kernel)
    assert rgbd(_images(1, 20, 24, 4)).shape == (1, 20, 24, 4)


@pytest.mark.parametrize("variant,names", [
    ("32s", ["score_fr_sem", "upscore_sem", "score_sem", "score_fr_geo", "upscore_geo",
             "score_geo"]),
    ("16s", ["score_fr_sem", "upscore2_sem", "score_pool4_sem", "score_pool4_semc",
             "fuse_pool4_sem", "upscore16_sem", "score_sem", "score_fr_geo", "upscore2_geo",
             "score_pool4_geo", "score_pool4_geoc", "fuse_pool4_geo", "upscore16_geo",
             "score_geo"]),
    ("8s", ["score_pool3_sem", "score_pool3_semc", "fuse_pool3_sem", "upscore8_sem",
            "upscore_pool4_geo", "score_pool3_geo", "upscore8_geo"]),
])
def test_two_headed_reference_names_and_shapes(variant, names):
    model = mm.build_two_headed_fcn(variant, 6, 3, weights=None, **TINY)
    layer_names = {layer.name for layer in model.layers}
    assert set(names) <= layer_names
    outputs = model(_images(2, 36, 44, 3))
    assert outputs["semantic"].shape == (2, 36, 44, 6)
    assert outputs["geometric"].shape == (2, 36, 44, 3)


def test_two_headed_bad_counts_are_named():
    with pytest.raises(ValueError, match="num_geometric=0"):
        mm.build_two_headed_fcn("16s", 33, 0, weights=None, **TINY)


def test_both_heads_train():
    keras.utils.set_random_seed(0)
    model = mm.build_two_headed_fcn("16s", 4, 3, weights=None, dropout=0.0,
                                    widths=(8,) * 5, fc_units=16)
    compile_two_headed(model, keras.optimizers.Adam(3e-3))
    blocks = np.random.default_rng(0).integers(0, 4, (2, 4, 4))
    semantic = np.kron(blocks, np.ones((16, 16), int))  # 16x16 blocks of one class
    semantic[:, 0] = 255  # void row
    geometric = np.where(semantic == 255, 255, semantic % 3)
    geometric[:, 1] = 255
    colours = np.array([[100, -100, -100], [-100, 100, -100], [-100, -100, 100], [100, 100, -100]],
                       "float32")
    images = colours[np.minimum(semantic, 3)]
    history = model.fit(images, {"semantic": semantic, "geometric": geometric}, epochs=10,
                        batch_size=2, verbose=0).history
    for task in ("semantic", "geometric"):
        losses = history[f"{task}_loss"]
        assert losses[-1] < 0.9 * losses[0], (task, losses)
    assert "semantic_mean_iu" in history and "geometric_mean_iu" in history
    results = evaluate_segmentation(
        model, [(images, {"semantic": semantic, "geometric": geometric})],
        {"semantic": 4, "geometric": 3})
    assert results["semantic"]["confusion_matrix"].sum() == (semantic != 255).sum()
    assert results["geometric"]["confusion_matrix"].shape == (3, 3)


def test_two_headed_and_fusion_save_and_reload(tmp_path):
    model = _randomize(mm.build_two_headed_fcn("16s", 4, 3, weights=None, **TINY))
    model.save(tmp_path / "two.keras")
    reloaded = keras.models.load_model(tmp_path / "two.keras")
    x = _images(1, 30, 30, 3)
    for task in ("semantic", "geometric"):
        np.testing.assert_allclose(reloaded(x)[task], model(x)[task], rtol=1e-5, atol=1e-5)
    fusion = _randomize(mm.build_late_fusion_fcn("32s", 4, None, None, **TINY))
    fusion.save(tmp_path / "fusion.keras")
    again = keras.models.load_model(tmp_path / "fusion.keras")
    inputs = {"rgb": x, "hha": _images(1, 30, 30, 3, seed=5)}
    np.testing.assert_allclose(again(inputs), fusion(inputs), rtol=1e-5, atol=1e-5)
