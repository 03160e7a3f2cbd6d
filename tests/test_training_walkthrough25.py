"""The own-data training walkthrough of 2026-12-07 (session 25), each test failing on the code
before its fix:

- `--resume` with another `--data_dir` trained on on other images, best.keras chosen across
  two validation sets; `--resume` with another loss or augmentation (`--class_weights`,
  `--label_smoothing`, `--flip`) said nothing and rewrote config.json as if the first
  epochs had used them;
- SIGTERM (what `kill` and job schedulers send) ended a script with no word and left the run
  folder's lock behind;
- `datasets.check` left a split it could not check out of its result (as if it were not
  there), so code reading the result judged the data good;
- `--class_weights=/nope.json` was told it "must be 'none', 'median', 'sqrt_median' or a
  file" rather than that the file is missing.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from keras_fcn import datasets, io
from keras_fcn.training import TrainConfig, recipe
from keras_fcn.training.inputs import resolve_class_weights
from keras_fcn.training.run_config import write_run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _resume(run_dir, first, **changes):
    write_run_config(str(run_dir), first.flat())
    return write_run_config(str(run_dir), first.replace(**changes).flat(), resume=True,
                            compare=recipe.RESUME_FLAGS, replan=recipe.SCHEDULE_FLAGS)


@pytest.mark.parametrize("flag, stored, given", [
    ("data_dir", "data/big", "data/pal"), ("val_data_dir", "voc", "voc2"),
    ("num_val", 50, 20), ("num_train", 300, 100), ("shapes_size", 64, 32)])
def test_a_resume_on_other_images_is_refused(tmp_path, flag, stored, given):
    first = TrainConfig().replace(**{flag: stored})
    with pytest.raises(ValueError) as error:
        _resume(tmp_path, first, **{flag: given})
    assert str(error.value).startswith(
        f"The run in '{tmp_path}' was trained with --{flag}={stored}; --resume got "
        f"--{flag}={given}.")
    assert json.loads((tmp_path / "config.json").read_text())["flags"][flag] == stored


def test_a_resume_with_another_loss_or_augmentation_says_so_and_records_it(tmp_path, capsys):
    first = TrainConfig().replace(class_weights="none", label_smoothing=0.0, flip=True)
    _resume(tmp_path, first, class_weights="median", label_smoothing=0.1, flip=False,
            verbose=0, tensorboard=True, epochs=first.optim.epochs + 5)
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split(":")[0] for line in lines) == sorted([
        "--resume changes --class_weights=none to median",
        "--resume changes --label_smoothing=0.0 to 0.1",
        "--resume changes --flip=true to false",
        f"--resume changes --epochs={first.optim.epochs} to {first.optim.epochs + 5}"])
    assert all("records the change under resume_changes" in line
               for line in lines if "--epochs" not in line)
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["flags"]["class_weights"] == "median"  # the latest start's flags
    assert {(c["flag"], c["was"], c["now"]) for c in record["resume_changes"]} == {
        ("class_weights", "none", "median"), ("label_smoothing", 0.0, 0.1),
        ("flip", True, False), ("epochs", first.optim.epochs, first.optim.epochs + 5)}
    # a second resume appends, and one without changes keeps the record
    second = first.replace(class_weights="median", label_smoothing=0.1, flip=False,
                           epochs=first.optim.epochs + 5)
    write_run_config(str(tmp_path), second.replace(dropout=0.3).flat(), resume=True,
                     compare=recipe.RESUME_FLAGS, replan=recipe.SCHEDULE_FLAGS)
    write_run_config(str(tmp_path), second.replace(dropout=0.3).flat(), resume=True,
                     compare=recipe.RESUME_FLAGS, replan=recipe.SCHEDULE_FLAGS)
    changes = json.loads((tmp_path / "config.json").read_text())["resume_changes"]
    assert len(changes) == 5 and changes[-1]["flag"] == "dropout"


def test_sigterm_unwinds_a_script_releases_its_lock_and_says_so(tmp_path):
    folder = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, time
        from keras_fcn import io
        from keras_fcn.training.cli import run_main

        def main(argv):
            with io.directory_lock({str(folder)!r}, "training"):
                open(os.path.join({str(folder)!r}, "written.txt"), "w").close()
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
            raise AssertionError("SIGTERM did not unwind main")

        if __name__ == "__main__":
            run_main(main)
        """)
    (tmp_path / "script.py").write_text(script)
    done = subprocess.run([sys.executable, str(tmp_path / "script.py")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        "terminated (SIGTERM): every output written so far is complete; run the command "
        "again to go on (a training run: with --resume)")
    assert sorted(os.listdir(folder)) == ["written.txt"]  # no lock left behind
    assert not io.holds_lock(str(folder))


def _folder_split(root, split, stems, mask_suffix=".png"):
    for sub in ("images", "masks"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(root / split / "images" / f"{stem}.png")
        mask = Image.fromarray(np.array([[0, 1, 0, 1, 0, 0]] * 4, np.uint8))
        mask.save(root / split / "masks" / f"{stem}{mask_suffix}", quality=100)


def test_check_keeps_a_split_it_could_not_check_in_its_result(tmp_path, capsys):
    _folder_split(tmp_path, "train", ["a", "b"], mask_suffix=".jpg")  # a lossy mask format
    _folder_split(tmp_path, "val", ["c"])
    reports = datasets.check("folder", tmp_path, num_classes=2)
    out = capsys.readouterr().out
    assert "folder train: not checked: " in out and "folder val: 1 examples, all good" in out
    assert set(reports) == {"train", "val"}
    assert reports["train"].good == [] and reports["train"].num_bad == 0
    assert len(reports["train"].problems) == 1
    assert reports["train"].problems[0].startswith("not checked: ")
    assert reports["val"].problems == []
    # a split asked for by name and missing is reported too; CamVid's optional test split,
    # absent from a default check, is skipped as before
    assert datasets.check("folder", tmp_path, ["test"], num_classes=2)["test"].problems


def test_a_missing_class_weights_file_is_named_as_missing(tmp_path):
    config = TrainConfig().replace(class_weights=str(tmp_path / "nope.json"))
    with pytest.raises(FileNotFoundError, match=r"--class_weights='.*nope.json': no such file "
                                                r"\(expected 'none', 'median'"):
        resolve_class_weights(config, None, None, str(tmp_path))
    with pytest.raises(ValueError, match="is a folder"):
        resolve_class_weights(config.replace(class_weights=str(tmp_path)), None, None,
                              str(tmp_path))
    with pytest.raises(ValueError, match="must be 'none', 'median', 'sqrt_median' or a file"):
        resolve_class_weights(config.replace(class_weights="meidan"), None, None, str(tmp_path))


def test_a_palette_shorter_than_the_classes_is_named(tmp_path):
    """make_dataset(mask_format="rgb", palette=<2 colours>, num_classes=3) named the first
    mask colour of class 2 as unknown, not the palette's length."""
    from keras_fcn import data

    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 255, 255)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    Image.fromarray(rgb).save(tmp_path / "i.png")
    pairs = [(str(tmp_path / "i.png"), str(tmp_path / "m.png"))]
    palette = [(0, 0, 0), (200, 30, 30)]
    expected = r"The palette has 2 colour\(s\) for num_classes=3: class ids 2..2 have none"
    for build in (data.make_dataset, data.validate_pairs, data.make_pydataset):
        with pytest.raises(ValueError, match=expected):
            build(pairs, num_classes=3, mask_format="rgb", palette=palette)
    # one colour per class is taken
    report = data.validate_pairs(pairs, num_classes=3, mask_format="rgb",
                                 palette=palette + [(255, 255, 255)])
    assert report.num_bad == 0 and len(report.good) == 1
