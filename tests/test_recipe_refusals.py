"""What examples/train.py refuses before it trains, and what a run that fails leaves behind:
--tensorboard without TensorFlow and --jit_compile on PyTorch are refused up front (one
``error:`` line, status 2, no run folder); a run that fails before an epoch ends removes the
folder it made, never a user's; --dropout= and the other unset numbers parse; a --resume with a
new constant --learning_rate trains at it; a missing matplotlib skips curves.png only."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from kill_callbacks import Epochs, Killed
from tiny import tiny_fcn
from keras_fcn import io
from keras_fcn import training as train
from keras_fcn.datasets import shapes
from keras_fcn.training import checks, run_dir as run_dir_lib
from keras_fcn.training.config import TrainConfig, config_from_flags, define_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num_train=4", "--num_val=2", "--epochs=1", "--batch_size=2", "--shapes_size=32",
        "--widths=4,4,8,8,8", "--fc_units=8", "--verbose=2"]
TENSORBOARD_ERROR = (
    "error: --tensorboard writes its logs with TensorFlow's summary writer "
    "(keras.callbacks.TensorBoard), and TensorFlow is not installed: install it, or leave "
    "--tensorboard off (history.json and curves.png hold the same curves). Received: "
    "tensorboard=True")


def _train_py(args, backend="torch", block=("tensorflow",)):
    """examples/train.py in a subprocess on `backend`, with the modules `block` unimportable."""
    code = ("import runpy, sys; sys.modules.update(dict.fromkeys(sys.argv[1].split(','))); "
            "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    env = dict(os.environ, KERAS_BACKEND=backend,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("KERAS_FCN_JIT", None)
    return subprocess.run([sys.executable, "-c", code, ",".join(block),
                           os.path.join(ROOT, "examples", "train.py"), *TINY, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


# ------------------------------------------------ refused up front (bugs 3, 4, 5) ----
def test_tensorboard_without_tensorflow_is_refused_before_a_folder_is_made(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "tb"
    result = _train_py(["--tensorboard", f"--output_dir={out}"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert _error_lines(result) == [TENSORBOARD_ERROR]
    assert not out.exists()


def test_jit_compile_on_torch_is_refused_and_a_failed_run_leaves_no_folder(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "jit"
    result = _train_py(["--jit_compile", f"--output_dir={out}"])
    assert result.returncode == 2, result.stderr[-3000:]
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(
        "error: --jit_compile is not supported on the PyTorch backend: it wraps the Keras "
        "train step in torch.compile"), lines
    assert "leave --jit_compile off" in lines[0] and "docs/gpu.md" in lines[0]
    assert lines[0].endswith("Received: jit_compile=True, backend='torch'")
    assert not out.exists()
    # A bad mask id is found only once the data is read, after config.json is written: the
    # folder this run made is removed, and the corrected command runs as given.
    data = tmp_path / "data"
    shapes.make_shapes_dataset(str(data), num_train=4, num_val=2, size=32, seed=0)
    masks = data / "train" / "masks"
    first = sorted(masks.iterdir())[0]
    from PIL import Image

    mask = np.array(Image.open(first))
    mask[5, 7] = 9
    Image.fromarray(mask).save(first)
    bad = _train_py(["--dataset=folder", f"--data_dir={data}", "--num_classes=4",
                     f"--output_dir={out}"])
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert _error_lines(bad)[-1].startswith(f"error: mask '{first}' has value 9 at (5, 7)")
    assert not out.exists()


def test_a_failed_run_removes_only_what_it_wrote(tmp_path, monkeypatch):
    """In-process (TensorFlow): a photometric strength out of range is refused before the
    folder is made; a failure after config.json is written (a model the backbone refuses at
    build time) removes config.json but keeps a folder that existed (empty) before, and a
    folder holding a user's file is never touched."""
    config = TrainConfig().replace(dataset="shapes", num_train=4, num_val=2, shapes_size=32,
                                   epochs=1, batch_size=2, widths=(4, 4, 8, 8, 8), fc_units=8,
                                   verbose=0, export=False)
    out = tmp_path / "p"
    with pytest.raises(ValueError, match=r"photometric=2\.0"):
        train.run(config.replace(photometric=2.0, output_dir=str(out)))
    assert not out.exists()

    seen = []

    def fail(*args, **kwargs):
        seen.append(sorted(os.listdir(out)) if out.exists() else None)
        raise RuntimeError("failed while building")

    monkeypatch.setattr("keras_fcn.training.recipe.build_model", fail)
    with pytest.raises(RuntimeError, match="failed while building"):
        train.run(config.replace(output_dir=str(out)))
    assert seen == [[io.LOCK_FILE, "config.json"]]  # the folder was made, config.json written
    assert not out.exists()
    out.mkdir()  # the user's empty folder stays, empty
    with pytest.raises(RuntimeError):
        train.run(config.replace(output_dir=str(out)))
    assert out.is_dir() and sorted(os.listdir(out)) == []
    staged = tmp_path / "staged"
    with pytest.raises(RuntimeError):  # the stage folder fcn32s/ made by the run goes too
        train.run(config.replace(model="staged", output_dir=str(staged)))
    assert not staged.exists()


