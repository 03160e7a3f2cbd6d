"""Inputs of the wrong kind are refused with a message naming the value and what was expected
(audit report of the public API, findings 7, 11, 12, 13 and 14): uncertainty maps of logits,
overlays of 16-bit images, 0..1 palettes, weights in another layout or with NaN, label and data
set descriptions with truncated or out-of-place values, guided-filter settings, 1-bit masks.
"""

import json
import warnings

import numpy as np
import pytest
from PIL import Image
from tiny import TINY_FC, TINY_WIDTHS

import keras_fcn
from keras_fcn import inference as inf
from keras_fcn.datasets import DatasetInfo
from keras_fcn.inference.visualize import full_palette
from keras_fcn.labels import ModelLabels
from keras_fcn.weights import load_npz, load_weights, read_weights, save_npz, set_weights_by_name
from keras_fcn._checks import as_range
from keras_fcn.export.graph import check_input_size
from keras_fcn.inference.predict import check_predict_args

LABELS = np.array([[0, 1], [2, 255]])


def _tiny(variant="8s"):
    return keras_fcn.build_fcn(variant, num_classes=3, weights=None, widths=TINY_WIDTHS,
                               fc_units=TINY_FC)


# ----------------------------------------------------------------------------- 7: uncertainty


@pytest.mark.parametrize("fn", [inf.entropy, inf.margin])
def test_uncertainty_refuses_logits(fn):
    logits = np.array([[[2.0, -1.0, 0.5]]])
    with pytest.raises(ValueError, match=r"values in \[-1, 2\], sums in \[1\.5, 1\.5\]\. These "
                                         r"look like logits \(or unnormalized scores\): "
                                         r"apply softmax"):
        fn(logits)
    # Values in [0, 1] that do not sum to 1 (an unnormalized score) are refused too.
    with pytest.raises(ValueError, match=r"sums in \[0\.6, 0\.6\]"):
        fn(np.array([[0.2, 0.2, 0.2]]))


