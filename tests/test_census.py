"""keras_fcn.datasets.census: the training masks of one's own data are counted before a run,
and masks with nothing to learn stop it (a walkthrough's 0/255 binary masks trained on the
background alone and reported 100% mean IU)."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from keras_fcn.datasets import census, load_split
from keras_fcn.datasets.pairs import custom_info
from tool_flags import run_in_process


def _folder(root, masks, split="train"):
    """A --dataset=folder split: grey images and the given masks (arrays) as PNGs."""
    for folder in ("images", "masks"):
        os.makedirs(root / split / folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, mask in enumerate(masks):
        Image.fromarray(rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)).save(
            root / split / "images" / f"{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / split / "masks" / f"{i}.png")
    return root


def _binary(count, foreground=255):
    masks = np.zeros((count, 16, 16), np.uint8)
    masks[:, 4:12, 4:12] = foreground
    return masks


def test_census_counts_equal_numpy_and_an_even_sample_reads_max_masks(tmp_path):
    rng = np.random.default_rng(1)
    masks = rng.choice([0, 1, 2, 255], (6, 16, 16), p=[0.4, 0.3, 0.2, 0.1]).astype(np.uint8)
    _folder(tmp_path, masks)
    pairs = [(str(tmp_path / "train" / "images" / f"{i}.png"),
              str(tmp_path / "train" / "masks" / f"{i}.png")) for i in range(6)]
    info = custom_info("folder", 3)
    counts, void, read = census.class_census(pairs, info)
    np.testing.assert_array_equal(counts, [np.sum(masks == c) for c in range(3)])
    assert (void, read) == (np.sum(masks == 255), 6)
    counts, void, read = census.class_census(pairs, info, max_masks=3)  # masks 0, 2 (or 3), 5
    assert read == 3 and masks[0].size * 3 == counts.sum() + void


def test_binary_masks_saved_as_0_and_255_stop_the_run_before_training(tmp_path):
    root = _folder(tmp_path / "data", _binary(3))
    _folder(root, _binary(2), split="val")
    with pytest.raises(ValueError, match=r"The 3 training masks hold no pixel of any class but "
                                         r"'0' \(id 0\) and the ignore label 255: there is "
                                         r"nothing to learn\. Binary masks saved as 0 and 255 .*"
                                         r"save the foreground as 1 \(mask // 255\)"):
        load_split("folder", "train", data_dir=str(root), num_classes=2)
    load_split("folder", "val", data_dir=str(root), num_classes=2)  # validation: not checked
    out = tmp_path / "run"
    result = run_in_process("examples/train.py", "--dataset=folder", f"--data_dir={root}",
                            "--num_classes=2", "--epochs=1", f"--output_dir={out}")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "mask // 255" in errors[0], result.stderr[-2000:]
    assert not out.exists()  # stopped before the run folder was made


def test_masks_of_0_and_1_train_and_an_absent_class_is_named_in_a_warning(tmp_path, caplog):
    root = _folder(tmp_path / "data", _binary(3, foreground=1))
    with caplog.at_level(logging.WARNING, logger=census.__name__):
        counts = census.check_training_labels(
            [(str(root / "train" / "images" / f"{i}.png"),
              str(root / "train" / "masks" / f"{i}.png")) for i in range(3)],
            custom_info("folder", 3))
    np.testing.assert_array_equal(counts, [3 * (256 - 64), 3 * 64, 0])
    (record,) = caplog.records
    assert record.getMessage() == ("No training mask holds class(es) '2' (id 2): the model "
                                   "cannot learn them, and their IU is n/a (left out of the "
                                   "mean IU).")


def test_a_sample_that_finds_no_class_only_warns(tmp_path, caplog):
    root = _folder(tmp_path / "data", _binary(5))
    pairs = [(str(root / "train" / "images" / f"{i}.png"),
              str(root / "train" / "masks" / f"{i}.png")) for i in range(5)]
    with caplog.at_level(logging.WARNING, logger=census.__name__):
        census.check_training_labels(pairs, custom_info("folder", 2), max_masks=2)
    assert "(an even sample of 2 of 5) hold no pixel" in caplog.records[0].getMessage()


def _photo(path, orientation=None, size=(16, 24)):
    """A JPEG photo (h, w) = size, tagged with an EXIF orientation when given."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(np.full((*size, 3), 128, np.uint8)).save(path, exif=exif)
    return str(path)


def test_photos_turned_by_exif_are_refused_naming_the_file_and_the_fix(tmp_path):
    """A phone photo (orientation 6) trained on its stored pixels against an upright mask while
    tools/predict.py turns it: whichever way its mask was drawn, one of the two disagreed."""
    from keras_fcn.data import validate_pairs
    from keras_fcn.data.masks import orientation_problem
    from keras_fcn.training import TrainConfig
    from keras_fcn.training.array_inputs import evaluation_data

    assert orientation_problem(_photo(tmp_path / "plain.jpg")) is None
    assert orientation_problem(_photo(tmp_path / "upright.jpg", 1)) is None
    turned = _photo(tmp_path / "phone.jpg", 6)
    expected = (f"image file '{turned}' has EXIF orientation 6 (viewers turn it 90 degrees "
                "clockwise): training and evaluation read its stored pixels, tools/predict.py "
                "the turned ones, and its mask matches one of the two only. Save it with the "
                "turn applied (PIL: ImageOps.exif_transpose(image).save(path)) if its mask was "
                "drawn on the photo as viewers show it, or without the tag if on the stored "
                "pixels")
    assert orientation_problem(turned) == expected
    root = _folder(tmp_path / "data", _binary(3, foreground=1)[:, :16, :16])
    for i, orientation in enumerate((6, 3)):  # two turned photos of three
        os.remove(root / "train" / "images" / f"{i}.png")
        _photo(root / "train" / "images" / f"{i}.jpg", orientation, size=(16, 16))
    png = _photo(tmp_path / "tagged.png", 6)  # PNG: not a phone photo, its EXIF is not read
    assert orientation_problem(png) is None
    with pytest.raises(ValueError, match=r"'.*0\.jpg' has EXIF orientation 6 \(viewers turn it "
                                         r"90 degrees clockwise\).* \(1 more images have one\)"):
        load_split("folder", "train", data_dir=str(root), num_classes=2)
    pair = (str(root / "train" / "images" / "1.jpg"), str(root / "train" / "masks" / "1.png"))
    report = validate_pairs([pair], num_classes=2, skip_bad=True)
    assert report.bad[0][1].startswith(f"image file '{pair[0]}' has EXIF orientation 3 (viewers "
                                       "turn it 180 degrees)")
    config = TrainConfig().replace(dataset="folder", data_dir=str(root), num_classes=2,
                                   val_split="train")
    with pytest.raises(ValueError, match="has EXIF orientation 6"):
        evaluation_data(config, "train")  # tools/evaluate.py without TensorFlow
