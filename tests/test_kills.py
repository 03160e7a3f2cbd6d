"""Kills (issue 26, item 3): a run stopped between any two of its epoch-end writes, or SIGKILLed
at seeded random moments of training, tools/export.py and tools/predict.py, resumes with every
epoch counted once and never leaves a partial file under a name a user would take."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from test_train import _EpochsRun
from tiny import tiny_fcn
from keras_fcn import training as train
from keras_fcn.datasets import shapes as synthetic
from keras_fcn.training import callbacks as callbacks_lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TINY_FLAGS = ["--widths=4,4,8,8,8", "--fc_units=8", "--num_train=16", "--num_val=4",
              "--shapes_size=32", "--batch_size=8", "--optimizer=adam", "--learning_rate=1e-2",
              "--dropout=0"]


class _Killed(BaseException):
    """Stands for SIGKILL in the process: nothing after it runs (BaseException: no
    `except Exception` catches it)."""


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _history(run_dir):
    try:
        with open(os.path.join(run_dir, "history.json")) as f:
            return [e["epoch"] for e in json.load(f)]
    except (OSError, ValueError):
        return []


def _compiled_model():
    model = tiny_fcn("32s", 4, include_preprocessing=True)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-2))
    return model


def _shapes_data():
    images, masks = synthetic.shapes_arrays(8, size=32, seed=0)
    images, masks = images.astype("float32"), masks.astype("int32")
    train_ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4).repeat()
    val_ds = tf.data.Dataset.from_tensor_slices((images[:4], masks[:4])).batch(4)
    return train_ds, val_ds


# The epoch-end writes of a run, in the order they happen: (callback class, method).
EPOCH_END_WRITES = [
    (callbacks_lib.BestCheckpoint, "on_epoch_end"),
    (callbacks_lib.HistoryWriter, "on_epoch_end"),
    (callbacks_lib.SafeBackupAndRestore, "_save_model"),
]


def test_a_kill_between_any_two_epoch_end_writes_loses_no_epoch(tmp_path, monkeypatch):
    """Regression (issue 26): the backup was written before best.keras and history.json, so a
    kill between them resumed after that epoch while history.json lacked it: epochs [1, 3]."""
    model = _compiled_model()
    train_ds, val_ds = _shapes_data()
    common = dict(epochs=3, info=synthetic.SHAPES_INFO, steps_per_epoch=2, verbose=0)
    cases = []
    for index, (cls, method) in enumerate(EPOCH_END_WRITES):
        for when in ("before", "after"):
            original = getattr(cls, method)

            def killing(self, *args, _original=original, _when=when, **kwargs):
                # on_epoch_end(epoch), or _save_model() after _current_epoch = epoch + 1
                epoch = args[0] if args else self._current_epoch - 1
                if epoch == 1 and _when == "before":
                    raise _Killed()
                _original(self, *args, **kwargs)
                if epoch == 1:
                    raise _Killed()

            run_dir = str(tmp_path / f"{index}_{when}")
            with monkeypatch.context() as patch:
                patch.setattr(cls, method, killing)
                with pytest.raises(_Killed):
                    train.fit(model, train_ds, val_ds, run_dir=run_dir, **common)
            killed = _history(run_dir)
            report = train.fit(model, train_ds, val_ds, run_dir=run_dir, **common)
            epochs = [e["epoch"] for e in report["history"]]
            cases.append((cls.__name__, when, killed, epochs))
            assert report["status"] == "completed"
            assert epochs == [1, 2, 3] and _history(run_dir) == [1, 2, 3], cases[-1]
            # best.keras holds the best epoch of the history, or a better one a kill kept
            best = max(e["val_mean_iu"] for e in report["history"])
            assert report["best"]["value"] >= best
    print("kill points (callback, when, history at the kill, after resume):", cases)
    assert len(cases) == 6


def test_a_kill_between_the_backups_weights_and_its_epoch_file_trains_no_epoch_twice(
        tmp_path, monkeypatch, eager_tf):
    """The backup is two files renamed one after the other: latest.weights.h5, then
    training_metadata.json. A kill between them left epoch 2's weights with epoch 1's metadata;
    the resume ran epoch 2 again on epoch 2's weights. The weights now carry their epoch.
    TensorFlow's functions run eagerly (`eager_tf`): 2 s against 6 s traced, the file writes
    the same (the test above, 12 fits of one model, is faster traced)."""
    model = _compiled_model()
    train_ds, val_ds = _shapes_data()
    run_dir = str(tmp_path / "run")
    common = dict(run_dir=run_dir, epochs=3, info=synthetic.SHAPES_INFO, steps_per_epoch=2,
                  verbose=0)
    write_json = callbacks_lib.io.write_json

    def killed_before_metadata(path, obj, *args, **kwargs):
        if path.endswith("training_metadata.json") and obj["epoch"] == 2:
            raise _Killed()
        return write_json(path, obj, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(callbacks_lib.io, "write_json", killed_before_metadata)
        with pytest.raises(_Killed):
            train.fit(model, train_ds, val_ds, **common)
    metadata = os.path.join(run_dir, "backup", "training_metadata.json")
    assert json.load(open(metadata))["epoch"] == 1  # the weights are epoch 2's
    epochs_run = _EpochsRun()
    report = train.fit(model, train_ds, val_ds, callbacks=[epochs_run], **common)
    assert epochs_run.epochs == [3]  # not [2, 3]
    assert [e["epoch"] for e in report["history"]] == [1, 2, 3]


# ------------------------------------------------------------ SIGKILL ----


def _wait(process, ready, seconds=240):
    deadline = time.time() + seconds
    while time.time() < deadline and not ready() and process.poll() is None:
        time.sleep(0.02)


def _kill(process):
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _random_training_kills(tmp_path, kills, epochs, seed):
    """Trains `epochs` epochs on shapes, SIGKILLed `kills` times at seeded moments (k epochs
    done, then t seconds), then resumes to the end. Returns the kill log."""
    rng = np.random.default_rng(seed)
    run_dir = str(tmp_path / "run")
    command = [sys.executable, os.path.join(REPO, "examples", "train.py"), *TINY_FLAGS,
               f"--epochs={epochs}", "--export=false", f"--output_dir={run_dir}"]
    targets = sorted(int(k) for k in rng.integers(0, epochs - 1, size=kills))
    log = []
    for attempt, target in enumerate(targets):
        process = subprocess.Popen(command + (["--resume"] if attempt else []),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=_env(), start_new_session=True)
        _wait(process, lambda: len(_history(run_dir)) >= target)
        time.sleep(float(rng.uniform(0.0, 0.5)))
        if process.poll() is not None:  # it finished first: nothing to kill this time
            log.append((target, None, _history(run_dir)))
            continue
        _kill(process)
        log.append((target, "killed", _history(run_dir)))
        history = _history(run_dir)
        assert history == list(range(1, len(history) + 1)), log  # never a gap or a repeat
        best = os.path.join(run_dir, "best.keras")
        if os.path.exists(best):
            assert keras.models.load_model(best, compile=False).output_shape[-1] == 4
    finished = subprocess.run(command + ["--resume"], capture_output=True, text=True,
                              env=_env(), timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert _history(run_dir) == list(range(1, epochs + 1)), log
    with open(os.path.join(run_dir, "metrics.json")) as f:
        assert json.load(f)["status"] == "completed"
    leftovers = [n for _, _, names in os.walk(run_dir) for n in names if n.startswith(".")]
    assert not leftovers, leftovers
    print(f"training kills (target epochs done, killed, history): {log}")
    return log


@pytest.mark.slow
def test_ten_random_sigkills_of_training_resume_with_every_epoch_once(tmp_path):
    log = _random_training_kills(tmp_path, kills=10, epochs=12, seed=26)
    assert sum(1 for _, killed, _ in log if killed) >= 8


@pytest.mark.slow  # ~30 s; test_train's random kills and kill-and-resume run by default
def test_two_random_sigkills_of_training_resume_with_every_epoch_once(tmp_path):
    """The fast variant of the ten kills above."""
    log = _random_training_kills(tmp_path, kills=2, epochs=5, seed=3)
    assert any(killed for _, killed, _ in log)


def _visible_files(folder):
    return sorted(os.path.relpath(os.path.join(root, n), folder)
                  for root, dirs, names in os.walk(folder) for n in names
                  if not n.startswith(".") and not any(p.startswith(".") for p in
                                                       os.path.relpath(root, folder).split(os.sep)
                                                       if p != "."))


def _kill_tool_runs(command, out_dir, rng, kills, check):
    """Runs `command` once in full, timing its work after the output folder appears (the lock
    is taken then), then `kills` times SIGKILLed at a seeded moment of that span, and calls
    `check(path)` on every output file in place after each kill. Returns the number of runs
    killed while alive."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=_env(), start_new_session=True)
    _wait(process, lambda: os.path.isdir(out_dir))
    start = time.time()
    assert process.wait(timeout=300) == 0, process.stderr.read()[-2000:]
    seconds = time.time() - start
    log = []
    for _ in range(kills):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=_env(),
                                   start_new_session=True)
        _wait(process, lambda: os.path.isdir(out_dir) and os.path.exists(
            os.path.join(out_dir, ".keras_fcn.lock")))
        time.sleep(float(rng.uniform(0.0, seconds)))
        killed = process.poll() is None
        if killed:
            _kill(process)
        names = _visible_files(out_dir) if os.path.isdir(out_dir) else []
        for name in names:
            check(os.path.join(out_dir, name))
        log.append((killed, len(names)))
    print(f"kills of {os.path.basename(command[1])} in {seconds:.1f} s of work (killed, "
          f"complete outputs): {log}")
    return sum(killed for killed, _ in log)


