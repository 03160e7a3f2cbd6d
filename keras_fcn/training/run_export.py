"""The TFLite model a training run exports into its folder (`--export`).

Example:
    maybe_export(model, "runs/shapes", (64, 64))
"""

import os

from keras_fcn import runtime
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
    from keras_fcn.export import export_tflite

    path = os.path.join(run_dir, "model_float16.tflite")
    if keep and os.path.isfile(path) and os.path.isfile(os.path.splitext(path)[0] + ".json"):
        print(f"Kept the run's TFLite export {path} (nothing was trained)")
        return path
    model = runtime.with_precision(model, "float32")  # a bf16-trained model exports as float
    export_tflite(model, path, input_size=tuple(input_size), quantization="float16",
                  labels=ModelLabels.read(run_dir), overwrite=True)
    print(f"Exported TFLite (float16 weights, {input_size[0]}x{input_size[1]}) to {path}")
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
