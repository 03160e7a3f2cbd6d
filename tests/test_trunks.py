"""The shared trunk test base: every registered trunk (keras_fcn.models.list_trunks()) is built
at odd sizes, checked for alignment, saved and loaded (its name recorded), run in bfloat16 and
converted to TFLite, with the same checks. A new trunk needs one entry in TINY (its cheap test
options) and one in SHIFT (where its FCN-32s puts an output pixel on the input, derived in its module).
"""

import numpy as np
import pytest

import keras
import keras_fcn
from keras_fcn import runtime
from keras_fcn.models import (coord_maps, googlenet_widths, list_trunks, get_trunk,
                              normalization_of)

# Cheap options per trunk (tiny widths); a trunk missing here fails test_every_trunk_is_tested.
TINY = {
    "vgg16": {"widths": (4, 4, 8, 8, 8), "fc_units": 8},
    "mobilenet_v2": {},
    "alexnet": {"widths": (4, 4, 4, 4, 4), "fc_units": 8},
    "googlenet": {"widths": googlenet_widths(16)},
    "resnet50": {"widths": (4, 4, 8, 8)},
    "resnet101": {"widths": (4, 4, 8, 8)},
}
# Where FCN-32s output pixel y sits on the input, minus y (keras_fcn.coord_maps): 0 where the
# reference's crop offsets align the output exactly (VGG16, AlexNet, GoogLeNet), -0.5 where an
# even upsampling kernel can only align to half a pixel (MobileNetV2, see its module). The
# dilated FCN-ResNets (torchvision's design: stride-8 features whose pixel f covers input 8f,
# resized with half-pixel centres) sit 3.5 px up and left of the input, as torchvision's do.
SHIFT = {"vgg16": 0.0, "mobilenet_v2": -0.5, "alexnet": 0.0, "googlenet": 0.0,
         "resnet50": -3.5, "resnet101": -3.5}
ODD_SIZES = ((1, 1), (37, 50), (65, 33))
NUM_CLASSES = 3
TRUNKS = list_trunks()


def tiny_model(backbone, variant=None, seed=0, **kwargs):
    """A small FCN on ``backbone`` with random (non-zero) score layers."""
    keras.utils.set_random_seed(seed)
    variant = variant or get_trunk(backbone).variants[0]
    model = keras_fcn.build_fcn(variant, NUM_CLASSES, weights=None, backbone=backbone,
                                **TINY[backbone], **kwargs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith("score") and layer.weights:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                               for w in layer.get_weights()])
    return model


def images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (1, *shape, 3)).astype("float32")


def test_every_trunk_is_tested():
    assert sorted(TINY) == sorted(TRUNKS) == sorted(SHIFT)


@pytest.mark.parametrize("backbone", TRUNKS)
def test_every_variant_at_odd_sizes(backbone):
    """Each variant gives logits of the input's size, finite and not constant, at any size."""
    for variant in get_trunk(backbone).variants:
        model = tiny_model(backbone, variant)
        assert (model.backbone, model.variant) == (backbone, variant)
        for size in ODD_SIZES:
            logits = np.asarray(model(get_trunk(backbone).preprocessing.array(images(size))))
            assert logits.shape == (1, *size, NUM_CLASSES), (variant, size)
            assert logits.dtype == np.float32 and np.isfinite(logits).all()
            if size != (1, 1):
                assert np.ptp(logits) > 0, (variant, size)


@pytest.mark.parametrize("backbone", TRUNKS)
def test_the_scored_path_is_aligned_with_the_input(backbone):
    """FCN-32s (or the dilated FCN) maps output pixel ``y`` to input ``y + SHIFT`` (scale 1)."""
    variant = "32s" if "32s" in get_trunk(backbone).variants else "dilated"
    # Odd sizes for the paper's heads (ceil-mode pools); multiples of 8 for the resize of the
    # dilated heads, where the scale is exactly 1.
    for size in ((353, 500), (97, 131)) if variant == "32s" else ((352, 496), (96, 128)):
        model = keras_fcn.build_fcn(variant, 2, input_shape=(*size, 3), weights=None,
                                    backbone=backbone, **TINY[backbone])
        for axis in (0, 1):
            assert coord_maps(model, axis) == [(1.0, SHIFT[backbone])], (backbone, size, axis)