def test_remove_setup_files_keeps_any_folder_with_results_or_other_files(tmp_path):
    for extra in ("history.json", "notes.txt", os.path.join("backup", "x"),
                  os.path.join("fcn32s", "history.json")):
        folder = tmp_path / extra.replace(os.sep, "_")
        (folder / os.path.dirname(extra) if os.path.dirname(extra) else folder).mkdir(
            parents=True)
        for name in ("config.json", "labels.json", extra):
            (folder / name).write_text("{}")
        assert run_dir_lib.remove_setup_files(str(folder)) is False
        assert (folder / "config.json").is_file() and (folder / extra).is_file()
    folder = tmp_path / "setup"
    (folder / "fcn32s").mkdir(parents=True)
    for name in ("config.json", "class_weights.json", os.path.join("fcn32s", "labels.json"),
                 io.LOCK_FILE):
        (folder / name).write_text("{}")
    assert run_dir_lib.remove_setup_files(str(folder)) is True
    assert sorted(os.listdir(folder)) == [io.LOCK_FILE]  # the lock is its holder's to remove
    assert run_dir_lib.is_fresh(str(folder)) and run_dir_lib.is_fresh(str(tmp_path / "no"))
    assert not run_dir_lib.is_fresh(str(tmp_path / "notes.txt"))


def test_check_run_options_names_the_flag_and_the_environment_switch():
    jit = TrainConfig().replace(jit_compile=True)
    with pytest.raises(ValueError, match=r"^--jit_compile is not supported on the PyTorch"):
        checks.check_run_options(jit, backend="torch", environ={})
    with pytest.raises(ValueError, match=r"^KERAS_FCN_JIT=1 is not supported on the PyTorch"):
        checks.check_run_options(TrainConfig(), backend="torch", environ={"KERAS_FCN_JIT": "1"})
    # --nojit_compile wins over the environment; JAX and TensorFlow compile with XLA
    checks.check_run_options(TrainConfig().replace(jit_compile=False), backend="torch",
                             environ={"KERAS_FCN_JIT": "1"})
    for backend in ("jax", "tensorflow"):
        checks.check_run_options(jit, backend=backend, environ={})
    # Keras' numpy backend trains nothing: it failed after the run had started
    with pytest.raises(ValueError, match=r"^Training needs Keras' tensorflow, jax, torch "
                                         r"backend\. Received: KERAS_BACKEND='numpy'"):
        checks.check_run_options(TrainConfig(), backend="numpy", environ={})
    # compile_model's own jit_compile=True on PyTorch: the first step crashed in dynamo
    with pytest.raises(ValueError, match=r"^jit_compile=True is not supported on the PyTorch "
                                         r".*leave jit_compile off"):
        checks.check_torch_jit(True, "jit_compile=True", backend="torch")
    tensorboard = TrainConfig().replace(tensorboard=True)
    with pytest.raises(ValueError) as error:
        checks.check_run_options(tensorboard, backend="jax", has_tensorflow=False, environ={})
    assert "error: " + str(error.value) == TENSORBOARD_ERROR
    checks.check_run_options(tensorboard, backend="jax", has_tensorflow=True,
                             has_tensorboard=True, environ={})
    # TensorFlow without the tensorboard package: tf.summary failed at the first log, mid-run
    with pytest.raises(ValueError, match=r"^--tensorboard needs the tensorboard package "
                                         r"\(tensorflow.summary writes nothing without it"):
        checks.check_run_options(tensorboard, backend="tensorflow", has_tensorflow=True,
                                 has_tensorboard=False, environ={})


# ------------------------------------------------ unset numbers (bug 7) ----
@pytest.mark.parametrize("args, expected", [
    (["--dropout="], {"dropout": None}),
    (["--dropout=none"], {"dropout": None}),
    (["--dropout=None"], {"dropout": None}),
    (["--dropout=0"], {"dropout": 0.0}),  # no dropout (dropout alone keeps a given 0)
    (["--dropout=0.3"], {"dropout": 0.3}),
    ([], {"dropout": 0.1, "fc_units": 64, "learning_rate": 3e-3}),  # the script's defaults
    (["--learning_rate=", "--fc_units=none", "--max_minutes_per_stage=", "--num_classes=",
      "--steps_per_epoch=none", "--validation_steps="],
     {"learning_rate": None, "fc_units": None, "max_minutes_per_stage": None,
      "num_classes": None, "steps_per_epoch": None, "validation_steps": None}),
    (["--learning_rate=0", "--fc_units=0", "--max_minutes_per_stage=0"],
     {"learning_rate": None, "fc_units": None, "max_minutes_per_stage": None}),
    (["--max_minutes_per_stage=1.5", "--fc_units=16"],
     {"max_minutes_per_stage": 1.5, "fc_units": 16}),
])
def test_empty_and_none_unset_the_number_flags(args, expected):
    values = flags.FlagValues()
    define_flags(values, dropout=0.1, fc_units=64, learning_rate=3e-3)
    values(["train.py", *args])
    flat = config_from_flags(values).flat()
    assert {name: flat[name] for name in expected} == expected