@pytest.mark.parametrize("fn", [inf.entropy, inf.margin])
def test_uncertainty_refuses_label_maps_and_nan(fn):
    with pytest.raises(ValueError, match=r"float probabilities .* dtype=int64, shape=\(4, 5\) "
                                         r"\(an integer label map\?"):
        fn(np.zeros((4, 5), np.int64))
    probs = np.full((2, 2, 3), 1 / 3)
    probs[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        fn(probs)


def test_uncertainty_accepts_rounded_softmax():
    probs = np.random.default_rng(0).dirichlet(np.ones(21), size=(4, 5)).astype("float16")
    assert inf.entropy(probs).shape == (4, 5) and inf.margin(probs).shape == (4, 5)
    # Exact values are unchanged by the check.
    np.testing.assert_allclose(inf.entropy(np.full((1, 4), 0.25)), [np.log(4)], rtol=1e-6)


# ----------------------------------------------------------------------------- 7: visualize


def test_overlay_uses_predicts_image_checks():
    with pytest.raises(ValueError, match=r"Image passed to overlay has integer values outside "
                                         r"0\.\.255 \(min=40000, max=40000, dtype=uint16\)"):
        inf.overlay(np.full((2, 2, 3), 40000, np.uint16), LABELS)
    image = np.full((2, 2, 3), 100.0)
    image[1, 1, 2] = np.inf
    with pytest.raises(ValueError, match="Image passed to overlay has 1 NaN or infinite"):
        inf.overlay(image, LABELS)
    with pytest.raises(ValueError, match=r"values outside \[0, 255\] \(min=0\.0, max=300\.0\)"):
        inf.overlay(np.array([[[0.0, 0, 0], [300, 0, 0]]] * 2), LABELS)
    # Integer images in range (int64 from np.full, say) still blend as before.
    assert inf.overlay(np.full((1, 1, 3), 100), np.array([[1]])).tolist() == [[[114, 50, 50]]]


def test_palettes_on_the_0_to_1_scale_are_refused():
    with pytest.raises(ValueError, match=r"whole numbers in 0\.\.255 .* palette\[1\]=\[0\.0, 0\.5, "
                                         r"1\.0\]\. A palette in \[0, 1\]\? Multiply by 255"):
        inf.colorize(np.array([[0, 1]]), palette=[[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]])
    with pytest.raises(ValueError, match=r"every value in \[0, 1\] \(max=1\.0\)"):
        full_palette([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"palette\[0\]=\[128\.5, 0\.0, 0\.0\]"):
        full_palette([[128.5, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"palette\[0\]=\[nan, 0\.0, 0\.0\]"):
        full_palette([[np.nan, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"Received: min=-1, max=3"):
        full_palette([[-1, 2, 3]])
    with pytest.raises(ValueError, match="dtype=<U1"):
        full_palette([["a", "b", "c"]])
    # Whole-number floats on the 0..255 scale are fine, and integer palettes may be dark.
    assert full_palette([[128.0, 0.0, 255.0]])[0].tolist() == [128, 0, 255]
    assert full_palette([[1, 0, 0]])[0].tolist() == [1, 0, 0]


def test_binary_mask_needs_integer_labels_and_class_ids():
    with pytest.raises(ValueError, match=r"`classes` must be an int\. Received: classes='1'"):
        inf.binary_mask(LABELS, "1")
    with pytest.raises(ValueError, match=r"`classes\[1\]` must be an int\. Received: "
                                         r"classes\[1\]=2\.0"):
        inf.binary_mask(LABELS, [1, 2.0])
    with pytest.raises(ValueError, match=r"integer \(H, W\) map\. Received: shape=\(2, 2, 3\), "
                                         r"dtype=float64"):
        inf.binary_mask(np.zeros((2, 2, 3)), [0])
    with pytest.raises(ValueError, match="Received: classes=None"):
        inf.binary_mask(LABELS, None)
    expected = [[255, 0], [255, 0]]
    for classes in ([0, 2], (0, 2), {0, 2}, np.array([0, 2])):
        assert inf.binary_mask(LABELS, classes).tolist() == expected
    assert inf.binary_mask(LABELS, np.int64(1)).tolist() == [[0, 255], [0, 0]]
    assert inf.binary_mask(LABELS, np.array(1)).tolist() == [[0, 255], [0, 0]]


# ----------------------------------------------------------------------------- 11: weights


def test_adapt_refuses_a_2d_array_in_another_layout():
    model = _tiny()
    kernel = np.arange(108.0).reshape(4, 27)  # PyTorch's (out, in): same size, wrong layout
    with pytest.raises(ValueError, match=r"layer 'conv1_1': the file has a 2-D array of shape "
                                         r"\(4, 27\), the model expects the kernel "
                                         r"\(3, 3, 3, 4\) or its flattened dense layout "
                                         r"\(27, 4\)"):
        set_weights_by_name(model, {"conv1_1": [kernel, np.zeros(4)]})
    # The flattened (taps * in, out) layout of the net surgery still loads, element for element.
    flat = np.arange(108.0).reshape(27, 4)
    assert set_weights_by_name(model, {"conv1_1": [flat, np.zeros(4)]}) == ["conv1_1"]
    np.testing.assert_array_equal(model.get_layer("conv1_1").get_weights()[0],
                                  flat.reshape(3, 3, 3, 4))


def test_load_weights_warns_about_unset_trunk_layers(tmp_path):
    path = str(tmp_path / "one.npz")
    np.savez(path, **{"conv1_1/0": np.zeros((3, 3, 3, 4), "float32"),
                      "conv1_1/1": np.zeros(4, "float32")})
    model = _tiny()
    with pytest.warns(UserWarning, match=r"set 1 of the \d+ layers with weights of 'fcn8s'; 14 "
                                         r"trunk layers keep their random initialization: "
                                         r"conv1_2, conv2_1, conv2_2, conv3_1, conv3_2, \.\.\."):
        assert load_weights(model, path) == ["conv1_1"]


def test_load_weights_is_quiet_when_only_heads_are_new():
    # Staged initialization: FCN-16s from FCN-32s leaves only score_pool4/upscore* new.
    source, target = _tiny("32s"), _tiny("16s")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = load_weights(target, source)
    assert "fc7" in done and "score_pool4" not in done


def test_missing_directory_and_non_finite_weight_files(tmp_path):
    missing = str(tmp_path / "nonexistent.npz")
    with pytest.raises(FileNotFoundError, match=f"Weights file not found: '{missing}'"):
        load_npz(missing)
    with pytest.raises(IsADirectoryError, match=f"{tmp_path}: is a directory"):
        load_npz(tmp_path)
    with pytest.raises(IsADirectoryError, match=f"Weights path '{tmp_path}' is a directory"):
        read_weights(str(tmp_path))
    bad = save_npz({"fc7": [np.zeros((1, 1, 4, 4)), np.array([0.0, np.nan, np.inf, 1.0])]},
                   str(tmp_path / "nan.npz"))
    with pytest.raises(ValueError, match=r"nan\.npz: array 'fc7/1' has 2 NaN or infinite "
                                         r"values of 4"):
        read_weights(bad)
    model = _tiny("32s")
    kernel, bias = model.get_layer("fc7").get_weights()
    model.get_layer("fc7").set_weights([kernel, np.full_like(bias, np.nan)])
    model.save(str(tmp_path / "nan.keras"))
    with pytest.raises(ValueError, match=r"nan\.keras: array 'fc7/1' has 8 NaN or infinite"):
        read_weights(str(tmp_path / "nan.keras"))


# ----------------------------------------------------------------------------- 12: labels


@pytest.mark.parametrize("kwargs, message", [
    ({"class_names": "sky"}, "class_names must be a sequence of names, one per class, not a "
                             "string. Received: class_names='sky'"),
    ({"class_names": 3}, "class_names must be a sequence of names, one per class. "
                         "Received: class_names=3"),
    ({"ignore_label": 2.7}, "ignore_label must be an integer or None. Received: "
                            "ignore_label=2.7"),
    ({"ignore_label": 1}, "ignore_label=1 is a class id; expected a value outside [0, 3), "
                          "e.g. 255"),
    ({"image_size": (0, -5)}, "image_size must be a (height, width) pair of positive ints. "
                              "Received: image_size=(0, -5)"),
    ({"image_size": 32}, "not a bare number. Received: image_size=32 (for a square, pass "
                         "(32, 32))"),
    ({"image_size": (32, 40, 3)}, "Received: image_size=(32, 40, 3)"),
])
def test_model_labels_refuses(kwargs, message):
    with pytest.raises(ValueError) as error:
        ModelLabels(num_classes=3, **kwargs)
    assert message in str(error.value)


def test_model_labels_numbers(tmp_path):
    for bad in (2.9, 0, True, "3", None):
        with pytest.raises(ValueError, match=rf"num_classes must be a positive integer\. "
                                             rf"Received: num_classes={bad!r}"):
            ModelLabels(num_classes=bad)
    labels = ModelLabels(num_classes=np.int64(3), ignore_label=np.uint8(255),
                         image_size=(np.int32(32), 40.0))
    assert labels.num_classes == 3 and type(labels.num_classes) is int
    assert labels.ignore_label == 255 and labels.image_size == (32, 40)
    assert json.loads(json.dumps(labels.to_dict()))["num_classes"] == 3
    # A sidecar: truncation and character splitting are refused, whole floats read.
    for data, message in (({"num_classes": 2.9}, "num_classes=2.9"),
                          ({"class_names": "abc"}, "class_names='abc'"),
                          ({"num_classes": 300}, "ignore_label=255 is a class id; expected a "
                                                 "value outside [0, 300), e.g. 300")):
        path = tmp_path / "labels.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError) as error:
            ModelLabels.read(path)
        assert f"Labels file '{path}'" in str(error.value) and message in str(error.value)
    assert ModelLabels.from_dict({"num_classes": 3.0}).num_classes == 3
    assert ModelLabels(num_classes=300, ignore_label=None).ignore_label is None


def test_dataset_info_validates_its_fields():
    palette = ((0, 0, 0),) * 3
    with pytest.raises(ValueError, match=r"`num_classes` must be a positive integer\. "
                                         r"Received: num_classes=0"):
        DatasetInfo("x", 0, (), ())
    with pytest.raises(ValueError, match=r"Received: num_classes=2\.5"):
        DatasetInfo("x", 2.5, ("a", "b"), palette)
    with pytest.raises(ValueError, match=r"DatasetInfo 'x': class_names must have one name per "
                                         r"class \(3\)\. Received 2: class_names=\['a', 'b'\]"):
        DatasetInfo("x", 3, ("a", "b"), palette)
    with pytest.raises(ValueError, match="not a string. Received: class_names='abc'"):
        DatasetInfo("x", 3, "abc", palette)
    with pytest.raises(ValueError, match=r"^ignore_label must be an integer\. "
                                         r"Received: ignore_label=255\.5$"):
        DatasetInfo("x", 3, ("a", "b", "c"), palette, ignore_label=255.5)
    with pytest.raises(ValueError, match=r"Received: ignore_label=None$"):
        DatasetInfo("x", 3, ("a", "b", "c"), palette, ignore_label=None)
    # a whole float (as JSON may hold it) is the integer, as everywhere ignore_label is taken
    assert DatasetInfo("x", 3, ("a", "b", "c"), palette, ignore_label=255.0).ignore_label == 255
    with pytest.raises(ValueError, match=r"ignore_label=1 is a class id; expected a value "
                                         r"outside \[0, 3\), e.g\. 255"):
        DatasetInfo("x", 3, ("a", "b", "c"), palette, ignore_label=1)
    with pytest.raises(ValueError) as error:  # the default void label is a class id here
        DatasetInfo("x", 300, None, ())
    assert "ignore_label=255 is a class id; expected a value outside [0, 300), e.g. 300" in \
        str(error.value) and "None" not in str(error.value)  # DatasetInfo takes no None
    info = DatasetInfo("x", np.int64(3), None, palette, ignore_label=np.int64(3))
    assert info.dataset_kwargs()["num_classes"] == 3 and info.ignore_label == 3
    assert type(info.num_classes) is int and type(info.ignore_label) is int


def test_shipped_dataset_infos_still_construct():
    from keras_fcn.datasets import camvid, shapes, tfds, voc

    for info in (camvid.CAMVID_INFO, shapes.SHAPES_INFO, tfds.OXFORD_PET_INFO, voc.VOC_INFO):
        assert len(info.class_names) == info.num_classes
        assert not 0 <= info.ignore_label < info.num_classes
        labels = ModelLabels(num_classes=info.num_classes, class_names=info.class_names,
                             ignore_label=info.ignore_label)
        assert labels.ignore_label == info.ignore_label


# ----------------------------------------------------------------------------- 13: refine


@pytest.mark.parametrize("eps", [0, 0.0, -0.01, float("nan"), float("inf"), True, "0.01", None])
def test_refine_eps_must_be_finite_and_positive(eps):
    image, probs = np.full((6, 6, 3), 100, np.uint8), np.full((6, 6, 3), 1 / 3)
    with pytest.raises(ValueError, match=rf"eps must be a finite number > 0 \(e\.g\. 1e-2\)\. "
                                         rf"Received: eps={eps!r}"):
        inf.refine_boundaries(image, probs, eps=eps)


def test_refine_probabilities_must_be_normalizable():
    image = np.full((6, 6, 3), 100, np.uint8)
    zero = np.full((6, 6, 3), 1 / 3)
    zero[2, 4] = 0.0
    with pytest.raises(ValueError, match=r"positive sum at every pixel .* all 3 probabilities "
                                         r"are 0 at pixel \(2, 4\)"):
        inf.refine_boundaries(image, zero)
    logits = np.full((6, 6, 3), 1 / 3)
    logits[1, 2, 0] = -1.5
    with pytest.raises(ValueError, match=r"non-negative .* probabilities\[1, 2, 0\]=-1\.5"):
        inf.refine_boundaries(image, logits)
    nan = np.full((6, 6, 3), 1 / 3)
    nan[0, 0, 1] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        inf.refine_boundaries(image, nan)
    with pytest.raises(ValueError, match="Image passed to refine_boundaries has integer values "
                                         "outside 0..255"):
        inf.refine_boundaries(np.full((6, 6, 3), 40000, np.uint16), np.full((6, 6, 3), 1 / 3))
    refined = inf.refine_boundaries(image, np.full((6, 6, 3), 2.0), eps=1e-3)
    np.testing.assert_allclose(refined.sum(-1), 1.0, atol=1e-6)


# ----------------------------------------------------------------------------- 14: masks


def test_one_bit_masks_read_as_zero_and_one(tmp_path):
    path = str(tmp_path / "m1.png")
    Image.fromarray(np.eye(4, dtype=bool)).save(path)
    assert Image.open(path).mode == "1"
    mask = keras_fcn.read_mask(path)
    assert mask.dtype == np.int32
    np.testing.assert_array_equal(mask, np.eye(4, dtype=np.int32))


@pytest.mark.parametrize("mode, message", [
    ("LA", "has PIL mode 'LA' (grey plus alpha: two channels); index masks must be "
           "single-channel ('L', 'I', 'I;16' or 1-bit '1') or palette ('P') images. Save it "
           "without the alpha channel, e.g. Image.open(path).convert('L').save(path)"),
    ("RGB", "has PIL mode 'RGB'; index masks must be single-channel ('L', 'I', 'I;16' or 1-bit "
            "'1') or palette ('P') images (colour-coded masks: mask_format='rgb' with a "
            "palette in Python; for --dataset=folder, \"mask_format\": \"rgb\" and a "
            "\"palette\" in the data folder's classes.json, see docs/data.md)"),
])
def test_other_mask_modes_are_named(tmp_path, mode, message):
    path = str(tmp_path / f"{mode}.png")
    Image.new(mode, (3, 2)).save(path)
    with pytest.raises(ValueError) as error:
        keras_fcn.read_mask(path)
    assert f"mask '{path}' {message}" in str(error.value)


def test_one_bit_masks_read_the_same_in_the_tf_data_pipeline(tmp_path):
    from keras_fcn.data.decode import make_decode_fn

    mask_path, image_path = str(tmp_path / "m1.png"), str(tmp_path / "i.png")
    Image.fromarray(np.eye(4, dtype=bool)).save(mask_path)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image_path)
    import tensorflow as tf

    pairs = tf.data.Dataset.from_tensor_slices(([image_path], [mask_path]))
    (_, mask), = pairs.map(make_decode_fn(num_classes=2))  # TF alone reads 0/255
    np.testing.assert_array_equal(mask.numpy(), np.eye(4, dtype=np.int32))


# ------------------------------------------------------------ labels written for a model


def test_labels_of_a_data_set_keep_one_colour_per_class():
    labels = ModelLabels.from_info(keras_fcn.VOC_INFO)  # VOC's palette colours 256 ids
    assert labels.palette == tuple(keras_fcn.voc_palette(21))
    assert labels.ignore_label == 255 and len(labels.class_names) == 21


def test_export_labels_of_a_model_with_more_classes_than_the_default_void_label():
    from keras_fcn.export.metadata import export_labels

    model = keras_fcn.build_fcn("32s", num_classes=300, weights=None, widths=TINY_WIDTHS,
                                fc_units=TINY_FC)
    assert export_labels(model).ignore_label is None
    small = keras_fcn.build_fcn("32s", num_classes=3, weights=None, widths=TINY_WIDTHS,
                                fc_units=TINY_FC)
    assert export_labels(small).ignore_label == 255


# Review 7: argument checks that disagreed between modules.


def test_a_string_range_is_refused_not_read_per_character():
    with pytest.raises(ValueError, match="scale_range.*Received: scale_range='12'"):
        as_range("scale_range", "12")
    assert as_range("scale_range", ["0.5", 2]) == (0.5, 2.0)


def test_numpy_ints_pass_predict_and_export_checks():
    assert check_predict_args(np.int64(2), np.int32(64), np.int64(8), [1.0]) == (1.0,)
    size = check_input_size((np.int64(360), np.int32(480)))
    assert size == (360, 480) and all(type(d) is int for d in size)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        check_predict_args(np.bool_(True), None, 64, [1.0])
    with pytest.raises(ValueError, match="input_size must be"):
        check_input_size((np.int64(0), 4))
