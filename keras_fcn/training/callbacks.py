"""The callbacks of a training run: NaN guard, safe backup (backup.py), best checkpoint,
history, time limit, and validation with the moving average of the weights (EMA).

They share one `NaNGuard`: after a non-finite loss nothing is saved, so the last good
checkpoint and backup survive. `make_callbacks` returns the set `keras_fcn.training.fit` uses.

Example:
    >>> guard = NaNGuard(steps_per_epoch=100)

    model.fit(train_ds, epochs=5, callbacks=make_callbacks("runs/a", nan_guard=guard))
"""

import contextlib
import logging
import math
import os
import sys
import time

import keras
import numpy as np

from keras_fcn import io
from keras_fcn._checks import check_choice
from keras_fcn.runtime import detach_averaged_weights, detach_weights
from keras_fcn.training.backup import SafeBackupAndRestore
from keras_fcn.training.consistency import plain_model
from keras_fcn.training.optimizers import last_step_rate

logger = logging.getLogger(__name__)

BACKUP_DIR = "backup"
HISTORY_FILE = "history.json"
BEST_STATE_FILE = "best_state.json"
BEST_MODEL_FILE = "best.keras"


def is_finite(value):
    """True unless `value` is a number that is NaN or infinite.

    Example:
        >>> is_finite(float("nan")), is_finite(0.5)
        (False, True)
    """
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and names the step.

    Better than `keras.callbacks.TerminateOnNaN`: it records epoch, batch and global step,
    and the other callbacks of this module (`BestCheckpoint`, `SafeBackupAndRestore`) check
    `nan_step` and do not save the diverged weights, so the last good checkpoints survive.

    Attributes:
        nan_step: None, or a dict {"epoch", "batch", "step", "loss"} of the failure.

    Example:
        >>> guard = NaNGuard(steps_per_epoch=100)

        model.fit(train_ds, epochs=5, steps_per_epoch=100, callbacks=[guard])
        >>> guard.nan_step  # None, or {"epoch": 2, "batch": 17, "step": 117, "loss": "nan"}
    """

    def __init__(self, steps_per_epoch=None):
        super().__init__()
        self.nan_step = None
        self._steps_per_epoch = steps_per_epoch
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.nan_step is None and loss is not None and not is_finite(loss):
            step = None if self._steps_per_epoch is None else (
                self._epoch * self._steps_per_epoch + batch + 1)
            self.nan_step = {"epoch": self._epoch + 1, "batch": batch + 1, "step": step,
                             "loss": str(float(loss))}
            message = (f"Loss is {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}"
                       + (f" (global step {step})" if step else "")
                       + ": training stopped; the last good checkpoints are kept. Lower the "
                       "learning rate or check the data: inside a compiled step (JAX, XLA) a "
                       "label outside [0, num_classes) that is not the ignore label gives a NaN "
                       "loss, not an error (keras_fcn.datasets.check finds such labels).")
            print(f"\n{message}", file=sys.stderr, flush=True)
            logger.error(message)
            self.model.stop_training = True


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model with the best `monitor` value atomically; survives resumes.

    Unlike `keras.callbacks.ModelCheckpoint`, the best value is stored next to the checkpoint
    (`best_state.json`) and read back on a resumed run, so a resumed run never replaces a
    better checkpoint, and nothing is saved after a NaN stop.

    Args:
        path: the checkpoint (`best.keras`).
        nan_guard: the run's `NaNGuard`.
        monitor: the logged value that decides, e.g. "val_mean_iu".
        mode: "max", "min", or "auto": a loss ("val_loss", "val_semantic_loss") is
            minimized, anything else (IU, accuracy) maximized.

    Raises:
        ValueError: an unknown `mode`; a `best_state.json` of another monitor; at an epoch
            end, a `monitor` that is not logged while validation ran (it would never save).

    Example:
        best = BestCheckpoint("runs/a/best.keras", guard, monitor="val_mean_iu")
    """

    MODES = ("auto", "max", "min")

    def __init__(self, path, nan_guard, monitor="val_mean_iu", mode="auto"):
        super().__init__()
        check_choice("mode", mode, self.MODES)
        if mode == "auto":
            mode = "min" if monitor.endswith("loss") else "max"
        self.path = path
        self.monitor = monitor
        self.mode = mode
        self.sign = 1.0 if mode == "max" else -1.0
        self._nan_guard = nan_guard
        self._state_path = os.path.join(os.path.dirname(path), BEST_STATE_FILE)
        self.best = None
        self.best_epoch = None
        if os.path.exists(self._state_path) and os.path.exists(path):
            state = io.read_json(self._state_path, "Best checkpoint state")
            if state.get("monitor", monitor) != monitor:
                raise ValueError(
                    f"'{path}' was chosen by {state['monitor']}; this run monitors {monitor}, "
                    "so a worse model could replace it. Resume with "
                    f"monitor={state['monitor']!r}, or start a new run. Received: "
                    f"monitor={monitor!r}")
            self.best, self.best_epoch = state.get("value"), state.get("epoch")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if self._nan_guard.nan_step is not None:
            return
        if value is None:
            if self.monitor.startswith("val_") and not any(k.startswith("val_") for k in logs):
                return  # no validation data: no best checkpoint
            raise ValueError(
                f"monitor={self.monitor!r} is not among the logged values "
                f"({', '.join(sorted(logs))}): {os.path.basename(self.path)} would never be "
                "written. Pass one of them, e.g. monitor='val_mean_iu'.")
        if not is_finite(value):
            return
        value = float(value)
        if self.best is None or self.sign * value > self.sign * self.best:
            with ema_weights(self.model):
                io.save_model(plain_model(self.model), self.path)
            self.best, self.best_epoch = value, epoch + 1
            io.write_json(self._state_path,
                          {"monitor": self.monitor, "value": value, "epoch": epoch + 1})


