"""A full disk (issue 26, item 1) while a run saves its backup, best.keras or history, while
export writes a TFLite model or a SavedModel, and while predict writes its outputs: a
DiskFullError names the path and the free space, the previous file is intact and loads, no
temporary file is left, and the run resumes once there is space again.

The file system is real: a small tmpfs the test mounts (root), else a loop-mounted ext4 image;
where neither can be mounted the tests skip and say why. A mocked write covers the logic there.
"""

import errno
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tiny import file_digests, tiny_fcn
from tool_flags import run_in_process
from keras_fcn import export, io
from keras_fcn import training as train
from keras_fcn.datasets import shapes as synthetic



def _mount(point, size_mib, image):
    """Mounts a `size_mib` file system at `point`; returns None or why it could not."""
    tried = []
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(point)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return None
    tried.append(f"tmpfs: {result.stderr.strip() or result.returncode}")
    for command in (["truncate", "-s", f"{size_mib}M", str(image)],
                    ["mkfs.ext4", "-q", "-F", str(image)],
                    ["mount", "-o", "loop", str(image), str(point)]):
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except FileNotFoundError as error:
            result = subprocess.CompletedProcess(command, 127, "", str(error))
        if result.returncode:
            tried.append(f"{' '.join(command[:2])}: {result.stderr.strip() or result.returncode}")
            return "; ".join(tried)
    return None


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a real 12 MiB file system of its own."""
    point = tmp_path / "small"
    point.mkdir()
    why = _mount(point, 12, tmp_path / "disk.img")
    if why:
        pytest.skip(f"cannot mount a small file system here ({why})")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(folder):
    """Fills the file system of `folder` to the last byte; returns the filler's path."""
    path = os.path.join(folder, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    assert shutil.disk_usage(folder).free < 8192
    return path


def _temp_files(folder):
    return [n for _, _, names in os.walk(folder) for n in names
            if n.startswith(".") and n != io.LOCK_FILE]


def _check_disk_full_message(error, folder):
    message = str(error)
    assert "No space left on the device to write" in message and "KiB free" in message
    assert str(folder) in message and error.errno == errno.ENOSPC


class _FillDiskAt(keras.callbacks.Callback):
    def __init__(self, folder, epoch):
        super().__init__()
        self.folder, self.epoch, self.filler = folder, epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.filler = _fill(self.folder)


def test_training_on_a_full_disk_keeps_the_last_good_files_and_resumes(small_disk):
    images, masks = synthetic.shapes_arrays(8, size=32, seed=0)
    images, masks = images.astype("float32"), masks.astype("int32")
    train_ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4).repeat()
    val_ds = tf.data.Dataset.from_tensor_slices((images[:4], masks[:4])).batch(4)
    model = tiny_fcn("32s", 4, include_preprocessing=True)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-2))
    run_dir = str(small_disk / "run")
    common = dict(run_dir=run_dir, epochs=3, info=synthetic.SHAPES_INFO, steps_per_epoch=2,
                  verbose=0)
    fill = _FillDiskAt(str(small_disk), epoch=1)
    with pytest.raises(io.DiskFullError) as error:
        train.fit(model, train_ds, val_ds, callbacks=[fill], **common)
    _check_disk_full_message(error.value, run_dir)
    assert "Free some space and continue the run with --resume" in str(error.value)
    print("training on a full disk:", error.value)
    # epoch 1's files are intact: history, best checkpoint and backup
    assert [e["epoch"] for e in io.read_json(os.path.join(run_dir, "history.json"))] == [1]
    best = keras.models.load_model(os.path.join(run_dir, "best.keras"), compile=False)
    assert best.output_shape[-1] == 4
    assert io.read_json(os.path.join(run_dir, "backup", "training_metadata.json"))["epoch"] == 1
    assert not _temp_files(run_dir)
    os.remove(fill.filler)  # space is back: the run resumes from epoch 1's backup
    report = train.fit(model, train_ds, val_ds, **common)
    assert report["status"] == "completed"
    assert [e["epoch"] for e in report["history"]] == [1, 2, 3]
    assert report["best"]["value"] == max(e["val_mean_iu"] for e in report["history"])


