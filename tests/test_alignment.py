"""keras_fcn.coord_maps and derive_offsets: the shipped trunks' offsets (the reference's, for
the Caffe trunks) derived again from their geometry, trunks of one's own aligned by derived
offsets, measured independently by pushing a linear ramp through the network (every layer of
these trunks is linear and symmetric about its centre, so the output is a ramp whose offset is
where the output pixels sit on the input), and the errors."""

import dataclasses

import numpy as np
import pytest

import keras
import keras_fcn
from keras_fcn.models import CAFFE, PadToMultiple, Trunk, coord_maps, derive_offsets, get_trunk
from test_trunks import TINY


@pytest.mark.parametrize("backbone", ["vgg16", "alexnet", "googlenet", "mobilenet_v2"])
def test_the_shipped_offsets_are_derived_again(backbone):
    """VGG16's, AlexNet's and GoogLeNet's are the reference's Caffe offsets; MobileNetV2's were
    chosen by hand (tests/test_mobilenet.py measures them by impulse responses)."""
    trunk = get_trunk(backbone)
    assert derive_offsets(trunk, **TINY[backbone]) == trunk.offsets


def averaging_conv(kernel, strides=1, padding="same", name=None):
    """A one-channel convolution averaging its window: a ramp stays a ramp."""
    return keras.layers.Conv2D(1, kernel, strides=strides, padding=padding, use_bias=False,
                               kernel_initializer=keras.initializers.Constant(1.0), name=name)


def same_features(x, dropout, pad=True):
    """Five 3x3 stride-2 'same' convolutions, after padding to a multiple of 32 (or not)."""
    x = PadToMultiple(32)(x) if pad else x
    maps = []
    for i in range(5):
        x = averaging_conv(3, 2, name=f"conv{i}")(x)
        maps.append(x)
    return maps[2], maps[3], keras.layers.Dropout(dropout)(maps[4])


def valid_features(x, dropout):
    """VGG-like: a wide input padding, 'valid' convolutions and 2x2 average pools."""
    x = keras.layers.ZeroPadding2D(60)(x)
    x = averaging_conv(5, padding="valid")(x)
    maps = []
    for i in range(5):
        x = keras.layers.AveragePooling2D(2)(averaging_conv(3, name=f"conv{i}")(x))
        maps.append(x)
    return maps[2], maps[3], averaging_conv(3, padding="valid", name="fc")(maps[4])


SCORES = {"32s": ("score_fr",), "16s": ("score_fr", "score_pool4"),
          "8s": ("score_fr", "score_pool4", "score_pool3")}


def unit_kernels(model, path="score_fr"):
    """Averaging trunk kernels (sum 1), the score layer of ``path`` 1 and the others 0: the
    logits are that path's ramp."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and not layer.name.startswith("upscore"):
            kernel = np.ones(layer.kernel.shape, "float32")
            if layer.name.startswith("score"):
                kernel *= layer.name == path
            layer.kernel.assign(kernel / kernel[..., 0].size)
            if layer.use_bias:
                layer.bias.assign(np.zeros(layer.bias.shape, "float32"))


def ramp_offset(model, axis, size=(640, 576), margin=200):
    """Where the output pixels sit: the logits of an image whose value is its row (or column)
    minus the pixel index, in the image's interior: (mean, peak-to-peak)."""
    coords = np.arange(size[axis], dtype="float32")
    ramp = coords[:, None] if axis == 0 else coords[None, :]
    image = np.broadcast_to(ramp[..., None], (*size, 3))[None].astype("float32")
    inner = (np.asarray(model(image))[0, ..., 0] - ramp)[margin:-margin, margin:-margin]
    return float(inner.mean()), float(np.ptp(inner))


