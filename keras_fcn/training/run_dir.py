"""The run directory: creating it, its labels file, its curves, and reading a finished run.

A run directory receives:

- `model.keras`: the final model (none after a NaN loss); `best.keras`: the best validation
  mean IU's; `curves.png`: loss and mean IU per epoch;
- `metrics.json`: per-epoch history (continuous across `--resume`), final validation metrics
  (pixel acc, mean acc, mean IU, fw IU, per-class IU) and how the run ended;
- `labels.json`: the `keras_fcn.labels.ModelLabels` sidecar (class names, palette, ignore label,
  image size, normalization) that export, predict and evaluate read beside `model.keras` and
  `best.keras` (`ModelLabels.for_model`);
- `config.json`: the flags of the run (`run_config.write_run_config`), compared on `--resume`;
- `history.json`, `best_state.json`, `class_weights.json`, `backup/` (resume state), `logs/`
  (TensorBoard), `model_float16.tflite` and `.json` (`--export`), and for `--model=staged` one
  such folder per stage (`fcn32s/`, `fcn16s/`, `fcn8s/`).

`--overwrite` (`prepare_run_dir`) deletes a folder only when it holds nothing else.

Example:
    >>> run_dir = prepare_run_dir("runs/camvid", resume=True)

    write_labels(run_dir, info, image_size=(180, 240), model_name="fcn8s")
"""

import contextlib
import os
import shutil

import numpy as np

from keras_fcn import io
from keras_fcn.labels import ModelLabels
from keras_fcn.models import normalization_of
from keras_fcn.training.callbacks import (
    BACKUP_DIR,
    BEST_MODEL_FILE,
    BEST_STATE_FILE,
    HISTORY_FILE,
)
from keras_fcn.training.evaluation import evaluated_model, is_evaluation_json

LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
CLASS_WEIGHTS_FILE = "class_weights.json"
CONFIG_FILE = "config.json"
EXPORT_FILES = ("model_float16.tflite", "model_float16.json")  # --export (run_export.maybe_export)
RUN_FILES = (MODEL_FILE, BEST_MODEL_FILE, METRICS_FILE, "curves.png", LABELS_FILE)
# The models whose tools/evaluate.py default outputs (evaluation.evaluation_file: best.eval.json,
# best.holdout-0006R0.eval.json...) --overwrite removes with them (not-evaluations stay).
EVALUATED_MODELS = (MODEL_FILE, BEST_MODEL_FILE)
# Files of a run directory written through `keras_fcn.io` (temporary name ".<file>.<random>").
_ATOMIC_FILES = RUN_FILES + (HISTORY_FILE, BEST_STATE_FILE, CLASS_WEIGHTS_FILE, CONFIG_FILE,
                             *EXPORT_FILES)
# Folders that training writes whole (their content is Keras' or TensorBoard's), and the stage
# folders of --model=staged (recipe.STAGES), which hold the files of a run themselves.
_RUN_FOLDERS = (BACKUP_DIR, "logs")
_STAGE_FOLDERS = ("fcn32s", "fcn16s", "fcn8s")


def remove_stale_temp_files(run_dir):
    """Deletes the temporary files a killed run left in `run_dir` and its folders (`best.keras`
    is written as `.best.keras.<random>.keras`, then renamed: `keras_fcn.io.stale_temp_files`).

    Returns:
        The paths removed.
    """
    removed = [os.path.join(root, name) for root, _, _ in os.walk(run_dir)
               for name in io.stale_temp_files(root)]
    for path in removed:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return removed