@pytest.mark.parametrize("backbone", TRUNKS)
def test_save_and_load_record_the_trunk(backbone, tmp_path):
    """The trunk's name and the variant are in the saved model: nothing guesses them."""
    trunk = get_trunk(backbone)
    variant = trunk.variants[-1]
    model = tiny_model(backbone, variant, seed=1)
    x = trunk.preprocessing.array(images((37, 50), seed=1))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras_fcn.FCN)
    assert (loaded.backbone, loaded.variant) == (backbone, variant)
    np.testing.assert_allclose(loaded(x), model(x), rtol=0, atol=1e-5)
    # What the tools derive from it: the preprocessing, as a layer and on arrays.
    assert keras_fcn.backbone_of(keras_fcn.raw_rgb_model(loaded)) == backbone
    assert normalization_of(loaded) == trunk.preprocessing.normalization(loaded)
    assert normalization_of(loaded)["type"] == trunk.preprocessing.kind
    raw = images((37, 50), seed=1)
    np.testing.assert_allclose(keras_fcn.raw_rgb_model(loaded)(raw), model(x), rtol=0,
                               atol=1e-4)


@pytest.mark.parametrize("backbone", TRUNKS)
def test_preprocessing_layer_equals_the_array_function(backbone):
    preprocessing = get_trunk(backbone).preprocessing
    raw = images((5, 7), seed=2)
    np.testing.assert_allclose(preprocessing.layer(name="preprocess")(raw),
                               preprocessing.array(raw), rtol=1e-6, atol=1e-5)
    built = keras_fcn.build_fcn(get_trunk(backbone).variants[0], NUM_CLASSES, weights=None,
                                backbone=backbone, include_preprocessing=True, **TINY[backbone])
    assert keras_fcn.models.has_preprocessing(built)
    assert keras_fcn.models.preprocessing_fn(built) is None
    assert keras_fcn.models.preprocessing_fn(tiny_model(backbone)) is preprocessing.array


@pytest.mark.parametrize("backbone", TRUNKS)
def test_bfloat16_keeps_the_trunk_and_the_logits(backbone):
    model = tiny_model(backbone, seed=3)
    x = get_trunk(backbone).preprocessing.array(images((37, 50), seed=3))
    fast = runtime.with_precision(model, "bfloat16")
    assert (fast.backbone, fast.variant) == (model.backbone, model.variant)
    dtypes = {layer.compute_dtype for layer in keras_fcn.models.all_layers(fast)
              if layer.weights and not layer.name.startswith(runtime.HEAD_LAYERS)}
    assert dtypes == {"bfloat16"}
    want, got = np.asarray(model(x)), np.asarray(fast(x))
    assert got.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: a few percent of the logits' scale, no more.
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


# ResNet-101 converts in ~18 s and adds nothing ResNet-50 does not check: a slow test.
@pytest.mark.parametrize("backbone", [
    pytest.param(name, marks=pytest.mark.slow) if name == "resnet101" else name
    for name in TRUNKS])