def _tiny_model_file(tmp_path):
    path = str(tmp_path / "tiny.keras")
    tiny_fcn("32s", 3).save(path)
    return path


# ~80 s in the suite on a slow 2-core AMD EPYC: slow. By default a failed export keeps the
# previous one (tests/test_reliability_disk.py, a full disk at each write) and two exports at
# once leave one complete export (tests/test_locks.py).
@pytest.mark.slow
def test_random_sigkills_of_export_leave_only_complete_exports(tmp_path):
    out = str(tmp_path / "export")
    command = [sys.executable, os.path.join(REPO, "tools", "export.py"),
               f"--model={_tiny_model_file(tmp_path)}", f"--output_dir={out}",
               "--input_size=32x32", "--quantizations=float32,float16", "--overwrite"]

    def check(path):
        if path.endswith(".tflite"):
            interpreter = tf.lite.Interpreter(model_path=path)
            interpreter.allocate_tensors()
            assert interpreter.get_input_details()[0]["shape"].tolist() == [1, 32, 32, 3]
        elif path.endswith("saved_model.pb"):  # in place only when complete
            folder = os.path.dirname(path)
            assert tf.saved_model.load(folder).signatures["serving_default"] is not None

    rng = np.random.default_rng(26)
    assert _kill_tool_runs(command, out, rng, kills=3, check=check) >= 1
    # and a run after the kills completes: the lock and temporary names of the killed ones
    # do not stop it
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fcn32s_float32.tflite" in _visible_files(out)


def test_random_sigkills_of_predict_leave_only_complete_outputs(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(26)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            images / f"im{i:02d}.png")
    out = str(tmp_path / "out")
    command = [sys.executable, os.path.join(REPO, "tools", "predict.py"),
               f"--model={_tiny_model_file(tmp_path)}", f"--output_dir={out}",
               "--uncertainty=entropy", "--overwrite", str(images)]

    def check(path):
        if path.endswith(".png"):
            with Image.open(path) as image:
                image.load()  # a cut PNG raises here
                assert image.size[1] == 48  # (maps with a legend are wider)
        elif path.endswith(".npy"):
            assert np.load(path).shape[:2] == (48, 64)

    assert _kill_tool_runs(command, out, rng, kills=3, check=check) >= 1