def unexpected_entries(run_dir, stages=True):
    """The entries of `run_dir` that training does not write (relative paths, sorted), which
    `--overwrite` must not delete. The lock file of `keras_fcn.io` and tools/evaluate.py's
    evaluations of the run's models (`EVALUATED_MODELS`) are not counted.

    Example:
        >>> unexpected_entries("/data/camvid")  # doctest: +SKIP
        ['test', 'train', 'val']
    """
    unexpected, temporary = [], set(io.stale_temp_files(run_dir))  # a killed writer's
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        folder = os.path.isdir(path) and not os.path.islink(path)
        if name == io.LOCK_FILE or name in temporary or folder and name in _RUN_FOLDERS:
            continue
        if folder and stages and name in _STAGE_FOLDERS:
            unexpected += [os.path.join(name, inner)
                           for inner in unexpected_entries(path, stages=False)]
        elif folder or name not in _ATOMIC_FILES and not (
                evaluated_model(name) in EVALUATED_MODELS
                and is_evaluation_json(path)):
            unexpected.append(name + os.sep if folder else name)
    return unexpected


# What a run writes before its first epoch ends: a run folder holding nothing else (and stage
# folders holding nothing else) has no result of its own.
SETUP_FILES = (CONFIG_FILE, LABELS_FILE, CLASS_WEIGHTS_FILE)


def _setup_only(folder, stages=True):
    """The files of `folder` to remove for it to hold nothing, or None when it holds anything
    but `SETUP_FILES` (their temporary files, the lock file, empty or setup-only stage
    folders)."""
    paths = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            inner = _setup_only(path, stages=False) if stages and name in _STAGE_FOLDERS else None
            if inner is None:
                return None
            paths += inner + [path]
        elif name in SETUP_FILES or name.startswith(tuple(f".{f}." for f in SETUP_FILES)):
            paths.append(path)
        elif name != io.LOCK_FILE:
            return None
    return paths


def is_fresh(output_dir):
    """Whether `output_dir` is missing or holds nothing (but a lock file): a run that fails
    there may remove what it wrote (`remove_setup_files`).

    Example:
        >>> is_fresh("/nonexistent/run")
        True
    """
    if not os.path.isdir(output_dir):
        return not os.path.exists(output_dir)
    return all(name == io.LOCK_FILE for name in os.listdir(output_dir))


@contextlib.contextmanager
def setup_removed_on_failure(output_dir, enabled=True):
    """Within the block, a run that fails (an error, Ctrl-C) in an `output_dir` that was fresh
    (`is_fresh`) when the block began leaves no folder of setup files behind
    (`remove_setup_files`): the corrected command then runs as given.

    Example:
        with setup_removed_on_failure("runs/a"): train()
    """
    fresh = enabled and is_fresh(output_dir)
    try:
        yield
    except (Exception, KeyboardInterrupt):
        if fresh:
            remove_setup_files(os.path.abspath(os.path.expanduser(output_dir)))
        raise


def remove_setup_files(run_dir):
    """Removes what a run wrote in `run_dir` before its first epoch ended (`SETUP_FILES`,
    empty stage folders) when that is all the folder holds; a folder holding anything else is
    left whole. Only for a folder that was fresh (`is_fresh`) when the run began.

    Returns:
        Whether the files were removed.

    Example:
        remove_setup_files("runs/a")  # True: config.json and labels.json were all it held
    """
    if not os.path.isdir(run_dir):
        return False
    paths = _setup_only(run_dir)
    if paths is None:
        return False
    for path in paths:
        if os.path.isdir(path):
            os.rmdir(path)
        else:
            os.remove(path)
    return True


def check_inputs_outside(run_dir, inputs):
    """Raises ValueError if `run_dir` is, or contains, one of `inputs` (paths the run reads:
    data folders, weights files); None and empty entries are skipped.

    Example:
        >>> check_inputs_outside("runs/a", ["/data/camvid"])
    """
    run = os.path.expanduser(run_dir)
    for name, path in (inputs.items() if isinstance(inputs, dict) else
                       ((None, p) for p in inputs)):
        if not path or not isinstance(path, (str, os.PathLike)):
            continue
        if io.is_inside(os.path.expanduser(path), run):
            what = f"--{name}" if name else "an input of the run"
            raise ValueError(
                f"--output_dir must not be or contain {what}: the run's files (and what "
                f"--overwrite deletes) would mix with it. Received: output_dir="
                f"{str(run_dir)!r}, {name or 'input'}={str(path)!r}")


