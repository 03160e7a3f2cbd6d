"""Tests of the FCN builders: shapes, exact alignment of the heads, staged init, save/load."""

import re

import numpy as np
import pytest
import keras

import keras_fcn
from keras_fcn import models
from keras_fcn.models import build_fcn
from tiny import TINY_FC, TINY_WIDTHS

TINY = dict(widths=TINY_WIDTHS, fc_units=TINY_FC)
VARIANTS = ("32s", "16s", "8s", "8s_at_once")
# The reference crop offsets, written out here independently of the package.
REFERENCE_OFFSETS = {"pool4": 5, "pool3": 9, "32s": 19, "16s": 27, "8s": 31}


def tiny_fcn(variant, num_classes=3, **kwargs):
    return build_fcn(variant, num_classes=num_classes, weights=None, **TINY, **kwargs)


def randomize(model, seed=0):
    """Gives every layer random non-zero weights (score layers are zero, upsampling bilinear).

    Kernels are scaled by their fan-in so that every path (trunk, pool4 and pool3 skips)
    contributes to the output with a similar magnitude: a wrong offset anywhere shows.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if len(shape) == 4 and isinstance(layer, keras.layers.Conv2DTranspose):
                stride = layer.strides[0]
                std = 1.0 / np.sqrt((shape[0] / stride) ** 2 * shape[3])
            elif len(shape) == 4:
                std = np.sqrt(2.0 / (shape[0] * shape[1] * shape[2]))
            else:
                std = 0.1
            arrays.append(rng.normal(0, std, shape).astype("float32"))
        layer.set_weights(arrays)
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_size_equals_input_size(variant):
    model = tiny_fcn(variant)
    for height, width in [(1, 1), (17, 17), (97, 131), (224, 224), (8, 301)]:
        image = np.random.rand(1, height, width, 3).astype("float32")
        assert model.predict(image, verbose=0).shape == (1, height, width, 3)


def test_full_size_fcn8s_has_the_reference_parameter_count():
    assert keras_fcn.build_fcn8s(weights=None).count_params() == 134_489_759


@pytest.mark.slow
def test_full_size_500x500_output():
    model = keras_fcn.build_fcn8s(weights=None)
    assert model.predict(np.zeros((1, 500, 500, 3), "float32"), verbose=0).shape == (1, 500, 500, 21)


def reference_graph(variant, offsets=REFERENCE_OFFSETS):
    """The layers of the reference Caffe nets (fcn.berkeleyvision.org, voc-fcn*/net.py), written
    out here: name -> (kind, parameters, input layers). Caffe's conv1_1 pad 100 is `pad1`."""
    graph = {"pad1": ("pad", 100, ["image"]), "conv1_1": ("conv", (3, 1, "valid"), ["pad1"])}
    previous = "conv1_1"
    for block, convs in enumerate((2, 2, 3, 3, 3), 1):
        for index in range(1, convs + 1):
            if (block, index) != (1, 1):
                graph[f"conv{block}_{index}"] = ("conv", (3, 1, "same"), [previous])
            previous = f"conv{block}_{index}"
        graph[f"pool{block}"] = ("pool", (2, 2), [previous])
        previous = f"pool{block}"
    graph.update(fc6=("conv", (7, 1, "valid"), ["pool5"]), drop6=("dropout", None, ["fc6"]),
                 fc7=("conv", (1, 1, "same"), ["drop6"]), drop7=("dropout", None, ["fc7"]),
                 score_fr=("conv", (1, 1, "same"), ["drop7"]))
    if variant == "32s":
        graph.update(upscore=("deconv", (64, 32, "valid"), ["score_fr"]),
                     score=("crop", offsets["32s"], ["upscore", "image"]))
        return graph
    pool4, pool3 = "pool4", "pool3"
    if variant == "8s_at_once":  # the at-once net scales the skips (Caffe "Scale" layers)
        graph.update(scale_pool4=("scale", 0.01, ["pool4"]),
                     scale_pool3=("scale", 0.0001, ["pool3"]))
        pool4, pool3 = "scale_pool4", "scale_pool3"
    graph.update(upscore2=("deconv", (4, 2, "valid"), ["score_fr"]),
                 score_pool4=("conv", (1, 1, "same"), [pool4]),
                 score_pool4c=("crop", offsets["pool4"], ["score_pool4", "upscore2"]),
                 fuse_pool4=("sum", None, ["upscore2", "score_pool4c"]))
    if variant == "16s":
        graph.update(upscore16=("deconv", (32, 16, "valid"), ["fuse_pool4"]),
                     score=("crop", offsets["16s"], ["upscore16", "image"]))
        return graph
    graph.update(upscore_pool4=("deconv", (4, 2, "valid"), ["fuse_pool4"]),
                 score_pool3=("conv", (1, 1, "same"), [pool3]),
                 score_pool3c=("crop", offsets["pool3"], ["score_pool3", "upscore_pool4"]),
                 fuse_pool3=("sum", None, ["upscore_pool4", "score_pool3c"]),
                 upscore8=("deconv", (16, 8, "valid"), ["fuse_pool3"]),
                 score=("crop", offsets["8s"], ["upscore8", "image"]))
    return graph


