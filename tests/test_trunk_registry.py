"""register_trunk: a trunk of one's own joins the registry, a shipped trunk's name is refused
unless replace=True, and a field that breaks the contract is named (a walkthrough of
2026-12-06 replaced "vgg16" without a word: every VGG16 model and file then got its trunk)."""

import dataclasses

import pytest

from keras_fcn.models import trunk as trunk_lib
from keras_fcn.models.trunk import TRUNKS, get_trunk, register_trunk


def test_a_shipped_trunks_name_is_refused_unless_replaced(registry):
    assert sorted(trunk_lib.SHIPPED_TRUNKS) == sorted(trunk_lib.list_trunks())
    vgg16 = get_trunk("vgg16")
    mine = dataclasses.replace(get_trunk("alexnet"), name="vgg16")
    with pytest.raises(ValueError) as info:
        register_trunk(mine)
    assert str(info.value) == (
        "'vgg16' is a trunk of keras_fcn: registering another under its name would give every "
        "model and file of backbone 'vgg16' yours. Choose another name, or pass replace=True. "
        "Received: Trunk(name='vgg16')")
    assert get_trunk("vgg16") is vgg16
    assert register_trunk(vgg16) is vgg16  # the same trunk again: nothing changes
    assert register_trunk(mine, replace=True) is mine and get_trunk("vgg16") is mine


def test_a_trunk_of_ones_own_is_registered_and_registered_again(registry):
    first = register_trunk(dataclasses.replace(get_trunk("alexnet"), name="tiny"))
    second = register_trunk(dataclasses.replace(first, dropout=0.1))  # a cell run again
    assert get_trunk("tiny") is second and "tiny" in trunk_lib.list_trunks()


@pytest.mark.parametrize("field, value, expected", [
    ("name", "", "a non-empty string"),
    ("name", 5, "a non-empty string"),
    ("features", "abc", "callable"),
    ("load_weights", None, "callable"),
    ("check", 3, "callable or None"),
    ("preprocessing", lambda x: x, "a Preprocessing"),
    ("offsets", [0, 0], "a dict keyed by crop layer name"),
    ("variants", ("64s",), "some of ('32s', '16s', '8s', '8s_at_once', 'dilated')"),
    ("variants", (), "some of ('32s', '16s', '8s', '8s_at_once', 'dilated')"),
    ("dropout", 1.5, "in [0, 1)"),
])
def test_a_field_that_breaks_the_contract_is_named(registry, field, value, expected):
    bad = dataclasses.replace(get_trunk("alexnet"), **{"name": "tiny", field: value})
    with pytest.raises(ValueError) as info:
        register_trunk(bad)
    name = value if field == "name" else "tiny"
    assert str(info.value) == (f"Trunk {name!r}: {field} must be {expected}. Received: "
                               f"{field}={value!r}")
    assert "tiny" not in TRUNKS


def test_an_unknown_backbone_says_a_trunk_of_ones_own_is_registered_per_process():
    with pytest.raises(ValueError) as info:
        get_trunk("tiny")
    assert "'vgg16') (a trunk of your own: in a process that registered it, " \
           "keras_fcn.register_trunk). Received: backbone='tiny'" in str(info.value)


def _tiny_features(order=(8, 16, 32), strides=(2, 2, 2, 2, 2)):
    """A trunk of stride-2 convolutions (MobileNetV2's offsets fit it); ``order`` picks the
    maps returned, ``strides`` each conv's stride."""
    import keras

    def features(x, dropout):
        maps, stride = {}, 1
        for step in strides:
            x = keras.layers.Conv2D(4, 3, strides=step, padding="same")(x)
            stride *= step
            maps.setdefault(stride, x)
        return tuple(maps.get(s) for s in order)
    return features


def _tiny_trunk(**features):
    from keras_fcn.models.mobilenet_v2 import MOBILENET_V2_OFFSETS

    return dataclasses.replace(get_trunk("mobilenet_v2"), name="tiny",
                               features=_tiny_features(**features),
                               offsets=MOBILENET_V2_OFFSETS, head_variants={})


def test_the_features_of_a_trunk_of_ones_own_are_measured_at_their_strides(registry):
    from keras_fcn import build_fcn

    register_trunk(_tiny_trunk())
    for variant in ("32s", "16s", "8s"):
        model = build_fcn(variant, 3, weights=None, backbone="tiny")
        assert model.compute_output_shape((1, 37, 53, 3)) == (1, 37, 53, 3)
    cases = [  # (trunk, variant, message)
        (_tiny_trunk(order=(32, 16, 8)), "8s", "the stride-8 map is at stride 32 (a 512x512 "
         "input gives 16 rows, 1024x1024 gives 32)"),
        (_tiny_trunk(strides=(2, 2, 1, 1, 1), order=(4, 4, 4)), "32s",
         "the stride-8 map is at stride 4"),
        (_tiny_trunk(order=(None, 16, 32)), "8s", "its stride-8 map is None, which variant "
         "'8s' needs (or leave '8s' out of its variants)"),
    ]
    for trunk, variant, message in cases:
        register_trunk(trunk)
        with pytest.raises(ValueError) as info:
            build_fcn(variant, 3, weights=None, backbone="tiny")
        assert str(info.value).startswith("Trunk 'tiny': features() must return (stride8, "
                                          "stride16, stride32)")
        assert message in str(info.value), str(info.value)