def run_inputs(config):
    """{flag: path} of the paths a run reads (data folders, weights and class-weight files),
    which its run directory must not be or contain (`prepare_run_dir`).

    Example:
        >>> run_inputs(keras_fcn.training.TrainConfig().replace(data_dir="/data/camvid"))
        {'data_dir': '/data/camvid'}
    """
    data, model = config.data, config.model
    paths = {"data_dir": data.data_dir, "val_data_dir": data.val_data_dir,
             "unlabelled_video_dir": data.unlabelled_video_dir,
             "weights": model.weights if isinstance(model.weights, str) and
             os.path.exists(os.path.expanduser(model.weights)) else None,
             "class_weights": config.optim.class_weights
             if isinstance(config.optim.class_weights, str) and
             os.path.exists(os.path.expanduser(config.optim.class_weights)) else None}
    return {name: path for name, path in paths.items() if path}


def prepare_run_dir(run_dir, *, resume=False, overwrite=False, inputs=()):
    """Creates `run_dir`, refusing to reuse a run directory unless asked.

    Args:
        run_dir: the run directory.
        resume: continue the run in `run_dir` (its backup and history are kept; temporary
            files of a killed run are removed).
        overwrite: delete an existing `run_dir` and start again. Only a folder that holds
            nothing but the files of a run (`unexpected_entries`; tools/evaluate.py's
            `best.eval.json`, `best.holdout-<groups>.eval.json`... count) is emptied.
        inputs: paths the run reads ({flag name: path}, or a list): `run_dir` must not be or
            contain one of them.

    Returns:
        The absolute path.

    It takes the lock of `run_dir` (`keras_fcn.io.lock_directory`): another process training,
    exporting or predicting there is refused with the holder's pid until it is released
    (`keras_fcn.training.run`: when it returns or raises; else `keras_fcn.io.unlock_directory`
    or the end of the process).

    Raises:
        FileExistsError: `run_dir` holds a run and neither `resume` nor `overwrite` is set.
        ValueError: both `resume` and `overwrite`; `overwrite` of a folder holding other files
            than a run's (they are named, nothing is deleted); `run_dir` is or contains one
            of `inputs`.
        keras_fcn.io.DirectoryLockedError: another live process holds the lock of `run_dir`.

    Example:
        >>> prepare_run_dir("runs/shapes", overwrite=True)
        '.../runs/shapes'
    """
    if resume and overwrite:
        raise ValueError("--resume continues the run in the run directory and --overwrite "
                         "deletes it: give one of them. Received: resume=True, overwrite=True")
    check_inputs_outside(run_dir, inputs)
    run_dir = os.path.abspath(os.path.expanduser(run_dir))
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise FileExistsError(f"The run directory is an existing file, not a folder. Received: "
                              f"output_dir={run_dir!r}")
    held = io.holds_lock(run_dir)
    # First the lock: a second run on this directory is told who runs there.
    io.lock_directory(run_dir, "training")
    entries = [name for name in os.listdir(run_dir) if name != io.LOCK_FILE]
    unexpected = unexpected_entries(run_dir) if entries and overwrite else []
    if unexpected:
        if not held:
            io.unlock_directory(run_dir)
        shown = ", ".join(repr(name) for name in unexpected[:5])
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        raise ValueError(
            f"--overwrite deletes only a keras_fcn run directory, and '{run_dir}' holds other "
            f"files: {shown}{more}. Nothing was deleted: choose another --output_dir, or move "
            "those files away.")
    if entries and overwrite:
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


