"""Two processes on one output directory (issue 26, item 2): the second is refused with the
folder and the holder's pid named, a killed holder's lock is taken over, nothing is
overwritten. Real processes; the holders are small Python scripts, so the tests are fast."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from keras_fcn import io
from keras_fcn.training import prepare_run_dir
from tool_flags import run_in_process

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# keras_fcn/io.py alone (numpy, no Keras: the package would import Keras and TensorFlow, ~4 s a
# process); the same file, so the same locks.
# keras_fcn.io alone, without the package's __init__ (which imports Keras and TensorFlow: ~4 s
# of CPU per lock process): an empty package module stands in, and io's own keras_fcn imports
# (disk_full) load from the real folder.
IMPORT_IO = textwrap.dedent(f"""
    import sys, types
    package = types.ModuleType("keras_fcn")
    package.__path__ = [{os.path.join(REPO, "keras_fcn")!r}]
    sys.modules["keras_fcn"] = package
    from keras_fcn import io
    assert "keras" not in sys.modules, "the lock process imported Keras"
""")
# Takes the lock of argv[1], says so, and waits to be killed.
HOLDER = IMPORT_IO + textwrap.dedent("""
    import sys, time
    print(io.lock_directory(sys.argv[1], "holder"), flush=True)
    time.sleep(120)