def model_graph(model):
    """The model's layers in `reference_graph`'s terms (the input layer left out)."""
    def describe(layer):
        if isinstance(layer, keras.layers.ZeroPadding2D):
            return "pad", layer.padding[0][0]
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kind = "deconv" if isinstance(layer, keras.layers.Conv2DTranspose) else "conv"
            assert layer.kernel_size[0] == layer.kernel_size[1] and len(set(layer.strides)) == 1
            return kind, (layer.kernel_size[0], layer.strides[0], layer.padding)
        if isinstance(layer, keras.layers.MaxPooling2D):
            return "pool", (layer.pool_size[0], layer.strides[0])
        simple = {keras.layers.Dropout: ("dropout", None), keras.layers.Add: ("sum", None),
                  keras_fcn.CropToReference: ("crop", getattr(layer, "offset", None)),
                  keras_fcn.Scale: ("scale", getattr(layer, "factor", None))}
        return simple.get(type(layer), (type(layer).__name__, None))

    graph = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        (node,) = layer._inbound_nodes
        inputs = [t._keras_history.operation.name for t in node.input_tensors]
        graph[layer.name] = (*describe(layer), inputs)
    return graph


@pytest.mark.parametrize("variant", VARIANTS)
def test_layers_are_the_reference_nets_by_name_kind_and_input(variant):
    """Each paper layer (`score_pool4`, `upscore2`, `fuse_pool3`...) is built under its name,
    with the reference's kernel, stride, scale or crop offset, from the reference's inputs."""
    assert model_graph(tiny_fcn(variant)) == reference_graph(variant)


def test_bilinear_kernel_matches_closed_form():
    for size in range(1, 17):
        factor = (size + 1) // 2
        center = factor - 1 if size % 2 else factor - 0.5
        expected = np.array([[(1 - abs(i - center) / factor) * (1 - abs(j - center) / factor)
                              for j in range(size)] for i in range(size)])
        np.testing.assert_allclose(keras_fcn.bilinear_kernel(size), expected, atol=1e-7)
    np.testing.assert_allclose(keras_fcn.bilinear_kernel(4)[1], [0.1875, 0.5625, 0.5625, 0.1875])


def test_bilinear_initializer_is_diagonal_and_interpolates_linearly():
    kernel = np.asarray(keras_fcn.BilinearUpsampling()((4, 4, 3, 3)))
    assert np.all(kernel[:, :, 0, 1] == 0) and np.all(kernel[:, :, 2, 0] == 0)
    np.testing.assert_allclose(kernel[:, :, 1, 1], keras_fcn.bilinear_kernel(4))
    # A linear ramp upsampled by 2 stays a ramp of half the slope, away from the borders.
    layer = keras.layers.Conv2DTranspose(1, 4, strides=2, use_bias=False,
                                         kernel_initializer=keras_fcn.BilinearUpsampling())
    ramp = np.tile(np.arange(8, dtype="float32"), (8, 1))[None, ..., None]
    out = np.asarray(layer(ramp))[0, 4:-4, 4:-4, 0]
    np.testing.assert_allclose(np.diff(out, axis=1), 0.5, atol=1e-5)
    np.testing.assert_allclose(np.diff(out, axis=0), 0.0, atol=1e-5)


# --- exact alignment: a numpy reference of the heads ------------------------------------


def conv1x1(x, kernel, bias):
    return x @ kernel[0, 0] + bias