def worker_run_dir(output_dir, resume=False):
    """The private run folder of a non-chief worker of a multi-worker run: a new temporary
    folder (the chief alone writes ``output_dir``), holding, for a resume, a copy of the
    chief's ``output_dir`` (backups, finished stages) so that every worker restores the same
    state. When this worker cannot read ``output_dir`` (not on a shared file system), nothing
    is copied: the workers then disagree on the state they restore, which
    ``keras_fcn.training.backup.check_workers_agree`` refuses at the start of training.

    Example:
        >>> worker_run_dir("runs/a")  # doctest: +SKIP
        '/tmp/keras_fcn_worker_k2j4x9'
    """
    import tempfile

    run_dir = tempfile.mkdtemp(prefix="keras_fcn_worker_")
    if resume and os.path.isdir(output_dir):
        # The chief has not written since the last run ended: it writes backups only once
        # every worker has joined the first training step.
        shutil.copytree(output_dir, run_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(io.LOCK_FILE, "logs"))
    elif resume:
        print(f"This worker cannot see the run folder {output_dir!r}: it resumes only if the "
              "chief has no backup to resume from.", flush=True)
    return run_dir


def model_labels(info, *, model=None, image_size=None, model_name=None, normalization=None):
    """The `ModelLabels` of a model trained on `info` (a `DatasetInfo`): `normalization` if
    given, else `normalization_of(model)`; a void colour after the classes' is trimmed.

    Example:
        model_labels(CAMVID_INFO, image_size=(180, 240)).palette[-1]
    """
    if normalization is None and model is not None:
        normalization = normalization_of(model)
    return ModelLabels.from_info(info, image_size=image_size, model_name=model_name,
                                 normalization=normalization)


def write_labels(run_dir, info, *, model=None, image_size=None, model_name=None,
                 normalization=None):
    """Writes the run's `labels.json` (see `model_labels`); returns the `ModelLabels`.

    Example:
        write_labels("runs/camvid", CAMVID_INFO, model=model, image_size=(180, 240))
    """
    labels = model_labels(info, model=model, image_size=image_size, model_name=model_name,
                          normalization=normalization)
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


def finished_run(run_dir, epochs, *, synthetic=False):
    """The report of a run that finished in `run_dir` (:func:`completed_run`), or None.

    Args:
        synthetic: a ``--synthetic`` run of the NYUD / SIFT Flow recipes, which refuse
            ``--weights``: the refusal does not suggest it.

    Raises:
        ValueError: the run finished after another number of epochs than `epochs`: its
            learning-rate schedule ran to its end, so it is not trained further, and reusing
            it as is would give fewer (or more) epochs than asked.

    Example:
        done = finished_run("runs/voc/fcn32s", epochs=10)
    """
    done = completed_run(run_dir)
    trained = None if done is None else done.get("epochs")
    if trained is not None and trained != epochs:
        run = "--synthetic run" if synthetic else "run"
        advice = ("Train it again with --overwrite, or give another --output_dir (--synthetic "
                  "takes no --weights)." if synthetic else
                  f"Start a new run from its weights (--weights "
                  f"{os.path.join(run_dir, MODEL_FILE)} and another --output_dir), or train "
                  "it again with --overwrite.")
        raise ValueError(
            f"The {run} in '{run_dir}' is complete after {trained} epochs; a finished run is "
            "not trained further (its learning-rate schedule ran to its end). Received: "
            f"epochs={epochs}. {advice}")
    return done


def plot_curves(history, path, title=None, metric="mean_iu"):
    """Plots loss (train/val) and `metric` (train/val) per epoch into a PNG; without
    matplotlib prints a one-line note instead.

    Args:
        history: list of per-epoch dicts (as in `history.json`).
        path: PNG path.
        title: optional figure title.
        metric: the logged metric of the second panel (e.g. "semantic_mean_iu").

    Returns:
        `path`, or None when matplotlib is missing.

    Example:
        plot_curves(io.read_json("runs/a/history.json"), "runs/a/curves.png")
    """
    try:
        import matplotlib
    except ImportError:  # an optional dependency: the run's results are all written without it
        print(f"note: {os.path.basename(path)} not drawn: matplotlib is not installed "
              "(pip install matplotlib); history.json holds the same curves.", flush=True)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in history]
    keys = ["loss"]
    if metric != "loss" and any(e.get(metric) is not None or e.get("val_" + metric) is not None
                                for e in history):
        keys.append(metric)  # a second panel only for a logged metric other than the loss
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
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
    return path