def test_tflite_equals_keras(backbone):
    pytest.importorskip("tensorflow")
    from keras_fcn.export import convert_to_tflite
    from keras_fcn.export.litert_runner import TFLiteRunner

    model = tiny_model(backbone, seed=4)
    size = (37, 50)
    raw = np.random.default_rng(4).integers(0, 256, (*size, 3), dtype=np.uint8)
    flatbuffer = convert_to_tflite(model, input_size=size)  # not a multiple of 32: pads, crops
    if backbone == "mobilenet_v2":
        from keras_fcn.export import check_tflite_ops

        assert "DEPTHWISE_CONV_2D" in check_tflite_ops(flatbuffer)
    got = TFLiteRunner(flatbuffer).outputs(raw)
    want = np.asarray(keras_fcn.raw_rgb_model(model)(raw[None].astype("float32")))[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("backbone", TRUNKS)
def test_unknown_trunk_options_are_named(backbone):
    with pytest.raises(ValueError, match=f"{backbone} trunk has no option bogus"):
        get_trunk(backbone).check_options(bogus=1)


def test_unknown_backbone_lists_the_trunks():
    with pytest.raises(ValueError, match="Unknown backbone.*vgg16.*Received: backbone='vgg19'"):
        keras_fcn.build_fcn32s(weights=None, backbone="vgg19")


def test_load_weights_refuses_imagenet_without_a_trunk():
    model = tiny_model("vgg16")
    with pytest.raises(ValueError, match="each trunk's own ImageNet"):
        keras_fcn.load_weights(model, "imagenet")


def test_legacy_models_without_a_record_are_told_from_their_layers():
    """Only models saved by 0.1.x (plain functional models) fall back to the layer names."""
    model = tiny_model("alexnet")
    plain = keras.Model(model.inputs, model.outputs)
    assert not isinstance(plain, keras_fcn.FCN)
    assert keras_fcn.models.legacy_backbone(plain) == "alexnet"
    assert keras_fcn.backbone_of(plain) == "alexnet"


def _resize_numpy(x, size):
    """Bilinear resize with half-pixel centres (PyTorch's align_corners=False), in numpy."""
    def weights(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        matrix = np.zeros((n_out, n_in))
        matrix[np.arange(n_out), low] += 1 - (src - low)
        matrix[np.arange(n_out), high] += src - low
        return matrix
    rows, cols = weights(x.shape[1], size[0]), weights(x.shape[2], size[1])
    return np.einsum("hi,niwc,vw->nhvc", rows, x, cols)


@pytest.mark.parametrize("size", [(37, 50), (5, 7), (64, 48)])
def test_resize_to_reference_is_half_pixel_bilinear(size):
    from keras_fcn.layers import ResizeToReference

    x = np.random.default_rng(5).normal(size=(2, 5, 7, 3)).astype("float32")
    got = np.asarray(ResizeToReference()([x, np.zeros((2, *size, 1), "float32")]))
    np.testing.assert_allclose(got, _resize_numpy(x, size), rtol=0, atol=1e-5)
    # Sizes unknown until the graph runs (an any-size SavedModel of a ResNet FCN): it failed
    # as "a symbolic tf.Tensor as a Python bool".
    import tensorflow as tf

    spec = [tf.TensorSpec([2, None, None, 3]), tf.TensorSpec([2, None, None, 1])]
    resize = tf.function(lambda a, b: ResizeToReference()([a, b]), input_signature=spec)
    graph = resize(tf.constant(x), tf.zeros((2, *size, 1))).numpy()
    np.testing.assert_allclose(graph, _resize_numpy(x, size), rtol=0, atol=1e-5)


def test_any_size_saved_model_of_a_resnet_fcn(tmp_path):
    """tools/export.py's default (an any-size SavedModel) failed for every ResNet FCN."""
    import tensorflow as tf

    from keras_fcn import export

    model = keras_fcn.build_fcn("dilated", num_classes=3, weights=None, backbone="resnet50",
                                widths=(4, 4, 8, 8))
    export.export_saved_model(model, str(tmp_path / "sm"))
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    predict = export.keras_predictor(model)
    for size in ((40, 56), (33, 47)):
        image = np.random.default_rng(0).integers(0, 256, (1, *size, 3)).astype("uint8")
        probabilities = served(images=tf.constant(image))["probabilities"].numpy()
        want = keras.ops.convert_to_numpy(keras.ops.softmax(predict(image[0])))
        np.testing.assert_allclose(probabilities[0], want, atol=1e-5)
