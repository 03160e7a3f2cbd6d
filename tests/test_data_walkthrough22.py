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


def test_check_names_what_stops_a_run_though_each_pair_is_good(tmp_path, capsys, monkeypatch):
    """datasets.check printed "0 examples, all good" for an empty val folder and "all good"
    for 0/255 binary training masks, both of which training refuses. It lists each split's
    files once (it listed the train split a second time for its DatasetInfo)."""
    import importlib

    check_module = importlib.import_module("keras_fcn.datasets.check")  # not the function
    listed = []
    file_pairs = check_module.file_pairs
    monkeypatch.setattr(check_module, "file_pairs",
                        lambda name, split, *a: listed.append(split) or file_pairs(name, split,
                                                                                   *a))
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (tmp_path / split / sub).mkdir(parents=True)
    for stem in ("a", "b"):
        image = Image.fromarray(np.zeros((4, 6, 3), np.uint8))
        image.save(tmp_path / "train/images" / f"{stem}.jpg")
        Image.fromarray(np.array([[0, 255, 0, 255, 0, 0]] * 4, np.uint8)).save(
            tmp_path / "train/masks" / f"{stem}.png")
    reports = datasets.check("folder", tmp_path, num_classes=2)
    out = capsys.readouterr().out
    assert "all good" not in out
    assert "folder val: 0 examples\n  training would stop: no image/mask pairs" in out
    assert "folder train: 2 examples\n  training would stop: The 2 training masks hold no " \
           "pixel of any class but" in out
    assert "save the foreground as 1 (mask // 255)" in out
    assert len(reports["train"].problems) == 1 and reports["train"].num_bad == 0
    assert listed == ["train", "val"]


def test_an_evaluation_without_a_labelled_pixel_says_so():
    """Masks all void: the table printed 0.00% everywhere as if the model were wrong on every
    pixel (evaluation walkthrough)."""
    from keras_fcn import metrics, training

    empty = metrics.segmentation_metrics(np.zeros((2, 2), np.int64))
    empty["confusion_matrix"] = [[0, 0], [0, 0]]
    text = training.format_results(empty, ("a", "b"))
    assert text.startswith("No labelled pixel was scored (every mask pixel is void")
    assert "Pixel accuracy" in text or "pixel accuracy" in text.lower()
    scored = dict(metrics.segmentation_metrics(np.array([[3, 1], [0, 2]])),
                  confusion_matrix=[[3, 1], [0, 2]])
    assert "No labelled pixel" not in training.format_results(scored, ("a", "b"))


def test_evaluate_says_which_evaluation_its_default_file_replaces(tmp_path):
    """--split=train then --split=val with the default --output replaced the train figures
    without a word (evaluation walkthrough)."""
    import json

    from tool_flags import tool

    output = tmp_path / "best.eval.json"
    output.write_text(json.dumps({"dataset": "camvid", "split": "train", "mean_iu": 0.5}))
    with tool("evaluate", "--model=best.keras") as evaluate:
        assert evaluate.replaced_note(str(output), "camvid", "val") == (
            f"Replacing the evaluation of camvid train in {output} (pass --output to keep "
            "both)")
        assert evaluate.replaced_note(str(output), "camvid", "train") is None  # a rerun
        assert evaluate.replaced_note(str(tmp_path / "none.json"), "camvid", "val") is None


def test_the_metrics_refuse_one_class_as_the_builders_do():
    """MeanIU(1) was accepted and scored 1.0 everywhere for label maps (eval walkthrough)."""
    from keras_fcn import metrics

    for make in (lambda: metrics.MeanIU(1), lambda: metrics.confusion_matrix([[0]], [[0]], 1)):
        with pytest.raises(ValueError, match=r"^num_classes=1 counts every pixel as class 0: a "
                                             r"binary task is num_classes=2"):
            make()