""")


def _env():
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture
def holder(tmp_path):
    """Starts a process that holds the lock of a folder; returns (process, folder)."""
    processes = []

    def start(folder):
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)],
                                   stdout=subprocess.PIPE, text=True, env=_env())
        assert process.stdout.readline().strip() == os.path.join(
            os.path.realpath(folder), io.LOCK_FILE)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_second_process_is_refused_naming_the_folder_and_the_holders_pid(tmp_path, holder):
    folder = tmp_path / "out"
    process = holder(folder)
    with pytest.raises(io.DirectoryLockedError) as error:
        io.lock_directory(folder)
    message = str(error.value)
    assert repr(os.path.realpath(folder)) in message and f"pid {process.pid} " in message
    assert isinstance(error.value, FileExistsError)  # a user error for the CLIs (exit 2)
    with pytest.raises(io.DirectoryLockedError):
        prepare_run_dir(str(folder), resume=True)
    with pytest.raises(io.DirectoryLockedError):  # --overwrite deletes nothing of a live run
        prepare_run_dir(str(folder), overwrite=True)
    assert os.listdir(folder) == [io.LOCK_FILE]


def test_a_killed_holders_stale_lock_is_taken_over(tmp_path, holder):
    folder = tmp_path / "out"
    process = holder(folder)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stale = json.loads((folder / io.LOCK_FILE).read_text())
    assert stale["pid"] == process.pid  # the killed process left its lock file
    with io.directory_lock(folder, "export") as path:
        info = json.loads(open(path).read())
        assert info["pid"] == os.getpid() and info["what"] == "export"
    assert not (folder / io.LOCK_FILE).exists()  # released: removed


def test_the_lock_is_reentrant_in_one_process_and_released_by_its_block(tmp_path):
    folder = tmp_path / "out"
    with io.directory_lock(folder):
        with io.directory_lock(folder):  # the same process: no error
            pass
        assert io.holds_lock(folder)  # the inner block does not release the outer lock
    assert not io.holds_lock(folder)
    with io.directory_lock(None) as nothing:
        assert nothing is None
    with io.directory_lock(tmp_path / "new"):  # a block that wrote nothing leaves no folder
        assert (tmp_path / "new" / io.LOCK_FILE).exists()
    assert not (tmp_path / "new").exists()


def test_prepare_run_dir_locks_and_a_refused_run_leaves_the_folder_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "history.json").write_text("[]")
    with pytest.raises(FileExistsError, match="--resume"):
        prepare_run_dir(str(run_dir))
    assert sorted(os.listdir(run_dir)) == ["history.json"]  # no lock file left behind
    prepare_run_dir(str(run_dir), overwrite=True)
    assert io.holds_lock(run_dir) and os.listdir(run_dir) == [io.LOCK_FILE]
    io.unlock_directory(run_dir)


def _cli(tool, *args):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "tools", tool), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(_env(), CUDA_VISIBLE_DEVICES=""))


def test_export_and_predict_refuse_a_folder_another_process_writes(tmp_path, holder):
    """Two exports, or a training and an export, at once: the second CLI exits 2 with one line
    naming the folder and the pid, and writes nothing."""
    from tiny import tiny_fcn

    model_path = str(tmp_path / "tiny.keras")
    tiny_fcn("32s", 3).save(model_path)
    folder = tmp_path / "out"
    process = holder(folder)
    image = tmp_path / "a.png"
    from PIL import Image
    Image.new("RGB", (32, 32)).save(image)
    # The CLIs run in this process, as the scripts run (the holder is the other process; the
    # test below runs export.py in two)
    export = run_in_process("tools/export.py", f"--model={model_path}", f"--output_dir={folder}",
                            "--input_size=32x32", "--quantizations=float32",
                            "--saved_model=false")
    predict = run_in_process("tools/predict.py", f"--model={model_path}",
                             f"--output_dir={folder}", str(image), positional=True)
    for cli in (export, predict):
        stderr = cli.stderr
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert cli.returncode == 2 and "Traceback" not in stderr, stderr[-2000:]
        assert len(errors) == 1 and f"pid {process.pid} " in errors[0], stderr[-2000:]
        assert str(os.path.realpath(folder)) in errors[0]
    assert os.listdir(folder) == [io.LOCK_FILE]  # nothing written beside the holder's lock


def test_two_exports_at_once_one_writes_the_other_is_refused(tmp_path):
    """The second starts once the first holds the lock: it is refused, by the lock while the
    first runs, or by the first's finished output (no --overwrite); the output is complete."""
    import tensorflow as tf
    from tiny import tiny_fcn

    model_path = str(tmp_path / "tiny.keras")
    tiny_fcn("32s", 3).save(model_path)
    folder = tmp_path / "out"
    args = (f"--model={model_path}", f"--output_dir={folder}", "--input_size=32x32",
            "--quantizations=float32", "--saved_model=false")
    first = _cli("export.py", *args)
    deadline = time.time() + 240
    while not (folder / io.LOCK_FILE).exists() and time.time() < deadline:
        time.sleep(0.01)
    second = _cli("export.py", *args)
    _, first_err = first.communicate(timeout=240)
    _, second_err = second.communicate(timeout=240)
    assert first.returncode == 0, first_err[-2000:]
    assert second.returncode == 2 and "Traceback" not in second_err, second_err[-2000:]
    assert "is in use by another process" in second_err or "--overwrite" in second_err
    print("second export:", [line for line in second_err.splitlines() if "error" in line])
    assert sorted(os.listdir(folder)) == ["fcn32s_float32.json", "fcn32s_float32.tflite"]
    tf.lite.Interpreter(model_path=str(folder / "fcn32s_float32.tflite")).allocate_tensors()


# ------------------------------------------------ in-process training (a notebook) ----

# Tries the lock of argv[1] once and says what happened.
LOCKER = IMPORT_IO + textwrap.dedent("""
    import sys
    try:
        io.lock_directory(sys.argv[1], "other")
        print("locked")
    except io.DirectoryLockedError as error:
        print("refused:", error)
""")


