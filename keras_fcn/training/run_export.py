"""The TFLite model a training run exports into its folder (`--export`).

Example:
    maybe_export(model, "runs/shapes", (64, 64))

On JAX or PyTorch (with TensorFlow installed) the export runs in a child process on Keras'
TensorFlow backend: ``python -m keras_fcn.training.run_export MODEL.keras RUN_DIR HEIGHT
WIDTH``.
"""

import os
import subprocess
import sys
import tempfile

import keras

from keras_fcn import _tf
from keras_fcn.training.evaluation import iterate_batches
from keras_fcn.labels import ModelLabels


def maybe_export(model, run_dir, input_size, keep=False):
    """Exports a float16-weight TFLite model and its sidecar JSON with `keras_fcn.export`.

    Args:
        model: the trained model.
        run_dir: the run folder: its `labels.json` gives class names, palette and ignore label;
            `model_float16.tflite` and `model_float16.json` go there.
        input_size: (height, width) of the exported fixed-size model.
        keep: keep an existing export of this model (a --resume of a complete run trains
            nothing: its export, if it finished, stays as it is).

    Returns:
        The path of the `.tflite` file.

    Example:
        maybe_export(model, "runs/shapes", (64, 64))
    """
    path = os.path.join(run_dir, "model_float16.tflite")
    if keep and os.path.isfile(path) and os.path.isfile(os.path.splitext(path)[0] + ".json"):
        print(f"Kept the run's TFLite export {path} (nothing was trained)")
        return path
    # a bf16-trained model exports as float: keras_fcn.export takes its float32 copy
    if not _tf.on_tensorflow():
        return _export_on_tensorflow(model, run_dir, input_size, path)
    from keras_fcn.export import export_tflite

    export_tflite(model, path, input_size=tuple(input_size), quantization="float16",
                  labels=ModelLabels.read(run_dir), overwrite=True)
    print(f"Exported TFLite (float16 weights, {input_size[0]}x{input_size[1]}) to {path}")
    return path


def _export_on_tensorflow(model, run_dir, input_size, path):
    """`maybe_export` in a child process on Keras' TensorFlow backend (a backend is fixed once
    keras is imported, and the export traces a TensorFlow graph), from ``model`` saved to a
    temporary ``.keras`` file. Its output is printed here; a failure raises a RuntimeError
    with its last error line (the run's model files are already written)."""
    with tempfile.TemporaryDirectory(prefix="keras_fcn_export_") as folder:
        source = os.path.join(folder, "model.keras")
        model.save(source)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
            __file__))))  # the folder holding keras_fcn/
        env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=os.pathsep.join(
            filter(None, (package_root, os.environ.get("PYTHONPATH")))))
        print(f"Exporting on TensorFlow in a child process (Keras runs on "
              f"{_tf.backend()} here)", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "keras_fcn.training.run_export", source, os.fspath(run_dir),
             str(input_size[0]), str(input_size[1])],
            env=env, capture_output=True, text=True, check=False)
    if done.stdout.strip():
        print(done.stdout.strip(), flush=True)
    if done.returncode != 0 or not os.path.isfile(path):
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"The TFLite export on TensorFlow (a child process) failed: "
                           f"{lines[-1]}")
    return path


def export_size(config, eval_ds):
    """The fixed input size of the exported model: the training size, else the first
    evaluation image's."""
    size = config.data.image_size or config.data.crop_size
    if size:
        return tuple(size)
    for images, _ in iterate_batches(eval_ds):
        return tuple(int(d) for d in images.shape[1:3])
    return None


if __name__ == "__main__":  # the child process of _export_on_tensorflow
    _source, _run_dir, _height, _width = sys.argv[1:5]
    maybe_export(keras.models.load_model(_source, compile=False), _run_dir,
                 (int(_height), int(_width)))
