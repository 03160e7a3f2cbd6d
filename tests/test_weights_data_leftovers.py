"""Leftovers of the weights, presets and data wings (audit round 5):

1. ``strict`` weight conversion refuses a model whose trunk layers get no weights;
2. a preset call whose arguments can never match the released weights (narrow widths, an
   auxiliary head, a file_hash no file can match) fails before any download;
3. ``examples/train_nyud.py --convert_mat`` takes ``--overwrite_data`` for split files that
   list other ids (and keeps a ``trainval.txt`` consistent);
4. an 8-bit grey PNG mask is opened once, not a second time for its header.
"""

import builtins
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
from tool_flags import script, tool

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


# --- 2. presets: arguments that cannot match the weights fail before any download ------------

@pytest.fixture
def downloads(monkeypatch):
    """The URLs keras.utils.get_file is asked for (it fails: nothing may be downloaded)."""
    calls = []

    def get_file(fname, origin, **kwargs):
        calls.append(origin)
        raise AssertionError(f"downloaded {origin}")

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    return calls


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


def test_a_sha1_file_hash_fails_before_the_download(tmp_path, downloads):
    sha1 = "a" * 40
    with pytest.raises(ValueError) as info:
        from_preset("voc-fcn32s", cache_dir=str(tmp_path), url="file:///nowhere/x.caffemodel",
                    file_hash=sha1)
    assert str(info.value) == (
        "file_hash must be the SHA-256 (64 hex digits) or MD5 (32 hex digits) of the file. A "
        "40-digit hash is a SHA-1 (what the BVLC model zoo publishes), which "
        "keras.utils.get_file cannot check: compute the file's sha256 instead. Received: "
        f"file_hash='{sha1}'")
    with pytest.raises(ValueError, match=r"Received: file_hash='xyz'"):
        imagenet.fetch_weights_file("f.h5", "file:///nowhere/f.h5", "xyz", str(tmp_path), "weights",
                           "build_fcn8s(weights='f.h5')")
    with pytest.raises(ValueError, match=r"Received: file_hash=123"):
        imagenet.check_file_hash(123)
    assert downloads == []


def test_an_upper_case_sha256_matches_its_file(monkeypatch, tmp_path):
    """keras.utils.get_file compares lower-case digests: an upper-case sha256 never matched,
    so the download ran and then failed."""
    preset = tiny_preset(monkeypatch, "voc-fcn32s")
    url, path = serve(tmp_path, caffe_layers(preset.builder(**preset.build_kwargs)))
    with open(path, "rb") as file:
        digest = hashlib.sha256(file.read()).hexdigest().upper()
    model = from_preset("voc-fcn32s", cache_dir=str(tmp_path / "cache"), url=url,
                        file_hash=digest)
    assert model.output_shape[-1] == 21
    assert PRESETS["voc-fcn32s"] is preset


# --- 3. train_nyud.py --convert_mat --overwrite_data ---------------------------------------

def _train_nyud(*argv):
    """examples/train_nyud.py as a module, its flags parsed from `argv`, removed afterwards."""
    return script(os.path.join("examples", "train_nyud.py"), "leftovers_train_nyud", *argv)


@pytest.fixture
def labeled_mat(tmp_path):
    mat, mapping = str(tmp_path / "labeled.mat"), str(tmp_path / "mapping.mat")
    nyud.write_fake_labeled_mat(mat, num_images=4, height=16, width=20)
    nyud.write_fake_class_mapping(mapping)
    return mat, mapping


def test_convert_mat_refuses_other_split_files_naming_the_flag(tmp_path, labeled_mat):
    mat, mapping = labeled_mat
    out = tmp_path / "nyud"
    out.mkdir()
    (out / "train.txt").write_text("5001\n5002\n")
    (out / "notes.txt").write_text("mine")
    argv = (f"--convert_mat={mat}", f"--class_mapping={mapping}", f"--data_dir={out}",
            f"--output_dir={tmp_path / 'run'}")
    with _train_nyud(*argv) as module:
        with pytest.raises(FileExistsError) as info:
            module.main(["train_nyud.py"])
    train = out / "train.txt"
    assert str(info.value) == (
        f"NYUDv2 split file(s) already exist with other ids: '{train}' (2 ids, would be 381). "
        "Pass overwrite=True to replace them, or remove them. On the command line: "
        "--overwrite_data replaces them.")
    assert sorted(os.listdir(out)) == ["notes.txt", "train.txt"]  # refused before converting
    assert train.read_text() == "5001\n5002\n"