@pytest.mark.parametrize("features", [same_features, valid_features])
def test_derived_offsets_align_a_trunk_of_ones_own(registry, features):
    trunk = Trunk("ramp", features, {}, CAFFE, lambda model, weights: [])
    offsets = derive_offsets(trunk)
    keras_fcn.register_trunk(dataclasses.replace(trunk, offsets=offsets))
    for variant in ("32s", "16s", "8s"):
        model = keras_fcn.build_fcn(variant, 2, input_shape=(640, 576, 3), weights=None,
                                    backbone="ramp")
        for axis in (0, 1):
            maps = coord_maps(model, axis)
            assert all(scale == 1.0 for scale, _ in maps)
            # every path within half a stride-16 cell of the input (the finest: half a pixel)
            assert all(abs(offset) <= 8.5 for _, offset in maps), (variant, maps)
            ramps = []
            for path in SCORES[variant]:
                unit_kernels(model, path)
                mean, spread = ramp_offset(model, axis)
                assert spread < 1e-3, (variant, path, axis)
                ramps.append(round(mean, 3))
            assert abs(ramps[-1]) <= 0.5, (variant, ramps)
            assert sorted(set(ramps)) == [offset for _, offset in maps], (variant, axis)


def test_a_ramp_sees_a_wrong_crop(registry):
    """The independent measure can fail: the final crop off by one moves the ramp by one."""
    trunk = Trunk("ramp", valid_features, {}, CAFFE, lambda model, weights: [])
    keras_fcn.register_trunk(dataclasses.replace(trunk, offsets=derive_offsets(trunk)))
    model = keras_fcn.build_fcn("32s", 2, input_shape=(640, 576, 3), weights=None,
                                backbone="ramp")
    unit_kernels(model)
    ((_, before),) = coord_maps(model)
    assert ramp_offset(model, 0)[0] == pytest.approx(before, abs=1e-3)
    model.get_layer("score").offset += 1
    assert coord_maps(model) == [(1.0, before + 1)]
    assert ramp_offset(model, 0)[0] == pytest.approx(before + 1, abs=1e-3)


def test_size_dependent_grids_are_refused():
    """Without padding to a multiple of 32, stride-2 'same' layers pad odd sizes otherwise."""
    trunk = Trunk("unpadded", lambda x, d: same_features(x, d, pad=False), {}, CAFFE,
                  lambda model, weights: [])
    with pytest.raises(ValueError, match=r"Trunk 'unpadded': its feature maps sit elsewhere on "
                                         r"the input at size \(321, 385\).*PadToMultiple\(32\)"):
        derive_offsets(trunk)


def test_closed_form_maps():
    """Each layer's map by hand: pixel y of its output centred on s * y + t of its input."""
    inputs = keras.Input((17, 20, 1))
    x = keras.layers.ZeroPadding2D(((3, 0), (0, 0)))(inputs)  # rows: y - 3
    x = keras.layers.Conv2D(1, 3, strides=2, padding="valid")(x)  # 2y + 1 (rows 9, columns 9)
    x = keras.layers.Cropping2D(((1, 0), (0, 0)))(x)  # rows: y + 1 (rows 8)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)  # 2y + 0.5 (no padding on top)
    x = keras.layers.UpSampling2D(2)(x)  # y / 2 - 0.25
    model = keras.Model(inputs, x)
    # rows: 2 * (2 * (y / 2 - 0.25) + 0.5 + 1) + 1 - 3 = 2y; columns: 2 * (y) + 1
    assert coord_maps(model) == [(2.0, 0.0)]
    assert coord_maps(model, 1) == [(2.0, 1.0)]


def test_what_it_cannot_follow_is_named():
    inputs = keras.Input((16, 16, 3))
    inner = keras.Sequential([keras.layers.Conv2D(2, 3, strides=2)], name="inner")
    assert coord_maps(keras.Model(inputs, inner(inputs))) == [(2.0, 1.0)]  # followed into
    twice = keras.layers.Add()([inner(inputs), inner(inputs)])
    with pytest.raises(ValueError, match=r"cannot follow the nested model 'inner' \(called "
                                         r"3 times\)"):
        coord_maps(keras.Model(inputs, twice))
    resized = keras.layers.Resizing(8, 8, name="shrink")(inputs)
    with pytest.raises(ValueError, match=r"cannot follow layer 'shrink' \(Resizing\)"):
        coord_maps(keras.Model(inputs, resized))
    with pytest.raises(ValueError, match="axis must be 0"):
        coord_maps(keras.Model(inputs, inputs), axis=2)
    free = keras.Input((None, None, 3))
    with pytest.raises(ValueError, match="needs a model built at a fixed input size"):
        coord_maps(keras.Model(free, keras.layers.Conv2D(1, 3, strides=2, padding="same")(free)))
    with pytest.raises(ValueError, match="needs a model built at a fixed input size"):
        coord_maps(keras.Model(free, keras.layers.UpSampling2D(2)(free)))