def test_a_bad_number_is_still_refused_naming_the_flag():
    values = flags.FlagValues()
    define_flags(values)
    with pytest.raises(flags.IllegalFlagValueError, match=r"--dropout=abc"):
        values(["train.py", "--dropout=abc"])


def test_dropout_empty_reaches_the_trunk_default_on_the_command_line(tmp_path):
    """examples/train.py --dropout= trains (it exited 1: "could not convert string to
    float: ''") with the trunk's dropout, 0.5 (the script's own default is 0.1)."""
    pytest.importorskip("torch")
    result = _train_py(["--dropout=", "--epochs=0", f"--output_dir={tmp_path / 'd'}",
                        "--noexport"])
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "d" / "config.json").read_text())["flags"]
    assert config["dropout"] is None
    model = keras.models.load_model(str(tmp_path / "d" / "model.keras"), compile=False)
    rates = [layer.rate for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.5, 0.5]  # after fc6 and fc7


# ------------------------------------------------ resume with a new rate (bug 2) ----
def _fit(model, run_dir, epochs_run, epochs=2):
    images, masks = shapes.shapes_arrays(4, size=32, seed=0)
    ds = tf.data.Dataset.from_tensor_slices((images.astype("float32"), masks.astype("int32")))
    return train.fit(model, ds.batch(2).repeat(), ds.batch(2), run_dir=run_dir, epochs=epochs,
                     info=shapes.SHAPES_INFO, steps_per_epoch=2, verbose=0,
                     callbacks=[epochs_run])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_resume_trains_at_its_new_constant_learning_rate(tmp_path, optimizer):
    run_dir = str(tmp_path / "run")

    def compiled(rate):
        model = tiny_fcn("32s", 4, include_preprocessing=True)
        train.compile_model(model, num_classes=4, ignore_label=255,
                            optimizer=train.make_optimizer(optimizer, rate))
        return model

    with pytest.raises(Killed):
        _fit(compiled(3e-3), run_dir, Epochs(kill_at=2))
    model, resumed = compiled(1e-4), Epochs()
    report = _fit(model, run_dir, resumed)
    assert resumed.epochs == [2]  # the backup was restored (epoch 1 is not trained again)
    assert int(model.optimizer.iterations) == 4  # its 2 steps, then 2 more
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4, rel=1e-6)  # was 3e-3
    rates = [entry["learning_rate"] for entry in report["history"]]
    assert rates == pytest.approx([3e-3, 1e-4], rel=1e-6)
    history = io.read_json(os.path.join(run_dir, "history.json"))
    assert [entry["learning_rate"] for entry in history] == pytest.approx([3e-3, 1e-4],
                                                                          rel=1e-6)


# ------------------------------------------------ no matplotlib (bug 8) ----
def test_a_run_without_matplotlib_ends_with_its_results_and_a_note(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    run_dir = str(tmp_path / "run")
    model = tiny_fcn("32s", 4, include_preprocessing=True)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-3))
    report = _fit(model, run_dir, Epochs(), epochs=1)
    assert report["status"] == "completed"
    assert sorted(os.listdir(run_dir)) == ["best.keras", "best_state.json", "history.json",
                                           "labels.json", "metrics.json", "model.keras"]
    out = capsys.readouterr().out
    assert ("note: curves.png not drawn: matplotlib is not installed (pip install matplotlib); "
            "history.json holds the same curves.\n") in out
    assert run_dir_lib.plot_curves([{"epoch": 1, "loss": 1.0}], str(tmp_path / "c.png")) is None
    assert not (tmp_path / "c.png").exists()


def test_a_note_says_jax_compiles_the_train_step_per_image_size():
    """On JAX a pipeline of images of their own sizes compiled the train step once per size,
    silently (6 s a step against 1 s on TensorFlow for a tiny model); the recipe now says so."""
    import tensorflow as tf

    native = tf.data.Dataset.from_generator(lambda: iter(()), output_signature=(
        tf.TensorSpec((1, None, None, 3)), tf.TensorSpec((1, None, None))))
    fixed = tf.data.Dataset.from_tensors((tf.zeros((1, 20, 30, 3)), tf.zeros((1, 20, 30))))
    config = TrainConfig()
    note = checks.size_compile_note(config, native, True, backend="jax")
    assert note.startswith("Note: the training images keep their own sizes, and on JAX XLA "
                           "compiles the train step again for every new size")
    assert checks.size_compile_note(config, fixed, True, backend="jax") is None
    assert checks.size_compile_note(config, native, False, backend="jax") is None
    assert checks.size_compile_note(config, native, True, backend="tensorflow") is None
    folder = config.replace(dataset="folder")  # a PyDataset: the flags say it
    assert checks.size_compile_note(folder, None, True, backend="jax") == note
    assert checks.size_compile_note(folder.replace(crop_size=(32, 32)), None, True,
                                    backend="jax") is None