def test_offsets_the_heads_do_not_have_are_named(registry):
    """A typo or both crops of one skip were accepted and ignored."""
    base = {"score": {"32s": 0, "16s": 0, "8s": 0}, "upscore2c": 1, "upscore_pool4c": 0}
    for offsets, message in [
        ({**base, "upscore2_c": 1}, "the heads have no crop named 'upscore2_c' (the crops: "),
        ({**base, "score_pool4c": 5}, "the heads have either 'score_pool4c' or 'upscore2c', "
         "not both"),
    ]:
        with pytest.raises(ValueError) as info:
            register_trunk(dataclasses.replace(_tiny_trunk(), offsets=offsets))
        assert str(info.value).startswith(f"Trunk 'tiny': {message}"), str(info.value)


@pytest.mark.parametrize("offsets, message", [
    ({"score": {"32s": 0, "16s": 0}, "upscore2c": 1, "upscore_pool4c": 0},
     "variant '8s' needs the crop offset 'score': {'8s': offset}"),
    ({"score": {"32s": 0, "16s": 0, "8s": 0}, "upscore_pool4c": 0},
     "variant '16s' needs the crop offset 'score_pool4c' or 'upscore2c' (the skip or the "
     "upsampled scores cropped)"),
    ({"score": {"32s": 0, "16s": 0, "8s": 0}, "upscore2c": -1, "upscore_pool4c": 0},
     "variant '16s' needs the crop offset 'score_pool4c' or 'upscore2c' (the skip or the "
     "upsampled scores cropped)"),
    ({"score": {"32s": True, "16s": 0, "8s": 0}, "upscore2c": 1, "upscore_pool4c": 0},
     "variant '32s' needs the crop offset 'score': {'32s': offset}"),
])
def test_offsets_the_variants_need_are_named(registry, offsets, message):
    """Was a KeyError 'score_pool4c' from deep in the heads, at build time."""
    with pytest.raises(ValueError) as info:
        register_trunk(dataclasses.replace(_tiny_trunk(), offsets=offsets))
    assert str(info.value).startswith(f"Trunk 'tiny': {message}, a non-negative int "
                                      "(keras_fcn.derive_offsets(trunk) gives them"), info.value
    assert "tiny" not in TRUNKS


def test_a_preprocessing_layer_is_checked(registry):
    import keras
    from keras_fcn import build_fcn
    from keras_fcn.models import Preprocessing

    def trunk_with(layer):
        return dataclasses.replace(_tiny_trunk(), preprocessing=Preprocessing(
            "mine", layer, lambda x: keras.ops.convert_to_numpy(x).astype("float32"),
            lambda model=None: {"type": "mine"}))

    with pytest.raises(ValueError, match=r"^Trunk 'tiny': preprocessing.layer must take name= "
                                         r"and return a keras layer. Calling layer\(name="):
        register_trunk(trunk_with(lambda: keras.layers.Identity()))
    with pytest.raises(ValueError, match=r"preprocessing.layer\(name='preprocess'\) must "
                                         r"return a keras layer of that name. Received: 3$"):
        register_trunk(trunk_with(lambda name: 3))
    # a layer that ignores name= is not found in the model: the tools preprocessed again
    with pytest.raises(ValueError, match=r"of that name. Received: <Rescaling name=rescaling"
                                         r".*> named 'rescaling"):
        register_trunk(trunk_with(lambda **kwargs: keras.layers.Rescaling(1 / 255)))
    class ToBytes(keras.layers.Layer):
        def call(self, x):
            return keras.ops.cast(x, "uint8")

    register_trunk(trunk_with(lambda name: ToBytes(name=name)))
    with pytest.raises(ValueError, match="its preprocessing layer must return floats for the "
                                         "trunk. Received: dtype 'uint8' from a float32 input"):
        build_fcn("32s", 3, weights=None, backbone="tiny", include_preprocessing=True)


