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

from keras_fcn import _tf, io
from keras_fcn.training.evaluation import iterate_batches
from keras_fcn.labels import ModelLabels
from keras_fcn.training.run_dir import MODEL_FILE


def maybe_export(model, run_dir, input_size, keep=False, size_source=None):
    """Exports a float16-weight TFLite model and its sidecar JSON with `keras_fcn.export`.

    Args:
        model: the trained model.
        run_dir: the run folder: its `labels.json` gives class names, palette and ignore label;
            `model_float16.tflite` and `model_float16.json` go there.
        input_size: (height, width) of the exported fixed-size model.
        keep: keep an existing export of this model (a --resume of a complete run trains
            nothing: its export, if it finished, stays as it is).
        size_source: why the model takes `input_size` (`export_size`), written to the
            sidecar as "input_size_source" for the app that reads it.

    Returns:
        The path of the `.tflite` file.

    Example:
        maybe_export(model, "runs/shapes", (64, 64))
    """
    path = os.path.join(run_dir, "model_float16.tflite")
    if keep and _exported_at(path, input_size):
        print(f"Kept the run's TFLite export {path} (nothing was trained)")
        return path
    # a bf16-trained model exports as float: keras_fcn.export takes its float32 copy
    if not _tf.on_tensorflow():
        return _export_on_tensorflow(model, run_dir, input_size, path, size_source)
    from keras_fcn.export import export_tflite

    metadata = export_tflite(model, path, input_size=tuple(input_size), quantization="float16",
                             labels=ModelLabels.read(run_dir), overwrite=True)
    if size_source:
        io.write_json(ModelLabels.sidecar_path(path),
                      {**metadata, "input_size_source": size_source})
    print(f"Exported TFLite (float16 weights, {input_size[0]}x{input_size[1]}) to {path}")
    return path


def _exported_at(path, input_size):
    """Whether the TFLite file `path` and its sidecar exist and take `input_size` (an export
    made at another size, such as a crop's before this rule, is made again)."""
    sidecar = ModelLabels.sidecar_path(path)
    if not (os.path.isfile(path) and os.path.isfile(sidecar)):
        return False
    shape = (io.read_json(sidecar, "TFLite sidecar").get("input") or {}).get("shape")
    return list(shape or [])[1:3] == list(input_size)


def _export_on_tensorflow(model, run_dir, input_size, path, size_source=None):
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
             str(input_size[0]), str(input_size[1]), *([size_source] if size_source else [])],
            env=env, capture_output=True, text=True, check=False)
    if done.stdout.strip():
        print(done.stdout.strip(), flush=True)
    if done.returncode != 0 or not os.path.isfile(path):
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"The TFLite export on TensorFlow (a child process) failed: "
                           f"{lines[-1]}")
    return path


def image_sizes(eval_ds):
    """The distinct ``(height, width)`` of the images of `eval_ds` (batch 1), sorted."""
    return sorted({tuple(int(d) for d in images.shape[1:3])
                   for images, _ in iterate_batches(eval_ds)})


def _sizes_text(sizes):
    return ", ".join(f"{h}x{w}" for h, w in sizes)


def export_size(image_size, sizes):
    """The fixed input size of a run's TFLite export, at the scale the model trained at, and
    why: ``(size, source)``, or ``(None, why none)``.

    A run with `--image_size` resized every image to it: that size. Without, the model saw
    each image at its own (native) scale, a `--crop_size` being a window of it, never a
    rescale: the size of the validation images `sizes` (`image_sizes`, the size the model
    was validated at) when they share one. Images of several sizes have no one native size
    (resizing all of them to any one would change the scale of some): no export, as
    tools/export.py refuses such a model without --input_size.

    Example:
        >>> export_size(None, [(48, 64)])[0]
        (48, 64)
    """
    if image_size:
        size = tuple(image_size)
        return size, f"the training --image_size {size[0]}x{size[1]}"
    if len(sizes) == 1:
        return tuple(sizes[0]), (f"the size of every validation image, {_sizes_text(sizes)} "
                                 "(the run trained at the images' own size)")
    if not sizes:
        return None, "the run has no validation images to take the size of"
    return None, (f"the validation images have {len(sizes)} sizes ({_sizes_text(sizes[:4])}"
                  f"{', ...' if len(sizes) > 4 else ''}) and the run trained at each image's "
                  "own size (no --image_size): no one fixed size is their native scale")


def export_run(model, run_dir, config, eval_ds, keep=False):
    """A recipe's `--export`: `maybe_export` at `export_size`, else one line saying why it is
    skipped with the tools/export.py command that exports at a size the user chooses.

    Returns:
        The path of the `.tflite` file, or None where the export was skipped.

    Example:
        export_run(model, "runs/mine", config, eval_ds)
    """
    image_size = config.data.image_size
    sizes = [] if image_size else image_sizes(eval_ds)
    size, source = export_size(image_size, sizes)
    if size is None:
        example = "x".join(str(v) for v in (sizes or [(360, 480)])[0])
        print(f"Export skipped: {source}. Export at the size of your photos: python "
              f"tools/export.py --model={os.path.join(run_dir, MODEL_FILE)} "
              f"--output_dir={os.path.join(run_dir, 'export')} --input_size={example} "
              "--quantizations=float16 --saved_model=false", flush=True)
        return None
    print(f"Export size {size[0]}x{size[1]}: {source}", flush=True)
    return maybe_export(model, run_dir, size, keep=keep, size_source=source)


if __name__ == "__main__":  # the child process of _export_on_tensorflow
    _source, _run_dir, _height, _width = sys.argv[1:5]
    maybe_export(keras.models.load_model(_source, compile=False), _run_dir,
                 (int(_height), int(_width)), size_source=(sys.argv[5:] or [None])[0])
