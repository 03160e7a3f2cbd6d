"""A walkthrough with one's own data: each error names the bad value and what was expected,
and no user file is lost. In-process (no new Python process) and tiny inputs."""

import errno
import os

import numpy as np
import pytest
from PIL import Image

from keras_fcn import datasets, io
from keras_fcn.datasets.shapes import make_shapes_dataset
from keras_fcn.datasets.folder import list_file_pairs, split_pairs
from tool_flags import load_script, one_error_line, run_in_process, tool


@pytest.fixture
def afile(tmp_path):
    path = tmp_path / "afile"
    path.write_text("the user's notes\n")
    return path


# -------------------------------------------------------- an output folder that is a file --

def test_lock_directory_names_a_file_given_as_the_output_folder(afile):
    with pytest.raises(NotADirectoryError) as error:
        io.lock_directory(str(afile))
    assert str(error.value) == f"The output folder '{afile}' is a file; expected a folder."
    assert afile.read_text() == "the user's notes\n"


@pytest.mark.parametrize("script, args, positional", [
    ("tools/predict.py", ["--model=none.keras", "x.png"], True),
    ("examples/train.py", ["--dataset=shapes", "--epochs=1"], False),
])
def test_scripts_name_the_output_dir_flag_when_it_is_a_file(afile, script, args, positional):
    done = run_in_process(script, f"--output_dir={afile}", *args, positional=positional)
    assert one_error_line(done) == f"error: --output_dir='{afile}' is a file; expected a folder."
    assert afile.read_text() == "the user's notes\n"


def test_atomic_write_names_the_target_not_its_temporary_file(tmp_path):
    target = tmp_path / "o.png"
    target.write_bytes(b"old")

    def refused(tmp):
        raise OSError(errno.EROFS, "Read-only file system", tmp)

    with pytest.raises(OSError) as error:
        io.atomic_write(str(target), refused)
    assert str(error.value) == f"[Errno 30] Read-only file system: '{target}'"
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["o.png"]


# ------------------------------------------------------------------ examples/litert_segment.py --

@pytest.fixture
def app():
    return load_script(os.path.join("examples", "litert_segment.py"), "walkthrough_litert")


def test_litert_app_names_the_output_not_its_temporary_file(app, tmp_path, monkeypatch):
    def refused(prefix, suffix, dir):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, prefix + "x"))

    monkeypatch.setattr(app.tempfile, "mkstemp", refused)
    out = str(tmp_path / "o.png")
    with pytest.raises(OSError) as error:
        app.save_image(Image.new("RGB", (2, 2)), out)
    assert str(error.value) == f"Cannot write the output '{out}': Read-only file system"


def test_litert_app_given_a_keras_file_says_it_is_no_tflite_model(app, tmp_path):
    model = tmp_path / "best.keras"
    model.write_bytes(b"PK\x03\x04" + bytes(60))  # a .keras file is a zip; no sidecar beside it
    photo = tmp_path / "img.png"
    Image.new("RGB", (4, 4)).save(photo)
    with pytest.raises(ValueError) as error:
        app.main(["app", str(model), str(photo), str(tmp_path / "out.png")])
    assert str(error.value) == (
        f"'{model}' is not a usable .tflite model: it lacks the TFLite identifier 'TFL3' at "
        "bytes 4-8. It is a Keras model: export it with tools/export.py and pass the .tflite "
        "file.")


# ---------------------------------------------------------------------- --dataset=folder --

def test_a_tab_separates_image_and_mask_paths_that_hold_spaces(tmp_path):
    (tmp_path / "train.txt").write_text("imgs/val_00 photo.png\tlabels/val 00_L.png\n"
                                        "a.png b.png\n")
    assert list_file_pairs(tmp_path, "train.txt") == [
        (str(tmp_path / "imgs/val_00 photo.png"), str(tmp_path / "labels/val 00_L.png")),
        (str(tmp_path / "a.png"), str(tmp_path / "b.png"))]


@pytest.mark.parametrize("line, found", [
    ("imgs/val_00 photo.png labels/val_00_L.png",
     "it has 3 fields; separate image and mask by a tab when a path holds spaces"),
    ("imgs/val_00.png", "it has one path: its mask is missing"),
])
def test_a_list_file_line_that_is_no_pair_says_why(tmp_path, line, found):
    (tmp_path / "train.txt").write_text(line + "\n")
    with pytest.raises(ValueError) as error:
        list_file_pairs(tmp_path, "train.txt")
    assert str(error.value) == (f"Line 1 of '{tmp_path / 'train.txt'}' must be 'image mask' "
                                f"(2 paths); {found}. Received: {line!r}")


LAYOUT = ("The data folder (--data_dir) must hold train/ and val/, each with images/ and masks/ "
          "(or train.txt and val.txt of 'image mask' lines; docs/data.md).")


def test_a_missing_split_says_what_the_data_folder_must_hold(tmp_path):
    for kind in ("images", "masks"):
        (tmp_path / "train" / kind).mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as error:
        split_pairs(tmp_path, "val")
    assert str(error.value) == (
        f"The data folder '{tmp_path}' has no 'val' split: neither 'val.txt' nor 'val/images/' "
        f"is in it. {LAYOUT} Without a val/ folder, --holdout with --group_by validates on "
        "groups of train/ (docs/camvid.md).")
    with pytest.raises(FileNotFoundError) as error:
        split_pairs(tmp_path / "train", "train")  # --data_dir pointing at a split
    assert str(error.value) == (
        f"The data folder '{tmp_path / 'train'}' has no 'train' split: neither 'train.txt' nor "
        f"'train/images/' is in it. {LAYOUT} '{tmp_path / 'train'}' looks like one split: pass "
        "the folder above it.")


def test_check_words_bad_pairs_as_a_check_not_as_skipped(tmp_path, capsys, caplog):
    make_shapes_dataset(tmp_path, num_train=2, num_val=2, size=32)
    bad_mask = tmp_path / "val" / "masks" / "val_00001.png"
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(bad_mask)
    datasets.check("shapes", tmp_path)
    out = capsys.readouterr().out
    assert ("shapes val: 2 examples, 1 bad pair(s) (training and evaluation would stop at the "
            "first; fix or remove them):\n  mask '") in out
    assert "Skipping" not in caplog.text


# ------------------------------------------------------------------------ tools/export.py --

def test_export_check_names_the_runs_of_each_median():
    with tool("export", "--model=m.keras", "--output_dir=out") as export:
        assert export.timing_note(2, 2) == "2 threads, median of 2 runs"
        assert export.timing_note(4, 10) == ("4 threads, median of 10 runs (Keras float model: "
                                             "3, the slowest)")