def deconv(x, kernel, stride):
    """Transposed convolution, 'valid': out[i*s + a, j*s + b, o] += x[i, j, c] * k[a, b, o, c]."""
    h, w, _ = x.shape
    k = kernel.shape[0]
    out = np.zeros(((h - 1) * stride + k, (w - 1) * stride + k, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            out[i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "c,aboc->abo", x[i, j], kernel)
    return out


def crop(x, offset, height, width):
    assert x.shape[0] >= offset + height and x.shape[1] >= offset + width
    return x[offset:offset + height, offset:offset + width]


def reference_heads(variant, trunk, weights, height, width, offsets=REFERENCE_OFFSETS):
    pool3, pool4, fc7 = trunk
    score = conv1x1(fc7, *weights["score_fr"])
    if variant == "32s":
        return crop(deconv(score, weights["upscore"][0], 32), offsets["32s"], height, width)
    scale4, scale3 = (0.01, 0.0001) if variant == "8s_at_once" else (1.0, 1.0)
    up = deconv(score, weights["upscore2"][0], 2)
    skip = crop(conv1x1(pool4 * scale4, *weights["score_pool4"]), offsets["pool4"], *up.shape[:2])
    fused = up + skip
    if variant == "16s":
        return crop(deconv(fused, weights["upscore16"][0], 16), offsets["16s"], height, width)
    up = deconv(fused, weights["upscore_pool4"][0], 2)
    skip = crop(conv1x1(pool3 * scale3, *weights["score_pool3"]), offsets["pool3"], *up.shape[:2])
    return crop(deconv(up + skip, weights["upscore8"][0], 8), offsets["8s"], height, width)


def trunk_outputs(model, image):
    names = ("pool3", "pool4", "drop7")
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    return [np.asarray(t)[0].astype("float64") for t in probe(image)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [(1, 1), (13, 29), (40, 33)])
def test_heads_match_numpy_reference_exactly_aligned(variant, size):
    model = randomize(tiny_fcn(variant), seed=len(variant) + size[0])
    image = np.random.default_rng(1).uniform(-50, 50, (1, *size, 3)).astype("float32")
    weights = {layer.name: [np.asarray(w, "float64") for w in layer.get_weights()]
               for layer in model.layers if layer.weights}
    expected = reference_heads(variant, trunk_outputs(model, image), weights, *size)
    got = model.predict(image, verbose=0)[0]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale)


def test_numpy_reference_detects_an_offset_off_by_one():
    """The alignment test can fail: shifting any offset by one changes the output."""
    model = randomize(tiny_fcn("8s"), seed=3)
    image = np.random.default_rng(2).uniform(-50, 50, (1, 21, 23, 3)).astype("float32")
    weights = {layer.name: [np.asarray(w, "float64") for w in layer.get_weights()]
               for layer in model.layers if layer.weights}
    trunk = trunk_outputs(model, image)
    good = reference_heads("8s", trunk, weights, 21, 23)
    for key in ("pool4", "pool3", "8s"):
        shifted = dict(REFERENCE_OFFSETS, **{key: REFERENCE_OFFSETS[key] + 1})
        bad = reference_heads("8s", trunk, weights, 21, 23, offsets=shifted)
        assert np.abs(bad - good).max() > 1e-2 * np.abs(good).max(), key


def test_fixed_input_size_gives_static_crops():
    model = tiny_fcn("8s", input_shape=(64, 48, 3))
    assert tuple(model.output.shape) == (None, 64, 48, 3)
    assert tuple(model.get_layer("score_pool3c").output.shape[1:3]) == tuple(
        model.get_layer("upscore_pool4").output.shape[1:3])


# --- initialization ---------------------------------------------------------------------


def test_score_layers_zero_and_upsampling_bilinear_and_frozen():
    model = tiny_fcn("8s")
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert all(np.all(np.asarray(w) == 0) for w in model.get_layer(name).weights)
    for name, size in (("upscore2", 4), ("upscore_pool4", 4), ("upscore8", 16)):
        layer = model.get_layer(name)
        assert not layer.trainable and not layer.use_bias
        np.testing.assert_allclose(np.asarray(layer.kernel)[:, :, 2, 2], keras_fcn.bilinear_kernel(size))
    assert tiny_fcn("8s", trainable_upsampling=True).get_layer("upscore8").trainable
    # A fresh model predicts all zeros: the well-known "all background" start of the paper.
    assert np.all(model.predict(np.ones((1, 20, 20, 3), "float32"), verbose=0) == 0)


def test_staged_initialization_copies_shared_layers_and_zeroes_new_scores():
    fcn32s = randomize(tiny_fcn("32s"), seed=5)
    fcn16s = build_fcn("16s", num_classes=3, weights=fcn32s, **TINY)
    shared = [layer.name for layer in fcn32s.layers if layer.weights and layer.name != "upscore"]
    assert "score_fr" in shared and "fc6" in shared
    for name in shared:
        for a, b in zip(fcn32s.get_layer(name).get_weights(), fcn16s.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert all(np.all(w == 0) for w in fcn16s.get_layer("score_pool4").get_weights())
    np.testing.assert_allclose(fcn16s.get_layer("upscore16").get_weights()[0][:, :, 0, 0],
                               keras_fcn.bilinear_kernel(32))

    fcn16s.get_layer("score_pool4").set_weights([np.full((1, 1, 8, 3), 0.5, "float32"),
                                                 np.ones(3, "float32")])
    fcn8s = build_fcn("8s", num_classes=3, weights=fcn16s, **TINY)
    for a, b in zip(fcn16s.get_layer("score_pool4").get_weights(),
                    fcn8s.get_layer("score_pool4").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(np.all(w == 0) for w in fcn8s.get_layer("score_pool3").get_weights())


# --- serialization ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["32s", "8s_at_once"])
def test_save_and_load_give_identical_outputs(tmp_path, variant):
    model = randomize(tiny_fcn(variant, include_preprocessing=True), seed=7)
    image = np.random.default_rng(0).uniform(0, 255, (2, 35, 27, 3)).astype("float32")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(image, verbose=0), model.predict(image, verbose=0),
                               rtol=1e-6, atol=1e-6)
    clone = keras.Model.from_config(model.get_config())
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]


@pytest.mark.parametrize("layer", [keras_fcn.CropToReference(7, name="c"), keras_fcn.Scale(0.01),
                                   keras_fcn.CaffePreprocessing((1.0, 2.0, 3.0))])
def test_custom_layer_config_round_trip(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_mixed_precision_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_fcn("8s")
        assert model.get_layer("fc6").compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --- preprocessing ----------------------------------------------------------------------


def test_preprocess_input_is_bgr_minus_reference_mean():
    rgb = np.array([[[[10, 20, 30]]]], "uint8")
    expected = np.array([30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434])
    np.testing.assert_allclose(keras_fcn.preprocess_input(rgb)[0, 0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(keras_fcn.preprocess_input(keras.ops.convert_to_tensor(
        rgb.astype("float32"))))[0, 0, 0], expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"shape=\(1, 1, 1, 4\)"):
        keras_fcn.preprocess_input(np.zeros((1, 1, 1, 4)))


def test_models_with_preprocessing_take_raw_rgb():
    plain = randomize(tiny_fcn("16s"), seed=2)
    inside = tiny_fcn("16s", include_preprocessing=True)
    keras_fcn.set_weights_by_name(inside, keras_fcn.read_weights(plain))
    raw = np.random.default_rng(0).integers(0, 256, (1, 30, 30, 3)).astype("uint8")
    expected = plain.predict(keras_fcn.preprocess_input(raw), verbose=0)
    np.testing.assert_allclose(inside.predict(raw.astype("float32"), verbose=0), expected,
                               rtol=1e-5, atol=1e-5)
    wrapped = keras_fcn.with_preprocessing(plain)
    assert wrapped.input.dtype == "uint8"
    np.testing.assert_allclose(wrapped.predict(raw, verbose=0), expected, rtol=1e-5, atol=1e-5)


# --- argument validation ----------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=0), "num_classes=0"),
    (dict(num_classes="21"), "num_classes='21'"),
    (dict(input_shape=(None, None)), r"input_shape=\(None, None\)"),
    (dict(input_shape=(0, 10, 3)), r"input_shape=\(0, 10, 3\)"),
    (dict(weights=3), "weights=3"),
    (dict(dropout=1.5), "dropout=1.5"),
    (dict(backbone="resnet50"), "backbone='resnet50'"),
    (dict(include_preprocessing=True, input_shape=(None, None, 4)), "input_shape"),
])
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_fcn.build_fcn8s(**{"weights": None, **kwargs})


def test_unknown_variant_and_bad_layer_arguments():
    with pytest.raises(ValueError, match="variant='4s'"):
        build_fcn("4s", weights=None)
    with pytest.raises(ValueError, match=r"widths=\(4, 4, 8, 8, 8\)"):
        build_fcn("8s", weights=None, backbone="mobilenet_v2", **TINY)
    with pytest.raises(ValueError, match="offset=-1"):
        keras_fcn.CropToReference(-1)
    with pytest.raises(ValueError, match="size=0"):
        keras_fcn.bilinear_kernel(0)
    with pytest.raises(ValueError, match=r"shape=\(4, 4, 2, 3\)"):
        keras_fcn.BilinearUpsampling()((4, 4, 2, 3))


# --- inspecting built models --------------------------------------------------------------


def test_inspect_tells_backbone_classes_and_preprocessing_through_wrappers():
    plain = tiny_fcn("32s", num_classes=4)
    wrapped = models.with_preprocessing(plain)
    raw = models.raw_rgb_model(plain)
    for model in (plain, wrapped, raw):
        assert models.backbone_of(model) == "vgg16"
        assert models.num_classes_of(model) == 4
    assert [models.has_preprocessing(m) for m in (plain, wrapped, raw)] == [False, True, True]
    assert models.preprocessing_fn(plain) is keras_fcn.preprocess_input
    assert models.preprocessing_fn(wrapped) is None
    assert models.raw_rgb_model(wrapped) is wrapped
    assert raw.input.dtype == "float32" and raw.name == "fcn32s_raw_rgb"
    mean = (1.0, 2.0, 3.0)
    inside = keras.Sequential([keras.Input((None, None, 3)),
                               keras_fcn.CaffePreprocessing(mean, name="preprocess")])
    assert models.normalization_of(keras.Sequential([inside]))["mean_bgr"] == [1.0, 2.0, 3.0]
    assert models.normalization_of(plain) == {
        "type": "caffe_bgr_mean", "mean_bgr": [104.00698793, 116.66876762, 122.67891434],
        "formula": "RGB -> BGR, minus mean_bgr, no scaling"}
    with pytest.raises(ValueError, match="already has a 'preprocess' layer"):
        models.with_preprocessing(wrapped)
    # A model of one's own (no recorded trunk, no keras_fcn trunk's layers): its
    # preprocessing is unknown, and is no longer guessed to be VGG16's Caffe mean.
    own = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 1)])
    for tell in (models.backbone_of, models.preprocessing_fn, models.normalization_of,
                 models.raw_rgb_model):
        with pytest.raises(ValueError, match=r"Cannot tell the trunk of model 'sequential.*"
                                             r"layer named 'preprocess'"):
            tell(own)
    # Its own 'preprocess' layer describes it (export metadata), as it does a wrapper's.
    identity = keras.Sequential([keras.Input((None, None, 3)),
                                 keras.layers.Identity(name="preprocess"), own])
    assert models.normalization_of(identity) == {
        "type": "custom", "layer": "Identity",
        "formula": "the model's own 'preprocess' layer (Identity) on RGB 0..255"}
    assert models.raw_rgb_model(identity) is identity
    scaled = keras.Sequential([keras.Input((None, None, 3)),
                               keras.layers.Rescaling(1 / 255, name="preprocess"), plain])
    assert models.normalization_of(scaled) == {
        "type": "scale", "scale": 1 / 255, "offset": 0.0, "formula": "x * 0.00392157 + 0 on RGB"}
    mobilenet = build_fcn("32s", num_classes=3, weights=None, backbone="mobilenet_v2",
                          include_preprocessing=True)
    assert models.normalization_of(mobilenet) == {
        "type": "scale", "scale": 1 / 127.5, "offset": -1.0, "formula": "x / 127.5 - 1 on RGB"}