def test_an_imagenet_loader_that_sets_nothing_is_named(registry):
    from keras_fcn import build_fcn

    register_trunk(dataclasses.replace(_tiny_trunk(), load_weights=lambda model, w: []))
    with pytest.raises(ValueError, match=r"Trunk 'tiny': load_weights\(model, 'imagenet'\) set "
                                         r"no layer .* Received: \[\]"):
        build_fcn("32s", 3, weights="imagenet", backbone="tiny")
    register_trunk(dataclasses.replace(_tiny_trunk(), load_weights=lambda model, w: ["conv9"]))
    with pytest.raises(ValueError, match=r"returned names of no layer of the model: \['conv9'\] "
                                         r"\(it must"):
        build_fcn("32s", 3, weights="imagenet", backbone="tiny")


def test_a_trunks_own_options_pass_through_build_fcn(registry):
    from keras_fcn import build_fcn

    seen = []

    def features(x, dropout, depth=5):
        seen.append(depth)
        return _tiny_features()(x, dropout)

    register_trunk(dataclasses.replace(_tiny_trunk(), features=features, options={"depth": 5}))
    build_fcn("32s", 3, weights=None, backbone="tiny", depth=7)
    build_fcn("32s", 3, weights=None, backbone="tiny")
    assert seen == [7, 5]
    with pytest.raises(ValueError, match=r"The tiny trunk has no option colour \(its options: "
                                         r"\['depth'\]\). Received: colour='red'"):
        build_fcn("32s", 3, weights=None, backbone="tiny", colour="red")


def test_the_strides_of_a_fixed_size_trunk_are_read_from_its_layers(registry):
    """One input size cannot separate padding from stride: the layers' strides are read
    (coord_maps); a swapped trunk at input_shape=(64, 64, 3) built without a word before."""
    from keras_fcn import build_fcn

    register_trunk(_tiny_trunk())
    model = build_fcn("8s", 3, input_shape=(64, 64, 3), weights=None, backbone="tiny")
    assert model.output_shape == (None, 64, 64, 3)
    register_trunk(_tiny_trunk(order=(32, 16, 8)))
    with pytest.raises(ValueError) as info:
        build_fcn("8s", 3, input_shape=(64, 64, 3), weights=None, backbone="tiny")
    assert str(info.value) == (
        "Trunk 'tiny': features() must return (stride8, stride16, stride32): the stride-8 map "
        "is at stride 32 (its layers' strides): check their order and the trunk's "
        "downsampling")


def test_a_preprocessing_array_function_is_checked(registry):
    import numpy as np
    from keras_fcn.models import Preprocessing

    layer = get_trunk("alexnet").preprocessing.layer
    for array, message in [
        (lambda x: np.asarray(x, "float64"), "must return float32 of its input's shape. "
         "Received: float64 of shape (1, 2, 2, 3) for a uint8 batch of shape (1, 2, 2, 3)"),
        (lambda x: np.asarray(x, "float32")[..., ::-1][..., :1], "Received: float32 of shape "
         "(1, 2, 2, 1)"),
        (lambda x, mean: x - mean, "must take a uint8 RGB batch (N, H, W, 3). Calling it on "
         "one raised: TypeError("),
    ]:
        bad = dataclasses.replace(_tiny_trunk(), preprocessing=Preprocessing(
            "mine", layer, array, lambda model=None: {"type": "mine"}))
        with pytest.raises(ValueError) as info:
            register_trunk(bad)
        assert str(info.value).startswith("Trunk 'tiny': preprocessing.array ")
        assert message in str(info.value), str(info.value)


def test_a_trunk_loader_that_sets_nothing_from_a_model_or_file_is_named(registry, tmp_path):
    """The trunk walkthrough of 2026-12-07: a trunk whose loader ignored a keras.Model (the
    staged recipe hands each stage the previous one) left the trunk at its random start
    without a word; only weights="imagenet" was checked."""
    from keras_fcn import build_fcn

    register_trunk(dataclasses.replace(_tiny_trunk(), load_weights=lambda model, weights: []))
    first = build_fcn("32s", 3, weights=None, backbone="tiny")
    with pytest.raises(ValueError, match=r"Trunk 'tiny': load_weights\(model, <FCN '.*'>\) set "
                                         r"no layer \(it must set the trunk's layers from the "
                                         r"file or model given"):
        build_fcn("16s", 3, weights=first, backbone="tiny")
    path = str(tmp_path / "first.weights.h5")
    first.save_weights(path)
    with pytest.raises(ValueError, match=r"load_weights\(model, '.*first.weights.h5'\) set no"):
        build_fcn("32s", 3, weights=path, backbone="tiny")
    # a loader that names layers of the model it set passes
    register_trunk(dataclasses.replace(_tiny_trunk(), load_weights=lambda model, weights: [
        layer.name for layer in model.layers if layer.weights][:1]), replace=True)
    assert build_fcn("16s", 3, weights=first, backbone="tiny").name == "fcn16s_tiny"
