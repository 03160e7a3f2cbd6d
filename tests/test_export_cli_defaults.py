"""tools/export.py on a user's own data and run (walkthrough 14a, findings 3 and 4): a grey
photo among the calibration images is read as RGB (a label mask is still refused), --input_size
takes training's ``H,W`` spelling and defaults to the training size of the run's labels.json,
and --check / --calibration_data take a ``{split}`` folder of ``images/`` and ``masks/``.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_fcn.export import images
from keras_fcn.labels import ModelLabels
from tiny import saved_raw_rgb_fcn
from tool_flags import tool

NUM_CLASSES = 3


def _png(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)
    return str(path)


def _grey_photo(seed=0, hw=(16, 16)):
    """A single-channel photo: every grey level 0..255 (far more than a mask's ids)."""
    values = np.arange(hw[0] * hw[1]) % 256
    return np.random.default_rng(seed).permutation(values).reshape(hw).astype(np.uint8)


def _rgb(seed, hw=(16, 16)):
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3)).astype(np.uint8)


def _split(folder, count, hw, grey=None):
    """``folder/images`` (RGB, image ``grey`` single-channel) and ``folder/masks`` (ids
    0..2, a different mask per image)."""
    for i in range(count):
        image = _grey_photo(i, hw) if i == grey else _rgb(i, hw)
        _png(folder / "images" / f"f{i}.png", image)
        mask = (np.arange(hw[0] * hw[1]).reshape(hw) // (7 + i)) % NUM_CLASSES
        _png(folder / "masks" / f"f{i}.png", mask)
    return str(folder)


def test_calibration_reads_a_grey_photo_as_rgb_and_refuses_label_masks(tmp_path):
    grey = _grey_photo()
    grey_path = _png(tmp_path / "photos" / "grey.png", grey)
    rgb_path = _png(tmp_path / "photos" / "rgb.png", _rgb(1))
    np.testing.assert_array_equal(images.load_calibration_image(grey_path),
                                  np.repeat(grey[..., None], 3, axis=-1))
    assert images.check_calibration_images([rgb_path, grey_path]) == [grey_path]
    got = list(images.calibration_images(str(tmp_path / "photos"), (8, 8)))
    assert len(got) == 2 and all(g.shape == (1, 8, 8, 3) for g in got)
    # label masks: grey ids, a palette mask, and the 64-value bound (65 grey levels: a photo)
    ids = _png(tmp_path / "m" / "ids.png", np.arange(256).reshape(16, 16) % 11)
    palette = Image.fromarray((np.arange(256).reshape(16, 16) % 3).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    palette.save(tmp_path / "m" / "voc.png")
    bound = _png(tmp_path / "m" / "bound.png", np.arange(256).reshape(16, 16) % 64)
    for path in (ids, str(tmp_path / "m" / "voc.png"), bound):
        with pytest.raises(ValueError, match=r"is a single-channel \(mode '[LP]'\) image, like "
                                             r"a label mask"):
            images.load_calibration_image(path)
    photo65 = _png(tmp_path / "m" / "photo65.png", np.arange(256).reshape(16, 16) % 65)
    assert images.load_calibration_image(photo65).shape == (16, 16, 3)


def test_read_list_pairs_a_split_folder_by_file_stem(tmp_path):
    _split(tmp_path / "val", 2, (8, 8))
    _png(tmp_path / "val" / "images" / "a.jpg", _rgb(5, (8, 8)))  # a.jpg <-> a.png
    _png(tmp_path / "val" / "masks" / "a.png", np.zeros((8, 8)))
    val = tmp_path / "val"
    assert images.read_list(val) == [
        (str(val / "images" / "a.jpg"), str(val / "masks" / "a.png")),
        (str(val / "images" / "f0.png"), str(val / "masks" / "f0.png")),
        (str(val / "images" / "f1.png"), str(val / "masks" / "f1.png"))]
    # a data set's root: the splits are named, none is guessed
    _split(tmp_path / "train", 1, (8, 8))
    with pytest.raises(ValueError, match=rf"^Folder '{tmp_path}' holds no images but the splits "
                                         r"\['train', 'val'\] of a data set .*pass one of "
                                         rf"them, e\.g\. '{val}'$"):
        images.read_list(tmp_path)
    # images/ alone (no masks): its images; a plain folder of images as before
    _png(tmp_path / "test" / "images" / "x.png", _rgb(6, (8, 8)))
    assert images.read_list(tmp_path / "test") == [(str(tmp_path / "test/images/x.png"), None)]
    assert images.read_list(val / "images")[0] == (str(val / "images" / "a.jpg"), None)
    _png(val / "masks" / "orphan.png", np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"1 unpaired file.*orphan\.png"):
        images.read_list(val)


@pytest.mark.parametrize("text, size", [("90,120", (90, 120)), ("90x120", (90, 120)),
                                        (" 64 , 96 ", (64, 96)), ("48", (48, 48)),
                                        ("90X120", (90, 120))])
def test_input_size_takes_both_spellings(text, size):
    with tool("export", "--model=m.keras", "--output_dir=out") as t:
        assert t.parse_size(text) == size
        with pytest.raises(ValueError, match=r"^--input_size must be 'H,W' or 'S' with positive "
                                             r"sizes\. Received: input_size='90;120'$"):
            t.parse_size("90;120")


def test_input_size_defaults_to_the_training_size_of_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    model = str(run / "best.keras")  # not needed: the size is read before the model
    base = [f"--model={model}", f"--output_dir={tmp_path / 'out'}", "--quantizations=float16"]
    with tool("export", *base) as t:
        with pytest.raises(ValueError, match=rf"^TFLite export needs --input_size \(e\.g\. "
                                             rf"360x480\): no labels file beside --model="
                                             rf"'{model}' \(best\.labels\.json or labels\.json\)"):
            t.check_flags()
        ModelLabels(num_classes=NUM_CLASSES).write(str(run / "labels.json"))
        with pytest.raises(ValueError, match=r"labels\.json records no training size"):
            t.check_flags()
        ModelLabels(num_classes=NUM_CLASSES, image_size=(24, 40)).write(str(run / "labels.json"))
        capsys.readouterr()
        assert t.check_flags() == ((24, 40), None, None)
        assert capsys.readouterr().out == (f"--input_size=24x40: the training size in "
                                           f"{run / 'labels.json'}\n")
    with tool("export", *base, "--input_size=24,40") as t:  # given: the training size
        assert t.check_flags() == ((24, 40), None, None)
    with tool("export", *base, "--input_size=16,20", "--any_input_size") as t:  # another size
        assert t.check_flags() == ((16, 20), None, None)
    with tool("export", *base[:2], "--quantizations=") as t:  # SavedModel of any size
        assert t.check_flags() == (None, None, None)
    assert capsys.readouterr().out == ""


def test_cli_calibrates_on_a_train_folder_with_a_grey_photo_but_not_on_masks(tmp_path,
                                                                             capsys):
    train = _split(tmp_path / "data" / "train", 3, (20, 30), grey=1)
    base = [f"--model={tmp_path / 'none.keras'}", f"--output_dir={tmp_path / 'out'}",
            "--quantizations=int8", "--input_size=32,48"]
    with tool("export", *base, f"--calibration_data={train}") as t:
        assert t.check_flags() == ((32, 48), None, None)
    assert capsys.readouterr().out == (
        f"--calibration_data: 1 grey (single-channel) photo(s) read as RGB, as training reads "
        f"them: {train}/images/f1.png\n")
    with tool("export", *base, f"--calibration_data={train}/masks") as t:
        with pytest.raises(ValueError, match=rf"^--calibration_data='{train}/masks': image file "
                                             rf"'{train}/masks/f0\.png' is a single-channel "
                                             r"\(mode 'L'\) image, like a label mask"):
            t.check_flags()


PALETTE, VOID = [[200, 0, 0], [0, 200, 0], [0, 0, 200]], [0, 0, 0]


def _colour_masks(val):
    """Rewrites the masks of ``val`` as colour masks (PALETTE, void pixels VOID) beside a
    classes.json of "mask_format": "rgb" one folder up, as ``--dataset=folder`` reads them."""
    for name in os.listdir(f"{val}/masks"):
        ids = np.asarray(Image.open(f"{val}/masks/{name}"))
        ids = np.where(np.arange(ids.size).reshape(ids.shape) % 5 == 0, NUM_CLASSES, ids)
        _png(f"{val}/masks/{name}", np.asarray(PALETTE + [VOID])[ids])
    with open(os.path.join(os.path.dirname(val), "classes.json"), "w") as f:
        json.dump({"classes": ["a", "b", "c"], "palette": PALETTE, "mask_format": "rgb",
                   "void_color": VOID}, f)


def _mask_ids(path):
    """Class ids of a mask, colour masks mapped here by comparing colours (void: NUM_CLASSES)."""
    mask = np.asarray(Image.open(path))
    if mask.ndim == 2:
        return mask
    colours = np.asarray(PALETTE + [VOID])
    return np.argmax((mask[..., None, :] == colours).all(-1), -1)


@pytest.mark.parametrize("colour", [False, True])
def test_export_of_a_run_on_folder_data_needs_no_size_nor_list_file(tmp_path, capsys, colour):
    """The walkthrough's commands: the run's training size and the val split folder as the
    mean IU gate; its masks as class ids, or (colour) colour masks read through the data set's
    classes.json (load_mask refused them as "not an index mask")."""
    run = tmp_path / "run"
    run.mkdir()
    model, path = saved_raw_rgb_fcn(run, NUM_CLASSES, seed=0)
    void = NUM_CLASSES if colour else 255  # training's ignore label of a void colour
    ModelLabels(num_classes=NUM_CLASSES, image_size=(32, 48),
                ignore_label=void).write(str(run / "labels.json"))
    val = _split(tmp_path / "data" / "val", 2, (40, 60))
    if colour:
        _colour_masks(val)
    out = tmp_path / "out"
    with tool("export", f"--model={path}", f"--output_dir={out}", "--name=tiny",
              "--quantizations=float32", "--nosaved_model", f"--check={val}",
              "--max_miou_drop=100", "--runs=1") as t:
        t.main(["prog"])
    printed = capsys.readouterr().out
    assert f"--input_size=32x48: the training size in {run / 'labels.json'}" in printed
    assert ("--check: colour masks, read through the palette of "
            f"{tmp_path / 'data' / 'classes.json'}" in printed) == colour
    sidecar = json.loads((out / "tiny_float32.json").read_text())
    assert sidecar["input"]["shape"] == [1, 32, 48, 3]
    report = json.loads((out / "tiny_check.json").read_text())
    assert f"2 images from {val}, resized to 32x48" in report["notes"]
    assert ("mean IU at 32x48, the masks resized to it by nearest neighbour: it differs a little "
            "from tools/evaluate.py's, which scores at each mask's own size" in report["notes"])
    # the Keras mean IU of the gate against numpy, each image with the mask of its stem
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for i in range(2):
        image = Image.open(f"{val}/images/f{i}.png").resize((48, 32), Image.BILINEAR)
        mask = np.asarray(Image.fromarray(_mask_ids(f"{val}/masks/f{i}.png").astype(np.uint8))
                          .resize((48, 32), Image.NEAREST))
        ids = np.argmax(model.predict(np.asarray(image, np.float32)[None], verbose=0)[0], -1)
        keep = mask != void
        assert keep.all() != colour  # the colour masks have void pixels
        np.add.at(confusion, (mask[keep], ids[keep]), 1)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    iu = np.diag(confusion)[union > 0] / union[union > 0]
    assert report["rows"][0]["mean_iu"] == pytest.approx(100 * iu.mean(), abs=1e-6)
    assert report["rows"][1]["mean_iu"] is not None