def test_backbone_of_tells_every_trunk():
    from keras_fcn.models import backbone_of, googlenet_widths

    cases = {"alexnet": {"widths": (8,) * 5, "fc_units": 8},
             "googlenet": {"widths": googlenet_widths(8)},
             "mobilenet_v2": {}, "vgg16": {"widths": (4,) * 5, "fc_units": 8}}
    for backbone, kwargs in cases.items():
        model = build_fcn("32s", num_classes=3, weights=None, backbone=backbone, **kwargs)
        assert backbone_of(model) == backbone
        assert backbone_of(keras_fcn.with_preprocessing(model, "float32")) == backbone


def test_channels_first_data_format_is_refused_before_building():
    """The build failed deep inside with "unsupported operand type(s) for %"."""
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match="set_image_data_format.*'channels_first'"):
            build_fcn("8s", 3, weights=None, widths=TINY_WIDTHS, fc_units=TINY_FC)
    finally:
        keras.config.set_image_data_format("channels_last")


def test_a_saved_model_leaves_jit_compile_to_the_backend_that_loads_it(tmp_path):
    """The recipes compile with jit_compile=True on JAX; Keras saved that, and the file loaded
    on PyTorch ran under torch.compile (0.52x eager there) and, on a TensorFlow CPU, under
    XLA. Saved as "auto", each backend takes its default (TensorFlow on a CPU: no XLA)."""
    from keras_fcn.training import compile_model

    model = tiny_fcn("8s")
    compile_model(model, num_classes=3, ignore_label=255, optimizer="sgd", jit_compile=True)
    assert model.jit_compile is True
    assert model.get_compile_config()["jit_compile"] == "auto"
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.compiled and loaded.jit_compile is False  # TensorFlow here, on a CPU
    np.testing.assert_allclose(loaded.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0),
                               model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0))