def test_a_grid_that_moves_at_any_depth_is_refused():
    """Found by a walkthrough: only the stride-8 -> 16 layer is a stride-2 'same' one; the two
    sizes probed before had the same parity there, and its FCN was 8 px off at 360 rows."""
    def features(x, dropout):
        for _ in range(3):
            x = keras.layers.MaxPooling2D(2)(averaging_conv(3)(x))
        stride16 = averaging_conv(3, 2)(x)
        return x, stride16, keras.layers.MaxPooling2D(2)(stride16)

    trunk = Trunk("deep", features, {}, CAFFE, lambda model, weights: [])
    with pytest.raises(ValueError, match=r"sit elsewhere on the input at size \(328, 392\)"):
        derive_offsets(trunk)


def squeeze_excite(x, name):
    """A map scaled by its own channel weights (a global pooling, as EfficientNet's SE)."""
    weights = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    weights = keras.layers.Conv2D(x.shape[-1], 1, activation="sigmoid")(weights)
    return keras.layers.Multiply(name=f"{name}_scale")([weights, x])  # the 1x1 input first


def test_squeeze_excite_weights_have_no_grid_even_on_a_1x1_map():
    """The channel weights are left out of the merge, whatever the map's size (a 1x1 map was
    taken for a 1x1 broadcast, and the weights' path failed)."""
    for size in (64, 32):  # the last map 2x2, then 1x1
        inputs = keras.Input((size, size, 3))
        x = inputs
        for i in range(5):
            x = squeeze_excite(averaging_conv(3, 2, name=f"down{i}")(x), f"se{i}")
        found = coord_maps(keras.Model(inputs, x))
        assert found == [(32.0, 31.0)], (size, found)  # 2y + 1 five times
        with pytest.raises(ValueError, match="has no spatial grid"):
            coord_maps(keras.Model(inputs, x), tensor=keras.Model(inputs, x).get_layer(
                "se4_pool").output)


def test_nested_models_are_followed_into():
    """ConvNeXt nests its stem and downsampling blocks even with input_tensor=."""
    stem = keras.Sequential([keras.layers.Conv2D(4, 4, strides=4)], name="stem")
    down = keras.Sequential([keras.layers.ZeroPadding2D(1), keras.layers.Conv2D(4, 3, strides=2)],
                            name="down")
    inputs = keras.Input((64, 64, 3))
    model = keras.Model(inputs, down(stem(inputs)))
    # stem: 4y + 1.5; down: 2y + 1 - 1 = 2y -> 4 * 2y + 1.5
    assert coord_maps(model) == [(8.0, 1.5)]


def test_derive_offsets_names_features_that_break_the_contract():
    for features, message in [
        (lambda x, d: (x, x), "Received: 2 values"),
        (lambda x, d: x, "Received: one value"),
        (lambda x, d: (None, None, keras.layers.Flatten()(x)), "of shape (N, H, W, C)"),
    ]:
        trunk = Trunk("bad", features, {}, CAFFE, lambda model, weights: [])
        with pytest.raises(ValueError, match=r"^Trunk 'bad': features\(\) must return "
                                             r"\(stride8, stride16, stride32\)") as info:
            derive_offsets(trunk)
        assert message in str(info.value)


def test_paths_that_disagree_are_named():
    """A residual merge of a 'same' and a 'valid' stride-2 path (Xception-like)."""
    def features(x, dropout):
        x = keras.layers.MaxPooling2D(4)(x)
        valid = keras.layers.Conv2D(4, 1, strides=2)(x)  # 2y
        same = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)  # 2y + 1 - pad
        stride8 = keras.layers.Add()([valid, same])
        stride16 = keras.layers.MaxPooling2D(2)(stride8)
        return stride8, stride16, keras.layers.MaxPooling2D(2)(stride16)

    trunk = Trunk("merge", features, {}, CAFFE, lambda model, weights: [])
    with pytest.raises(ValueError, match=r"Trunk 'merge': its stride-8 map merges paths whose "
                                         r"pixels sit at different places on the input"):
        derive_offsets(trunk)
