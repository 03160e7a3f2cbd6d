"""Findings of the own-data walkthrough of 2026-12-07 (session 22), each failing before its fix."""

import logging

import numpy as np
import pytest
from PIL import Image

from keras_fcn import datasets


def _pair(images, masks, stem):
    for folder in (images, masks):
        folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(images / f"{stem}.jpg")
    Image.fromarray(np.array([[0, 1, 2, 0, 1, 2]] * 4, np.uint8)).save(masks / f"{stem}.png")


def test_frames_in_subfolders_are_named_not_dropped_without_a_word(tmp_path, caplog):
    """Half of the training pairs in train/images/scene2/ and train/masks/scene2/: training
    ran on the other half ("4 train images") and said nothing of the rest."""
    train = tmp_path / "train"
    _pair(train / "images", train / "masks", "a")
    _pair(train / "images" / "scene2", train / "masks" / "scene2", "b")
    with caplog.at_level(logging.WARNING):
        pairs = datasets.folder_pairs(train / "images", train / "masks")
    assert [p[0].split("/")[-1] for p in pairs] == ["a.jpg"]
    assert "subfolders are not read" in caplog.text
    assert f"'{train / 'images' / 'scene2'}', '{train / 'masks' / 'scene2'}'" in caplog.text

    (train / "images" / "a.jpg").unlink()
    (train / "masks" / "a.png").unlink()
    with pytest.raises(ValueError, match=r"has no image/mask pairs .*expected at least one: "
                                         r"subfolders are not read \("):
        datasets.load_split("folder", "train", data_dir=tmp_path, num_classes=3)