def test_a_keras_clone_keeps_the_trunk_record_through_copy_info_to(tmp_path):
    """keras.models.clone_model builds FCN(inputs, outputs) afresh: no backbone, no variant
    (the tools then fall back to reading the layers, or refuse a ResNet); copy_info_to, as the
    docs say, keeps the record through a save."""
    model = tiny_fcn("16s")
    clone = keras.models.clone_model(model)
    assert isinstance(clone, models.FCN) and clone.backbone is None
    assert model.copy_info_to(clone) is clone
    clone.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras", compile=False)
    assert (loaded.backbone, loaded.variant) == ("vgg16", "16s")


def test_crop_to_reference_takes_an_exact_fit_and_names_one_pixel_short():
    """The size check's boundary (offset + reference size == input size is a valid crop) was
    caught by no test: `>=` in its place went unnoticed (the mutation audit)."""
    from keras_fcn.layers import CropToReference

    x = np.arange(2 * 7 * 6 * 3, dtype="float32").reshape(2, 7, 6, 3)
    reference = np.zeros((2, 5, 4, 1), "float32")
    got = keras.ops.convert_to_numpy(CropToReference(2)([x, reference]))
    np.testing.assert_array_equal(got, x[:, 2:7, 2:6, :])  # ends at the last row and column
    with pytest.raises(ValueError, match=r"crops a window of 5 at offset 3 along height, but "
                                         r"its input has only 7: the input must be at least "
                                         r"offset \+ reference size \(8\)"):
        CropToReference(3)([x, reference])


