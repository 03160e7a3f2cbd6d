"""Drive-aware CamVid splits and group splits of folders (issue 16, part 1): the group of each
frame is read exactly from its file name, held-out groups never reach training, and
leave-one-group-out folds validate on every frame exactly once."""

import numpy as np
import pytest
from PIL import Image

from keras_fcn import datasets

# CamVid's four drives, with frame names as the data set spells them.
CAMVID_NAMES = {
    "0001TP_006690.png": "0001TP", "0001TP_006720.png": "0001TP",
    "0006R0_f01830.png": "0006R0", "0006R0_f01860.png": "0006R0",
    "0016E5_07959.png": "0016E5", "0016E5_08010.png": "0016E5", "0016E5_00390.png": "0016E5",
    "Seq05VD_f00000.png": "Seq05VD",
}


def _write_camvid(root, train_names, val_names):
    """A tiny CamVid tree (4x6 images) with list files naming `train_names` and `val_names`."""
    for split, names in (("train", train_names), ("val", val_names)):
        for sub in (split, split + "annot"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(root / split / name)
            Image.fromarray(np.full((4, 6), i % 11, np.uint8)).save(root / f"{split}annot" / name)
        (root / f"{split}.txt").write_text(
            "".join(f"{split}/{n} {split}annot/{n}\n" for n in names))


def _names(pairs):
    return [p[0].replace("\\", "/").rsplit("/", 1)[1] for p in pairs]


def test_camvid_drive_parses_every_naming_scheme():
    for name, drive in CAMVID_NAMES.items():
        assert datasets.camvid_drive(f"/data/camvid/train/{name}") == drive
    for bad in ("a.png", "frame_0001.png", "0001TP006690.png", "Seq5VD_f00000.png"):
        with pytest.raises(ValueError, match=f"'{bad}' has no drive"):
            datasets.camvid_drive(f"train/{bad}")


def test_camvid_holdout_split_is_exact(tmp_path):
    train_names = ["0001TP_006690.png", "0006R0_f01830.png", "0016E5_07959.png",
                   "0006R0_f01860.png", "0001TP_006720.png", "0016E5_08010.png"]
    val_names = ["0016E5_00390.png", "Seq05VD_f00000.png"]
    _write_camvid(tmp_path, train_names, val_names)
    # Without a holdout the list files are read as they are.
    assert _names(datasets.camvid_pairs(tmp_path, "val")[0]) == val_names
    val, info = datasets.camvid_pairs(tmp_path, "val", holdout="0006R0")
    train, _ = datasets.camvid_pairs(tmp_path, "train", holdout=("0006R0",))
    assert _names(val) == ["0006R0_f01830.png", "0006R0_f01860.png"]
    assert _names(train) == ["0001TP_006690.png", "0016E5_07959.png", "0001TP_006720.png",
                             "0016E5_08010.png", "0016E5_00390.png", "Seq05VD_f00000.png"]
    assert info.num_classes == 11
    # Two drives held out, as a flag gives them; the masks come along with their images.
    val, _ = datasets.camvid_pairs(tmp_path, "val", holdout="0006R0, Seq05VD")
    assert _names(val) == ["0006R0_f01830.png", "0006R0_f01860.png", "Seq05VD_f00000.png"]
    assert all(image.replace("val/", "valannot/").replace("train/", "trainannot/") == mask
               for image, mask in val)


def test_camvid_holdout_errors_name_the_drives_and_files(tmp_path):
    _write_camvid(tmp_path, ["0001TP_006690.png", "0006R0_f01830.png"], ["0016E5_07959.png"])
    with pytest.raises(ValueError, match=r"Unknown drive\(s\) \['0007XX'\].*Known drives "
                                         r"\(frames\): 0001TP \(1\), 0006R0 \(1\), 0016E5 \(1\)"):
        datasets.camvid_pairs(tmp_path, "val", holdout="0007XX")
    with pytest.raises(ValueError, match="every drive.*nothing is left to train on"):
        datasets.camvid_pairs(tmp_path, "train", holdout="0001TP,0006R0,0016E5")
    with pytest.raises(ValueError, match="at least one drive"):
        datasets.camvid_pairs(tmp_path, "train", holdout=" , ")
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val'\).*'test'"):
        datasets.camvid_pairs(tmp_path, "test", holdout="0006R0")
    (tmp_path / "val.txt").write_text("val/0016E5_07959.png valannot/0016E5_07959.png\n"
                                      "val/frame9.png valannot/frame9.png\n")
    with pytest.raises(ValueError, match=r"'frame9.png' has no drive.*val/frame9.png"):
        datasets.camvid_pairs(tmp_path, "train", holdout="0006R0")


def test_folder_group_by_holdout_through_load_split(tmp_path):
    frames = {"train": ["street1_0001", "street2_0001", "street1_0002", "street3_0001"],
              "val": ["street2_0002", "street3_0002"]}
    for split, stems in frames.items():
        for sub in ("images", "masks"):
            (tmp_path / split / sub).mkdir(parents=True)
        for i, stem in enumerate(stems):
            Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(
                tmp_path / split / "images" / f"{stem}.jpg")
            Image.fromarray(np.full((2, 3), i % 2, np.uint8)).save(
                tmp_path / split / "masks" / f"{stem}.png")
    group_by = r"^(street\d+)_"
    val = datasets.split_pairs(tmp_path, "val", group_by=group_by, holdout="street2")
    train = datasets.split_pairs(tmp_path, "train", group_by=group_by, holdout="street2")
    assert _names(val) == ["street2_0001.jpg", "street2_0002.jpg"]
    assert _names(train) == ["street1_0001.jpg", "street1_0002.jpg", "street3_0001.jpg",
                             "street3_0002.jpg"]
    decoded, info, count = datasets.load_split("folder", "val", data_dir=tmp_path,
                                               num_classes=2, group_by=group_by,
                                               holdout=["street2"])
    assert count == 2 and len(list(decoded)) == 2 and info.num_classes == 2
    # A regex without a group: the whole match is the group.
    assert _names(datasets.split_pairs(tmp_path, "val", group_by=r"street\d+",
                                       holdout="street3")) == ["street3_0001.jpg",
                                                               "street3_0002.jpg"]
    with pytest.raises(ValueError, match=r"Unknown group\(s\) \['street9'\].*street1 \(2\), "
                                         r"street2 \(2\), street3 \(2\)"):
        datasets.split_pairs(tmp_path, "val", group_by=group_by, holdout="street9")
    with pytest.raises(ValueError, match="group_by and holdout go together"):
        datasets.load_split("folder", "val", data_dir=tmp_path, num_classes=2, holdout="x")
    with pytest.raises(ValueError, match=r"group_by must be a regex.*group_by='\('"):
        datasets.split_pairs(tmp_path, "val", group_by="(", holdout="street2")
    with pytest.raises(ValueError, match=r"holdout works with the data sets \('camvid', "
                                         r"'folder'\). Received: dataset='shapes'"):
        datasets.load_split("shapes", "val", holdout="a")
    with pytest.raises(ValueError, match="group_by works with dataset 'folder'"):
        datasets.load_split("camvid", "val", data_dir=tmp_path, group_by=group_by,
                            holdout="0006R0")


def test_group_folds_validate_on_every_frame_once():
    group = datasets.regex_group(r"^[^_]+")
    pairs = [(f"img/{name}", f"mask/{name}") for name in
             ["a_1.png", "b_1.png", "a_2.png", "c_1.png", "b_2.png", "a_3.png"]]
    folds = list(datasets.group_folds(pairs, group))
    assert [(g, len(train), len(val)) for g, train, val in folds] == [
        ("a", 3, 3), ("b", 4, 2), ("c", 5, 1)]
    validated = [pair for _, _, val in folds for pair in val]
    assert sorted(validated) == sorted(pairs)  # each frame is validation exactly once
    for held_out, train, val in folds:
        assert {group(image) for image, _ in val} == {held_out}
        assert held_out not in {group(image) for image, _ in train}
        assert sorted(train + val) == sorted(pairs)
    assert datasets.group_counts(pairs, group) == {"a": 3, "b": 2, "c": 1}


def test_real_camvid_drives_per_split(camvid_dir):
    train, _ = datasets.camvid_pairs(camvid_dir, "train")
    val, _ = datasets.camvid_pairs(camvid_dir, "val")
    counts = {split: datasets.group_counts(pairs, datasets.camvid_drive)
              for split, pairs in (("train", train), ("val", val))}
    print(f"CamVid drives per split: {counts}")
    assert counts == {"train": {"0001TP": 62, "0006R0": 101, "0016E5": 204},
                      "val": {"0016E5": 101}}
    pooled = train + val
    for drive, fold_train, fold_val in datasets.group_folds(pooled, datasets.camvid_drive):
        split_val, _ = datasets.camvid_pairs(camvid_dir, "val", holdout=drive)
        split_train, _ = datasets.camvid_pairs(camvid_dir, "train", holdout=drive)
        assert split_val == fold_val and split_train == fold_train
        assert {datasets.camvid_drive(image) for image, _ in split_val} == {drive}
        assert not {image for image, _ in split_train} & {image for image, _ in split_val}
        assert drive not in {datasets.camvid_drive(image) for image, _ in split_train}
        assert len(split_train) + len(split_val) == len(pooled) == 468
        print(f"holdout={drive}: train {len(split_train)}, val {len(split_val)}")
    _, _, count = datasets.load_split("camvid", "val", data_dir=camvid_dir, holdout="0006R0")
    assert count == 101


def test_wrong_camvid_data_dir_names_the_flag_and_the_folder_meant(tmp_path):
    """The CamVid walkthrough: --data_dir=/work/shared/data (the folder above camvid/) or
    .../camvid/train (a split) gave "List file '.../train.txt' does not exist"."""
    _write_camvid(tmp_path / "camvid", ["0001TP_006690.png"], ["0016E5_07959.png"])
    expected = "expected the CamVid folder holding train.txt and val.txt"
    above = str(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        datasets.camvid_pairs(above, "train")
    assert str(error.value).startswith(f"--data_dir={above} has no train.txt: {expected}")
    assert str(error.value).endswith(f"Did you mean --data_dir={tmp_path / 'camvid'}?")
    split = str(tmp_path / "camvid" / "train")
    with pytest.raises(FileNotFoundError, match=f"Did you mean --data_dir={tmp_path / 'camvid'}"
                                                r"\?$"):
        datasets.camvid_pairs(split, "val", holdout="0001TP")
    with pytest.raises(FileNotFoundError, match=f"{expected} \\(with train/, trainannot/, "
                                                r"val/, valannot/\)\.$"):
        datasets.camvid_pairs(tmp_path / "nowhere", "val")


def test_evaluate_tool_refuses_a_wrong_camvid_data_dir_in_one_line(tmp_path):
    from tests.tiny import tiny_fcn
    from tests.tool_flags import run_in_process

    _write_camvid(tmp_path / "camvid", ["0001TP_006690.png"], ["0016E5_07959.png"])
    model = tmp_path / "m.keras"
    tiny_fcn("32s", num_classes=11).save(model)
    done = run_in_process("tools/evaluate.py", f"--model={model}", "--dataset=camvid",
                          f"--data_dir={tmp_path}", "--image_size=native")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"error: --data_dir={tmp_path} has no val.txt: expected the CamVid folder holding "
        "train.txt and val.txt (with train/, trainannot/, val/, valannot/). Did you mean "
        f"--data_dir={tmp_path / 'camvid'}?")


def test_evaluate_tool_keeps_held_out_and_same_split_figures_apart(tmp_path):
    """The CamVid walkthrough: --holdout=0006R0 and then no --holdout both wrote
    best.eval.json (the second replaced the first), and neither header named the drive."""
    import json

    from tests.tiny import tiny_fcn
    from tests.tool_flags import run_in_process

    from keras_fcn.training import run_dir

    data = tmp_path / "camvid"
    _write_camvid(data, ["0001TP_006690.png", "0016E5_08010.png"], ["0016E5_07959.png"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"flags": {"holdout": "0001TP"}}))
    tiny_fcn("32s", num_classes=11).save(run / "best.keras")
    common = (f"--model={run / 'best.keras'}", "--dataset=camvid", f"--data_dir={data}",
              "--image_size=32,32")
    held = run_in_process("tools/evaluate.py", *common, "--holdout=0001TP")
    assert held.returncode == 0, held.stderr
    assert " on camvid val of held-out 0001TP (1 images" in held.stdout
    assert "Note:" not in held.stdout
    same = run_in_process("tools/evaluate.py", *common)
    assert same.returncode == 0, same.stderr
    assert " on camvid val (1 images" in same.stdout
    assert (f"Note: the run of {run / 'best.keras'} held out 0001TP (--holdout in its "
            "config.json); without --holdout this figure is on the val split of the training "
            "groups, not the held-out ones. For the held-out figure pass --holdout=0001TP."
            ) in same.stdout
    assert json.loads((run / "best.holdout-0001TP.eval.json").read_text())["holdout"] == "0001TP"
    assert json.loads((run / "best.eval.json").read_text())["holdout"] is None
    # a run's --overwrite removes both with the model they score
    assert run_dir.unexpected_entries(str(run)) == []