def _other_process_locks(folder):
    """'locked', or 'refused: <message>', from a new process asking for ``folder``'s lock."""
    result = subprocess.run([sys.executable, "-c", LOCKER, str(folder)], capture_output=True,
                            text=True, env=_env(), timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def _tiny_config(run_dir, **changes):
    from tiny import TINY_FC, TINY_WIDTHS
    from keras_fcn.training import TrainConfig

    return TrainConfig().replace(
        dataset="shapes", model="fcn32s", widths=TINY_WIDTHS, fc_units=TINY_FC, dropout=0.0,
        epochs=1, steps_per_epoch=1, batch_size=2, num_train=2, num_val=1, shapes_size=32,
        optimizer="adam", learning_rate=1e-3, output_dir=str(run_dir), verbose=0, **changes)


def test_in_process_training_holds_the_lock_while_it_trains_and_releases_it(tmp_path,
                                                                            monkeypatch):
    """A notebook trains, trains again with --resume, exports into the run folder; another
    process is refused while the training runs and takes the folder once it returned."""
    from keras_fcn.training import recipe

    run_dir = tmp_path / "run"
    during, fit = [], recipe.fit

    def fit_and_ask(*args, **kwargs):
        during.append((io.holds_lock(run_dir), _other_process_locks(run_dir)))
        return fit(*args, **kwargs)

    monkeypatch.setattr(recipe, "fit", fit_and_ask)
    result = recipe.run(_tiny_config(run_dir))
    assert result["reports"]["32s"]["status"] == "completed"
    (held, other), = during
    assert held and other.startswith("refused: ") and f"pid {os.getpid()} " in other
    assert not io.holds_lock(run_dir) and not (run_dir / io.LOCK_FILE).exists()
    # the same process runs it again with --resume (complete: nothing to train), not refused ...
    monkeypatch.setattr(recipe, "fit", fit)
    again = recipe.run(_tiny_config(run_dir, resume=True))
    assert again["reports"]["32s"]["status"] == "completed" and not io.holds_lock(run_dir)
    # ... exports into the run folder as tools/export.py does (its lock, then the files) ...
    import keras

    model = keras.models.load_model(str(run_dir / "model.keras"), compile=False)
    with io.directory_lock(run_dir, "export"):
        path = recipe.maybe_export(model, str(run_dir), (32, 32))
    assert os.path.exists(path) and not io.holds_lock(run_dir)
    # ... and another process takes the folder
    assert _other_process_locks(run_dir) == "locked"


def test_a_failed_training_releases_the_lock_and_a_callers_lock_is_kept(tmp_path,
                                                                        monkeypatch):
    from keras_fcn.training import recipe

    def broken_fit(*args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(recipe, "fit", broken_fit)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="training failed"):
        recipe.run(_tiny_config(run_dir))
    assert not io.holds_lock(run_dir) and not (run_dir / io.LOCK_FILE).exists()
    assert _other_process_locks(run_dir) == "locked"
    held = tmp_path / "held"
    with io.directory_lock(held, "notebook"):
        with pytest.raises(RuntimeError, match="training failed"):
            recipe.run(_tiny_config(held))
        assert io.holds_lock(held)  # the caller's lock outlives the training
        assert _other_process_locks(held).startswith("refused: ")
    assert not io.holds_lock(held)


def test_an_unwritable_output_folder_is_named_not_the_lock_or_temporary_file(tmp_path,
                                                                            monkeypatch):
    """A read-only folder gave "[Errno 30] Read-only file system: '.../.keras_fcn.lock'" (the
    CLIs) and a temporary file's name (the API): the folder is named now. (The tests run as
    root, which writes anyway: the OS refusal is simulated.)"""
    import errno
    import tempfile

    folder = str(tmp_path / "out")
    real_open, real_mkstemp = os.open, tempfile.mkstemp

    def read_only_open(path, *args, **kwargs):
        if os.fspath(path).startswith(folder):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, *args, **kwargs)

    def read_only_mkstemp(*args, dir=None, **kwargs):
        if dir is not None and dir.startswith(folder):
            raise PermissionError(errno.EACCES, "Permission denied", dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    monkeypatch.setattr(tempfile, "mkstemp", read_only_mkstemp)
    with pytest.raises(PermissionError, match=rf"^Cannot write in the folder '{folder}' "
                                              r"\(Read-only file system\): choose a folder"):
        io.lock_directory(folder)
    os.makedirs(folder, exist_ok=True)
    with pytest.raises(PermissionError, match=rf"^Cannot write in the folder '{folder}' "
                                              r"\(Permission denied\): choose a folder"):
        io.atomic_write(os.path.join(folder, "m.tflite"), lambda p: None)
    assert os.listdir(folder) == []
    # another OS error stays as it is
    monkeypatch.setattr(os, "open", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.EIO, "Input/output error", "x")))
    with pytest.raises(OSError, match="Input/output error"):
        io.lock_directory(str(tmp_path / "other"))
