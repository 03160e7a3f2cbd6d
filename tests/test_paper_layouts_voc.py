"""A walkthrough of the paper's PASCAL VOC data layouts (SBD training, seg11valid validation),
on tiny look-alike VOCdevkit and benchmark_RELEASE trees: --num_classes of a fixed-class data
set, seg11valid in tools/evaluate.py, SIFT Flow and NYUDv2 models there, and the messages of
wrong or swapped folders."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from test_datasets import _fake_voc
from tiny import tiny_fcn
from keras_fcn import training as train
from keras_fcn.datasets import pairs as pairs_lib
from keras_fcn.datasets import seg11valid_ids
from keras_fcn.training.checks import check_before_run
from keras_fcn.training.data_order import ResumeDataOrder

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _fake_sbd(root, ids=("2008_000002",)):
    """benchmark_RELEASE/dataset with img/*.jpg, cls/*.mat (GTcls), train.txt and val.txt."""
    scipy_io = pytest.importorskip("scipy.io")
    sbd = os.path.join(root, "benchmark_RELEASE", "dataset")
    for sub in ("img", "cls"):
        os.makedirs(os.path.join(sbd, sub), exist_ok=True)
    for name in ("train.txt", "val.txt"):
        with open(os.path.join(sbd, name), "w") as file:
            file.write("".join(f"{i}\n" for i in ids))
    for image_id in ids:
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(
            os.path.join(sbd, "img", f"{image_id}.jpg"))
        scipy_io.savemat(os.path.join(sbd, "cls", f"{image_id}.mat"),
                         {"GTcls": {"Segmentation": np.ones((6, 8), np.uint8)}})
    return os.path.join(root, "benchmark_RELEASE")


def _seg11valid_voc(root, size=(8, 10)):
    """VOCdevkit/VOC2012 holding every seg11valid image; the n-th mask has n % 5 void rows."""
    ids = seg11valid_ids()
    voc = _fake_voc(root, {"val": ids[:1]}, size=size)
    for n, image_id in enumerate(ids):
        mask = np.full(size, n % 21, np.uint8)
        mask[:n % 5] = 255
        Image.fromarray(mask, mode="L").save(os.path.join(voc, "SegmentationClass",
                                                          f"{image_id}.png"))
        if n:
            Image.fromarray(np.full(size + (3,), 7 * n % 256, np.uint8)).save(
                os.path.join(voc, "JPEGImages", f"{image_id}.jpg"))
    return os.path.join(root, "VOCdevkit")


def _tool(script, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, *script.split("/")), *args],
                          capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)


def test_num_classes_other_than_a_fixed_data_sets_is_refused_and_unset_passes():
    for dataset, classes in (("voc", 21), ("sbd", 21), ("camvid", 11), ("shapes", 4)):
        with pytest.raises(ValueError, match=rf"--dataset={dataset} has {classes} classes "
                                             r"\(fixed\).*Received: num_classes=5"):
            check_before_run(train.TrainConfig().replace(dataset=dataset, num_classes=5))
        for num_classes in (None, classes):  # unset, or the data set's own count
            config = check_before_run(train.TrainConfig().replace(dataset=dataset,
                                                                  num_classes=num_classes))
            assert config.data.num_classes == num_classes
    folder = check_before_run(train.TrainConfig().replace(dataset="folder", num_classes=5))
    assert folder.data.num_classes == 5


def test_train_voc_without_val_data_dir_says_so_and_refuses_num_classes(tmp_path):
    sbd = _fake_sbd(tmp_path)
    output = tmp_path / "run"
    result = _tool("examples/train_voc.py", f"--data_dir={sbd}", f"--output_dir={output}",
                   "--num_classes=30", "--weights=none")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "Validation: SBD val (2,857 images), not seg11valid" in result.stdout
    assert "--val_data_dir=<VOCdevkit>" in result.stdout
    assert ("--dataset=sbd has 21 classes (fixed)" in result.stderr
            and "Received: num_classes=30" in result.stderr)
    assert not output.exists()


def test_swapped_or_wrong_sbd_and_voc_folders_name_the_flags(tmp_path):
    sbd = _fake_sbd(tmp_path / "s")
    voc = os.path.join(_fake_voc(tmp_path / "v", {"val": ["2007_000033"]}), "..")
    voc = os.path.normpath(voc)  # VOCdevkit
    with pytest.raises(FileNotFoundError) as swapped:
        pairs_lib.file_pairs("sbd", "train", voc, val_data_dir=sbd)
    assert f"No SBD layout (cls, img, train.txt, val.txt) found under --data_dir='{voc}'" \
        in str(swapped.value)
    assert "--data_dir and --val_data_dir look swapped" in str(swapped.value)
    assert f"pass --data_dir='{sbd}' --val_data_dir='{voc}'" in str(swapped.value)
    wrong = os.path.join(voc, "VOC2012", "JPEGImages")
    with pytest.raises(FileNotFoundError) as val:
        pairs_lib.file_pairs("sbd", "val", sbd, val_data_dir=wrong)
    text = str(val.value)
    assert text.startswith(f"No VOC2012 or VOC2011 layout (SegmentationClass, JPEGImages, "
                           f"ImageSets/Segmentation) found under --val_data_dir='{wrong}'")
    assert "look swapped" not in text and os.path.join(wrong, "VOCdevkit", "VOC2011") in text
    with pytest.raises(FileNotFoundError, match="holds an SBD layout: train on it with "
                                                "--dataset=sbd"):
        pairs_lib.file_pairs("voc", "train", sbd)


def test_a_voc_folder_lacking_seg11valid_images_names_val_data_dir_and_the_list(tmp_path):
    sbd = _fake_sbd(tmp_path / "s")
    voc = os.path.join(tmp_path / "v", "VOCdevkit")
    _fake_voc(tmp_path / "v", {"val": ["2007_000033"]})  # 1 of the 736 seg11valid images
    with pytest.raises(FileNotFoundError) as error:
        pairs_lib.file_pairs("sbd", "val", sbd, val_data_dir=voc)
    text = str(error.value)
    missing = os.path.join(voc, "VOC2012", "JPEGImages", "2007_000042.jpg")
    assert text.startswith(f"seg11valid file '{missing}' does not exist (1470 of the 1472 "
                           "images and masks are missing)")
    assert f"read from the VOC folder --val_data_dir='{voc}'" in text
    assert "seg11valid.txt" in text and "data_dir='" not in text.replace("val_data_dir", "")


def test_evaluate_scores_seg11valid_of_a_voc_folder(tmp_path):
    voc = _seg11valid_voc(tmp_path)
    path = str(tmp_path / "tiny.keras")
    tiny_fcn("32s", 21).save(path)
    output = str(tmp_path / "eval.json")
    result = _tool("tools/evaluate.py", f"--model={path}", "--dataset=voc", f"--data_dir={voc}",
                   "--split=seg11valid", "--max_images=4", f"--output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on voc2012 seg11valid (4 images" in result.stdout
    results = json.load(open(output))
    assert results["split"] == "seg11valid" and results["num_images"] == 4
    # The first four seg11valid masks (8x10, n % 5 void rows): 80 + 70 + 60 + 50 pixels.
    assert np.array(results["confusion_matrix"]).sum() == 260
    truth = np.array(results["confusion_matrix"]).sum(1)
    assert truth[:4].tolist() == [80, 70, 60, 50] and truth[4:].sum() == 0


def test_evaluate_refuses_sbd_seg11valid_naming_the_voc_way(tmp_path):
    result = _tool("tools/evaluate.py", "--model=none.keras", "--dataset=sbd",
                   "--split=seg11valid")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is --dataset=voc --split=seg11valid" in result.stderr
    assert "Received: dataset='sbd', split='seg11valid'" in result.stderr


def test_evaluate_names_the_recipes_for_nyud_and_siftflow():
    """(A two-headed SIFT Flow model file: tests/test_cli_tools.py.) In this process: no
    TensorFlow start-up per run."""
    from tool_flags import run_in_process

    nyud = run_in_process("tools/evaluate.py", "--model=nyud-fcn32s-color", "--dataset=nyud")
    preset = run_in_process("tools/evaluate.py", "--model=siftflow-fcn16s", "--dataset=shapes")
    for result, name, received in (
            (nyud, "NYUDv2", "Received: dataset='nyud'"),
            (preset, "SIFT Flow", "Received: model='siftflow-fcn16s'")):
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"tools/evaluate.py does not score {name} models" in result.stderr
        assert "--epochs=0" in result.stderr and received in result.stderr
        assert "keep one head" not in result.stderr
    assert "examples/train_nyud.py" in nyud.stderr
    assert "examples/train_siftflow.py" in preset.stderr


def test_a_resume_with_every_epoch_done_says_nothing_about_the_data(capsys):
    def begin(initial, epochs):
        callback = ResumeDataOrder(["unmovable"])  # a list: data keras_fcn cannot move on
        callback.set_model(types.SimpleNamespace(_initial_epoch=initial))
        callback.set_params({"epochs": epochs})
        callback.on_train_begin()
        return capsys.readouterr().out

    assert begin(4, 4) == ""
    assert begin(4, 6) == ("Resuming after 4 epochs: the training data starts again from its "
                           "first batch (a list, which keras_fcn cannot move on).\n")