def test_exports_on_a_full_disk_keep_the_previous_export(small_disk):
    model = tiny_fcn("32s", 3)
    out = small_disk / "export"
    tflite = str(out / "m.tflite")
    saved = str(out / "m_saved_model")
    export.export_tflite(model, tflite, input_size=(32, 32))
    export.export_saved_model(model, saved)
    before = file_digests(out)
    filler = _fill(str(small_disk))
    with pytest.raises(io.DiskFullError) as error, io.writing("export"):  # tools/export.py's
        export.export_tflite(model, tflite, input_size=(32, 32), overwrite=True)
    _check_disk_full_message(error.value, out)
    assert "Free some space and export again." in str(error.value)
    assert "--resume" not in str(error.value)
    with pytest.raises(io.DiskFullError) as error:
        export.export_saved_model(model, saved, overwrite=True)
    _check_disk_full_message(error.value, out)
    assert file_digests(out) == before and not _temp_files(out)
    tf.lite.Interpreter(model_path=tflite).allocate_tensors()
    assert tf.saved_model.load(saved).signatures["serving_default"] is not None
    os.remove(filler)
    export.export_tflite(model, tflite, input_size=(32, 32), overwrite=True)  # space is back


def _images(folder, count=4):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            folder / f"im{i}.png")
    return folder


def test_predict_on_a_full_disk_names_the_output_and_leaves_no_partial_file(small_disk,
                                                                             tmp_path):
    model_path = str(tmp_path / "tiny.keras")
    tiny_fcn("32s", 3).save(model_path)
    images = _images(tmp_path / "images")
    out = small_disk / "out"
    out.mkdir()
    _fill(str(small_disk))
    # in this process, as the script runs (tests/test_predict_image_size.py: a subprocess)
    result = run_in_process("tools/predict.py", f"--model={model_path}", f"--output_dir={out}",
                            str(images), positional=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(errors) == 1 and "No space left" in errors[0] and str(out) in errors[0]
    assert "KiB free" in errors[0]
    assert "Free some space and run the prediction again." in errors[0]
    assert "--resume" not in errors[0]  # the advice is predict's, not a training run's
    assert file_digests(out) == {}  # no file: nothing partial, no temporary name, no lock


def test_a_full_disk_is_reported_even_without_a_small_file_system(tmp_path, monkeypatch):
    """The mocked variant (runs everywhere): h5py's and TensorFlow's ways of saying ENOSPC are
    recognised and the previous file is kept."""
    path = tmp_path / "best.keras"
    path.write_bytes(b"good")

    def h5py_full(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("Can't write data (file write failed: errno = 28, error message = "
                      "'No space left on device')")

    def tf_full(tmp):
        raise tf.errors.ResourceExhaustedError(None, None, "write: No space left on device")

    for writer in (h5py_full, tf_full):
        with pytest.raises(io.DiskFullError, match="previous file there is unchanged"):
            io.atomic_write(str(path), writer)
        assert path.read_bytes() == b"good" and sorted(os.listdir(tmp_path)) == ["best.keras"]
    with pytest.raises(io.DiskFullError, match="nothing was written there"):
        io.atomic_write_dir(str(tmp_path / "sm"), lambda tmp: tf_full(tmp))
    with pytest.raises(PermissionError):  # other errors pass unchanged
        io.atomic_write(str(path), lambda tmp: (_ for _ in ()).throw(PermissionError("no")))
    assert sorted(os.listdir(tmp_path)) == ["best.keras"]


def test_the_disk_full_advice_fits_the_operation_that_wrote(tmp_path):
    """A training run continues with --resume; an export or a prediction is run again; a write
    of no known operation is just written again. The operation is the enclosing
    `io.writing` block's, or the `what` of the `io.directory_lock` block (tools/export.py,
    tools/predict.py), or the one given."""
    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    path = str(tmp_path / "out" / "m.tflite")
    os.makedirs(os.path.dirname(path))

    def message(**kwargs):
        with pytest.raises(io.DiskFullError) as error:
            io.atomic_write(path, full, **kwargs)
        text = str(error.value)
        prefix = f"No space left on the device to write {path!r}: "
        assert text.startswith(prefix) and "; nothing was written there. " in text
        return text.split("; nothing was written there. ")[1].split(" ([Errno 28]")[0]

    assert message() == "Free some space and write it again."
    with io.writing("training"):
        assert message() == ("Free some space and continue the run with --resume "
                             "(training.fit resumes from the run's backup).")
        with io.writing("export"):  # the inner block's operation
            assert message() == "Free some space and export again."
        with io.writing(None):  # None keeps the outer one
            assert "--resume" in message()
    assert message() == "Free some space and write it again."  # the block ended
    with io.directory_lock(tmp_path / "out", "predict"):
        assert message() == "Free some space and run the prediction again."
    assert "run the prediction again" in str(io.disk_full_error(path, operation="predict"))
    with io.writing("training"):  # the operation given wins
        assert "export again" in str(io.disk_full_error(path, operation="export"))