def test_bilinear_upsampling_refuses_a_kernel_that_maps_channels_to_others():
    """A (k, k, C_out, C_in) kernel with C_out != C_in has no per-channel meaning; the check
    could be dropped unnoticed (the mutation audit)."""
    from keras_fcn.layers import BilinearUpsampling, bilinear_kernel

    for shape in ((4, 4, 3, 2), (4, 3, 2, 2), (4, 4, 2)):
        with pytest.raises(ValueError, match=r"needs a square kernel of shape \(k, k, C, C\)\. "
                                             rf"Received: shape={re.escape(str(shape))}"):
            BilinearUpsampling()(shape)
    kernel = keras.ops.convert_to_numpy(BilinearUpsampling()((4, 4, 2, 2)))
    np.testing.assert_allclose(kernel[:, :, 1, 1], bilinear_kernel(4), rtol=1e-6)
    assert kernel[:, :, 0, 1].max() == 0 == kernel[:, :, 1, 0].max()


def test_the_numpy_label_check_reads_a_large_set_in_chunks_and_misses_no_image():
    """FCN.fit's check of numpy labels made an int64 copy of the whole set (8x a uint8 set);
    it reads ~16M pixels at a time now: a bad label in the last image is still named."""
    from keras_fcn.models.input_checks import check_arrays
    from keras_fcn.training import compile_model

    model = tiny_fcn("32s", 4)
    compile_model(model, num_classes=4, ignore_label=255, optimizer="sgd")
    labels = np.zeros((70, 500, 500), "uint8")  # 17.5M pixels: two chunks
    labels[:, 0, 0] = 255
    check_arrays(model, None, labels)
    labels[69, 499, 499] = 4
    with pytest.raises(ValueError, match=r"Every label must be in \[0, 4\) \(void: "
                                         r"ignore_label=255\)\. Received a label value: 4$"):
        check_arrays(model, None, labels)
