"""The run directory: creating it, its labels file, its curves, and reading a finished run.

A run directory receives:

- `model.keras`: the final model (not written when training stopped on a NaN loss);
- `best.keras`: the model with the best validation mean IU (written atomically, so it is never
  half-written);
- `metrics.json`: per-epoch history (continuous across `--resume`), final validation metrics
  (pixel acc, mean acc, mean IU, fw IU, per-class IU) and how the run ended;
- `curves.png`: loss and mean IU per epoch;
- `labels.json`: the `keras_fcn.labels.ModelLabels` sidecar (class names, palette, ignore label,
  image size, normalization) that export, predict and evaluate read beside `model.keras` and
  `best.keras` (`ModelLabels.for_model`).

Example:
    >>> run_dir = prepare_run_dir("runs/camvid", resume=True)

    write_labels(run_dir, info, image_size=(180, 240), model_name="fcn8s")
"""

import os
import shutil

import numpy as np

from keras_fcn import io
from keras_fcn.labels import ModelLabels
from keras_fcn.models import normalization_of
from keras_fcn.training.callbacks import BEST_MODEL_FILE, BEST_STATE_FILE, HISTORY_FILE

LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
CLASS_WEIGHTS_FILE = "class_weights.json"
RUN_FILES = (MODEL_FILE, BEST_MODEL_FILE, METRICS_FILE, "curves.png", LABELS_FILE)
# Files of a run directory written through `keras_fcn.io` (temporary name ".<file>.<random>").
_ATOMIC_FILES = RUN_FILES + (HISTORY_FILE, BEST_STATE_FILE, CLASS_WEIGHTS_FILE)


def remove_stale_temp_files(run_dir):
    """Deletes the temporary files that a killed run left in `run_dir` (and its stage folders).

    `keras_fcn.io` writes `best.keras` as `.best.keras.<random>.keras` and renames it; a
    SIGKILL between the two leaves that file behind. Only such names are removed.

    Returns:
        The paths removed.
    """
    prefixes = tuple(f".{name}." for name in _ATOMIC_FILES)
    removed = []
    for root, _, files in os.walk(run_dir):
        for name in files:
            if name.startswith(prefixes):
                removed.append(os.path.join(root, name))
                os.remove(removed[-1])
    return removed


def prepare_run_dir(run_dir, *, resume=False, overwrite=False):
    """Creates `run_dir`, refusing to reuse a run directory unless asked.

    Args:
        run_dir: the run directory.
        resume: continue the run in `run_dir` (its backup and history are kept; temporary
            files of a killed run are removed).
        overwrite: delete an existing `run_dir` and start again.

    Returns:
        The absolute path.

    It takes the lock of `run_dir` (`keras_fcn.io.lock_directory`): until it is released,
    another process training, exporting or predicting there is refused with the holder's pid.
    `keras_fcn.training.run` releases it when it returns or raises; a caller of this function
    alone holds it until `keras_fcn.io.unlock_directory` or the end of the process.

    Raises:
        FileExistsError: `run_dir` holds a run and neither `resume` nor `overwrite` is set.
        keras_fcn.io.DirectoryLockedError: another live process holds the lock of `run_dir`.

    Example:
        >>> prepare_run_dir("runs/shapes", overwrite=True)
        '.../runs/shapes'
    """
    run_dir = os.path.abspath(os.path.expanduser(run_dir))
    held = io.holds_lock(run_dir)
    # First the lock: a second run on this directory is told who runs there.
    io.lock_directory(run_dir, "training")
    entries = [name for name in os.listdir(run_dir) if name != io.LOCK_FILE]
    if entries and overwrite and not resume:
        for name in entries:
            path = os.path.join(run_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    elif entries and not resume:
        if not held:
            io.unlock_directory(run_dir)
        raise FileExistsError(
            f"Run directory '{run_dir}' exists. Pass --resume to continue it or --overwrite to "
            "replace it, or choose another directory.")
    remove_stale_temp_files(run_dir)
    return run_dir


def model_labels(info, *, model=None, image_size=None, model_name=None):
    """The `ModelLabels` of a model trained on `info` (a `DatasetInfo`).

    A palette with a void colour after the classes (CamVid: 11 classes, 12 colours) is trimmed
    to one colour per class by `ModelLabels`.

    Example:
        model_labels(CAMVID_INFO, image_size=(180, 240)).palette[-1]
    """
    normalization = None if model is None else normalization_of(model)
    return ModelLabels.from_info(info, image_size=image_size, model_name=model_name,
                                 normalization=normalization)


def write_labels(run_dir, info, *, model=None, image_size=None, model_name=None):
    """Writes the run's `labels.json` (see `model_labels`); returns the `ModelLabels`.

    Example:
        write_labels("runs/camvid", CAMVID_INFO, model=model, image_size=(180, 240))
    """
    labels = model_labels(info, model=model, image_size=image_size, model_name=model_name)
    labels.write(os.path.join(run_dir, LABELS_FILE))
    return labels


def completed_run(run_dir):
    """The `metrics.json` report of a run that finished in `run_dir`, or None.

    Example:
        completed_run("runs/voc/fcn32s")["final_val"]["mean_iu"]
    """
    path = os.path.join(run_dir, METRICS_FILE)
    if not (os.path.exists(path) and os.path.exists(os.path.join(run_dir, MODEL_FILE))):
        return None
    report = io.read_json(path, "Run metrics")
    return report if report.get("status") == "completed" else None


def plot_curves(history, path, title=None, metric="mean_iu"):
    """Plots loss (train/val) and `metric` (train/val) per epoch into a PNG.

    Args:
        history: list of per-epoch dicts (as in `history.json`).
        path: PNG path.
        title: optional figure title.
        metric: the logged metric of the second panel (e.g. "semantic_mean_iu").

    Example:
        plot_curves(io.read_json("runs/a/history.json"), "runs/a/curves.png")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in ((axes[0], "loss"), (axes[1], metric)):
        label = key.replace("_iu", " IU").replace("_", " ")
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [e.get(prefix + key) for e in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, marker="o",
                        label=("val " if prefix else "train ") + label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