def test_convert_mat_overwrite_data_replaces_only_what_it_writes(tmp_path, labeled_mat):
    mat, mapping = labeled_mat
    out = tmp_path / "nyud"
    (out / "segmentation").mkdir(parents=True)
    (out / "train.txt").write_text("5001\n5002\n")
    (out / "notes.txt").write_text("mine")
    (out / "segmentation" / "readme.md").write_text("keep")
    with _train_nyud(f"--convert_mat={mat}", f"--class_mapping={mapping}",
                     f"--data_dir={out}", "--overwrite_data") as module:
        assert module.convert_mat(str(out)) == 4
    ids = [str(5001 + i) for i in range(4)]
    for name in ("train", "val", "test"):  # the bundled split, as for the real 1,449 images
        assert nyud.nyud_ids(str(out), name) == nyud.nyud_split_ids(name)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "segmentation" / "readme.md").read_text() == "keep"
    assert sorted(os.listdir(out / "segmentation")) == [f"img_{i}.mat" for i in ids] + [
        "readme.md"]


def test_overwrite_data_without_convert_mat_is_refused(tmp_path):
    with _train_nyud(f"--data_dir={tmp_path}", "--overwrite_data",
                     f"--output_dir={tmp_path / 'run'}") as module:
        with pytest.raises(ValueError, match=re.escape(
                "--overwrite_data replaces the files that --convert_mat writes: give "
                "it with --convert_mat. Received: overwrite_data=True, convert_mat=None")):
            module.main(["train_nyud.py"])
    assert not (tmp_path / "run").exists()


def test_conversion_keeps_an_existing_trainval_file_consistent(tmp_path, labeled_mat):
    """nyud_ids reads trainval.txt before train.txt + val.txt: a stale one was left listing
    other images than the split files the conversion wrote."""
    mat, mapping = labeled_mat
    out = tmp_path / "nyud"
    out.mkdir()
    (out / "trainval.txt").write_text("5001\n5002\n5003\n")
    with pytest.raises(FileExistsError, match=re.escape(f"'{out / 'trainval.txt'}' (3 ids")):
        nyud.convert_labeled_mat(mat, mapping, str(out), indices=[0, 1, 2, 3], verbose=False)
    nyud.convert_labeled_mat(mat, mapping, str(out), indices=[0, 1, 2, 3], with_hha=False,
                             verbose=False, overwrite=True)
    assert nyud.nyud_ids(str(out), "trainval") == (nyud.nyud_ids(str(out), "train")
                                                    + nyud.nyud_ids(str(out), "val"))
    # Without a trainval.txt of its own the folder gets none: train + val are read instead.
    fresh = tmp_path / "fresh"
    nyud.convert_labeled_mat(mat, mapping, str(fresh), indices=[0], with_hha=False,
                             verbose=False)
    assert not (fresh / "trainval.txt").exists()


# --- 4. one open per 8-bit grey mask -----------------------------------------------------------

@pytest.fixture
def opens(monkeypatch):
    """The paths builtins.open and PIL.Image.open are called with (PIL opens with builtins)."""
    calls = []
    real_open, real_image_open = builtins.open, Image.open

    def counting_open(file, *args, **kwargs):
        calls.append(("open", os.fspath(file) if isinstance(file, (str, os.PathLike)) else file))
        return real_open(file, *args, **kwargs)

    def counting_image_open(fp, *args, **kwargs):
        calls.append(("Image.open", fp))
        return real_image_open(fp, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(Image, "open", counting_image_open)
    return calls


@pytest.mark.parametrize("bits, stored, read", [(8, [0, 1, 2, 255], [0, 1, 2, 255]),
                                                (4, [0, 1, 15, 7], [0, 1, 15, 7]),
                                                (2, [0, 1, 3, 2], [0, 1, 3, 2])])
def test_grey_mask_is_opened_once(tmp_path, opens, bits, stored, read):
    path = str(tmp_path / f"mask{bits}.png")
    values = np.array([stored] * 3, np.uint8)
    Image.fromarray(values, "L").save(path, bits=bits) if bits < 8 else \
        Image.fromarray(values, "L").save(path)
    opens.clear()
    mask = data.read_mask(path)
    assert mask.dtype == np.int32 and mask.tolist() == [read] * 3
    assert opens == [("Image.open", path), ("open", path)]  # PIL's own open, and no other


def test_pydataset_reads_each_grey_mask_file_once(tmp_path, opens):
    image, mask = str(tmp_path / "a.png"), str(tmp_path / "a_mask.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(image)
    Image.fromarray(np.array([[0, 1, 2, 1, 0]] * 4, np.uint8), "L").save(mask)
    dataset = data.make_pydataset([(image, mask)], num_classes=3)
    opens.clear()
    _, masks = dataset[0]
    assert masks[0, 0].tolist() == [0, 1, 2, 1, 0]
    assert [call for call in opens if call == ("open", mask)] == [("open", mask)]
