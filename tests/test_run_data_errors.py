"""A new user's walkthrough (2026-12-06): a corrupt image in a folder data set stopped
examples/train.py with ``error: <stack traces unavailable>`` and tools/evaluate.py with
``error: reading the data: Invalid PNG data, size 141655``, naming no file; a --resume that
left out --image_size trained the rest of the run at full size and rewrote its record; a
--resume of a complete run exported its TFLite model again, over the finished one."""


import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tiny import file_digests
from tool_flags import run_in_process
from keras_fcn.datasets import loader
from keras_fcn.training import cli, recipe
from keras_fcn.training.config import TrainConfig



def _folder(root, count=4, size=32, broken=(), split="train"):
    """A `folder` data set of `count` random 3-class pairs; the images named in `broken` are
    cut to a third (a truncated download)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = root / split / "images" / f"f{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(image)
        Image.fromarray(rng.integers(0, 3, (size, size), np.uint8)).save(
            root / split / "masks" / f"f{i}.png")
        if image.name in broken:
            data = image.read_bytes()
            image.write_bytes(data[:len(data) // 3])
    return root


def _pipeline_error(pairs_root):
    decoded, _, _ = loader.load_split("folder", "train", data_dir=str(pairs_root),
                                      num_classes=3)
    with pytest.raises(tf.errors.OpError) as error:
        for _ in decoded:
            pass
    return error.value


def test_a_truncated_image_stopping_the_pipeline_is_named(tmp_path):
    root = _folder(tmp_path / "data", broken=("f2.png",))
    error = _pipeline_error(root)
    assert "f2.png" not in error.message  # TensorFlow's own message names no file
    bad = root / "train" / "images" / "f2.png"
    message = cli.data_file_message(error)
    assert message == (f"image file '{bad}' cannot be decoded: Invalid PNG data, size "
                       f"{bad.stat().st_size}")
    assert cli.data_file_message(ValueError("x")) is None


def test_the_file_search_does_not_blame_good_files(tmp_path, monkeypatch):
    """An error the files did not cause (all of them decode) gets no file message."""
    monkeypatch.setattr(loader, "_READ_SPLITS", loader.collections.deque(maxlen=8))
    root = _folder(tmp_path / "data")
    loader.load_split("folder", "train", data_dir=str(root), num_classes=3)
    error = tf.errors.InvalidArgumentError(None, None, "Invalid PNG data, size 12")
    assert cli.data_file_message(error) is None
    _folder(root, broken=("f0.png",))  # now it decodes no more: only a decode error looks
    assert cli.data_file_message(tf.errors.UnknownError(None, None, "Out of range")) is None
    assert "f0.png' cannot be decoded" in cli.data_file_message(error)


def test_a_graph_errors_stack_placeholder_is_not_the_message():
    text = ("Graph execution error:\n\nDetected at node DecodeImage defined at (most recent "
            "call last):\n<stack traces unavailable>\nInvalid PNG data, size 92742\n\t "
            "[[{{node DecodeImage}}]] [Op:__inference_one_step_on_iterator_123]")
    error = tf.errors.InvalidArgumentError(None, None, text)
    assert cli.error_message(error) == "Invalid PNG data, size 92742"


def test_train_script_names_the_corrupt_image_and_leaves_no_folder(tmp_path):
    root = _folder(tmp_path / "data", broken=("f1.png",))
    _folder(root, count=2, split="val")
    out = tmp_path / "run"
    # in this process, as the script runs: run_main turns the data pipeline's error into the
    # line (tests/test_train.py runs the script in subprocesses)
    result = run_in_process(
        "examples/train.py", "--dataset=folder", f"--data_dir={root}", "--num_classes=3",
        "--epochs=1", "--batch_size=2", "--widths=4,4,8,8,8", "--fc_units=8", "--noexport",
        f"--output_dir={out}", "--verbose=2")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    bad = root / "train" / "images" / "f1.png"
    assert lines == [f"error: image file '{bad}' cannot be decoded: Invalid PNG data, size "
                     f"{bad.stat().st_size}"], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def _config(run_dir, **changes):
    from tiny import TINY_FC, TINY_WIDTHS

    flags = dict(
        dataset="shapes", model="fcn32s", widths=TINY_WIDTHS, fc_units=TINY_FC, dropout=0.0,
        epochs=1, steps_per_epoch=1, batch_size=2, num_train=2, num_val=1, shapes_size=32,
        optimizer="adam", learning_rate=1e-3, output_dir=str(run_dir), verbose=0,
        image_size=(24, 24), export=True)
    return TrainConfig().replace(**dict(flags, **changes))


def test_a_resume_keeps_the_runs_image_size_and_its_finished_export(tmp_path, capsys):
    run_dir = tmp_path / "run"
    recipe.run(_config(run_dir))
    before = file_digests(run_dir)
    assert "model_float16.tflite" in before
    with pytest.raises(ValueError) as error:  # --resume without --image_size
        recipe.run(_config(run_dir, resume=True, image_size=None))
    assert str(error.value) == (
        f"The run in '{run_dir}' was trained with --image_size=24,24; --resume got "
        "--image_size= (unset). Resume with the run's flags, or start a new run (another "
        "--output_dir).")
    capsys.readouterr()
    recipe.run(_config(run_dir, resume=True))  # complete: nothing trained, nothing exported
    assert "Kept the run's TFLite export" in capsys.readouterr().out
    after = file_digests(run_dir)
    assert {name: after[name] for name in ("model_float16.tflite", "model_float16.json",
                                           "model.keras")} == {
        name: before[name] for name in ("model_float16.tflite", "model_float16.json",
                                        "model.keras")}