class HistoryWriter(keras.callbacks.Callback):
    """Appends each epoch's logs (plus wall and CPU seconds, and `learning_rate`: the rate of
    the epoch's last step) to `history.json`, keeping the epochs of earlier runs of the same
    directory, so history is continuous across resumes.

    Example:
        history = HistoryWriter("runs/a/history.json", guard)
    """

    def __init__(self, path, nan_guard):
        super().__init__()
        self.path = path
        self._nan_guard = nan_guard
        self._start = None
        self.epochs = []
        if os.path.exists(path):
            self.epochs = io.read_json(path, "Training history")

    def on_train_begin(self, logs=None):
        self._trimmed = False

    def on_epoch_begin(self, epoch, logs=None):
        if not getattr(self, "_trimmed", False):
            # The first epoch of this run follows the restored backup (which is restored after
            # this callback's on_train_begin); later epochs were lost with the interrupted run.
            self.epochs = [e for e in self.epochs if e["epoch"] <= epoch]
            self._trimmed = True
        self._start = (time.time(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": epoch + 1, "seconds": round(time.time() - self._start[0], 2),
                 "cpu_seconds": round(time.process_time() - self._start[1], 2)}
        entry.update({k: float(v) for k, v in (logs or {}).items()
                      if np.ndim(v) == 0 and not isinstance(v, str)})
        if "learning_rate" not in entry:  # Keras 3 logs none
            rate = last_step_rate(getattr(self.model, "optimizer", None))
            if rate is not None:
                entry["learning_rate"] = rate
        if self._nan_guard.nan_step is not None:
            entry["nan"] = True
        self.epochs = [e for e in self.epochs if e["epoch"] != epoch + 1] + [entry]
        io.write_json(self.path, self.epochs)


class TimeLimit(keras.callbacks.Callback):
    """Stops training at an epoch end once the next epoch would exceed `minutes` of training.

    The budget counts the training time of this `fit` call: wall-clock time (`clock="wall"`)
    or the CPU time of the whole process, all threads summed (`clock="cpu"`, as
    `time.process_time`). A CPU budget is fair on a shared machine: other jobs slow the run
    down but do not shorten it; on 2 fully used cores it passes twice as fast as the wall clock.

    Example:
        model.fit(train_ds, epochs=100, callbacks=[TimeLimit(minutes=15)])
        model.fit(train_ds, epochs=100, callbacks=[TimeLimit(60, clock="cpu")])
    """

    CLOCKS = {"wall": time.time, "cpu": time.process_time}

    def __init__(self, minutes, clock="wall"):
        super().__init__()
        check_choice("clock", clock, self.CLOCKS)
        self.seconds = float(minutes) * 60.0
        self.clock = clock
        self._now = self.CLOCKS[clock]
        self._start = None
        self._epoch_start = None
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self._start = self._now()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._now()

    def on_epoch_end(self, epoch, logs=None):
        now = self._now()
        if now - self._start + (now - self._epoch_start) > self.seconds:
            self.stopped_epoch = epoch + 1
            print(f"\nTime budget of {self.seconds / 60:.1f} {self.clock} min reached after "
                  f"epoch {epoch + 1}: stopping.", flush=True)
            self.model.stop_training = True


class Heartbeat:
    """Prints a line at most every `seconds`: progress where no bar can be drawn (output to a
    file, a pipe or CI logs, where Keras' progress bar prints only when it ends).

    Example:
        >>> beat = Heartbeat(60)
        >>> beat.tick(lambda: "evaluating: batch 3/10")  # quiet until a minute has passed
        False
    """

    def __init__(self, seconds=60.0, clock=time.monotonic, stream=None):
        self.seconds = float(seconds)
        self._clock = clock
        self._stream = stream
        self._last = clock()

    def reset(self):
        self._last = self._clock()

    def tick(self, message):
        """Prints `message()` (called only then) if `seconds` passed since the last line."""
        now = self._clock()
        if now - self._last < self.seconds:
            return False
        self._last = now
        print(message(), file=self._stream or sys.stdout, flush=True)
        return True


class ProgressLog(keras.callbacks.Callback):
    """A `Heartbeat` line during each epoch and its validation, for `fit(verbose=2)` (one line
    per epoch): without it a log shows nothing for the minutes an epoch takes on a CPU.

    Example:
        model.fit(train_ds, epochs=30, verbose=2, callbacks=[ProgressLog(60)])
    """

    def __init__(self, seconds=60.0, clock=time.monotonic, stream=None):
        super().__init__()
        self.heartbeat = Heartbeat(seconds, clock, stream)
        self._epoch = 0

    def _line(self, what, batch, logs):
        steps = self.params.get("steps") if what == "train" else None
        of = f"/{steps}" if steps else ""
        values = ", ".join(f"{key} {float(np.asarray(value)):.4g}"
                           for key, value in (logs or {}).items()
                           if np.size(value) == 1)
        epochs = self.params.get("epochs")
        where = f"epoch {self._epoch + 1}/{epochs}" if epochs else f"epoch {self._epoch + 1}"
        return f"{where} {what}: step {batch + 1}{of}" + (f" ({values})" if values else "")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.heartbeat.reset()

    def on_train_batch_end(self, batch, logs=None):
        self.heartbeat.tick(lambda: self._line("train", batch, logs))

    def on_test_batch_end(self, batch, logs=None):
        self.heartbeat.tick(lambda: self._line("validation", batch, logs))


def _ema_optimizer(model):
    """The model's optimizer when it keeps a moving average with at least one step in it."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    if not getattr(optimizer, "use_ema", False) or int(optimizer.iterations) == 0:
        return None
    return optimizer


@contextlib.contextmanager
def ema_weights(model):
    """Within the block, `model` holds the moving average of its weights (when its optimizer
    keeps one, `make_optimizer(ema_decay=...)`); the raw weights come back after it.

    Example:
        with ema_weights(model):
            model.save("ema.keras")
    """
    optimizer = _ema_optimizer(model)
    if optimizer is None:
        yield model
        return
    variables = model.trainable_weights
    raw = [variable.numpy() for variable in variables]
    optimizer.finalize_variable_values(variables)  # Keras' public way to put the averages in
    detach_weights(variables)  # JAX: else a compiled evaluate deletes the optimizer's averages
    try:
        yield model
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)


class EMAWeights(keras.callbacks.Callback):
    """Validates with the moving average of the weights during `fit` (Keras validates the raw
    weights and puts the averages in only when `fit` ends).

    The raw weights go back after each validation, so training, the backup for resuming
    (`SafeBackupAndRestore`) and the optimizer's averages are as without this callback;
    `BestCheckpoint` saves the averaged weights (`ema_weights`). When `fit` ends (and has put
    the averages in) the weights get buffers of their own on JAX (`detach_weights`). Does
    nothing when the optimizer keeps no average.

    Example:
        model.fit(train_ds, validation_data=val_ds, callbacks=[EMAWeights()])
    """

    def __init__(self):
        super().__init__()
        self._swap = None
        self._training = False

    def on_train_begin(self, logs=None):
        self._training = True

    def on_train_end(self, logs=None):
        self._training = False
        # `fit` has put the averages in (`finalize_variable_values`) before this: on JAX the
        # weights share the averages' buffers, which a later `evaluate` would delete.
        detach_averaged_weights(self.model)

    def on_test_begin(self, logs=None):
        if self._training:
            self._swap = ema_weights(self.model)
            self._swap.__enter__()

    def on_test_end(self, logs=None):
        if self._swap is not None:
            self._swap.__exit__(None, None, None)
            self._swap = None


def make_callbacks(run_dir, *, nan_guard, tensorboard=False, monitor="val_mean_iu",
                   extra=None, keep_backup=False):
    """The callbacks of a training run in `run_dir`.

    Args:
        keep_backup: keep `run_dir/backup` when `fit` ends (`SafeBackupAndRestore`'s
            `keep_at_end`; `keras_fcn.training.fit` deletes it once the run is complete).

    Returns:
        A list: `NaNGuard`, `EMAWeights` (validation with the weights' moving average, when
        the optimizer keeps one), `BestCheckpoint` (`best.keras`, `monitor` maximized, or
        minimized for a loss), `HistoryWriter`, `SafeBackupAndRestore` (`run_dir/backup`,
        every epoch, after the other two) and optionally TensorBoard (`run_dir/logs`).

    Example:
        >>> callbacks = make_callbacks("runs/a", nan_guard=NaNGuard(), tensorboard=True)
    """
    # The backup comes last: a run killed between two of these epoch-end writes resumes from
    # the backup's epoch and redoes the later ones. With the backup first, a kill before
    # history.json was written lost that epoch from the history for good (epochs [1, 3, 4]).
    callbacks = [
        nan_guard,
        EMAWeights(),
        BestCheckpoint(os.path.join(run_dir, BEST_MODEL_FILE), nan_guard, monitor=monitor),
        HistoryWriter(os.path.join(run_dir, HISTORY_FILE), nan_guard),
        SafeBackupAndRestore(os.path.join(run_dir, BACKUP_DIR), nan_guard,
                             keep_at_end=keep_backup),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")))
    return callbacks + list(extra or [])

