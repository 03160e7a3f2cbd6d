"""Keras' BackupAndRestore made safe against kills and silent mismatches.

:class:`SafeBackupAndRestore` writes the backup's weights and epoch atomically and refuses a
restore that would quietly go wrong (another optimizer's state, more epochs than asked for).
It overrides private methods of Keras' callback; :func:`check_backup_internals` refuses to
start on a Keras that renamed them.

Example:
    backup = SafeBackupAndRestore("runs/a/backup", NaNGuard(steps_per_epoch=100))
"""

import os
import re
import warnings

import keras
import numpy as np

from keras_fcn import _tf, io
from keras_fcn.training.distribute import PATCHED_KERAS as KERAS_CHECKED

BACKUP_EPOCH_ATTR = "keras_fcn_epoch"  # in the backup's weights file: the epoch they end
# Also there: the states of the model's random generators (dropout's `keras.random.
# SeedGenerator`s: variables, but not weights, so `save_weights` leaves them out), in the
# order of `model.variables`, and on PyTorch its global generators (Keras' unseeded dropout
# draws from them): a run resumed with them draws the dropout masks of an uninterrupted run.
RANDOM_STATES_GROUP = "keras_fcn_random_states"
TORCH_STATES_GROUP = "keras_fcn_torch_random_states"


# The private parts of Keras' BackupAndRestore that SafeBackupAndRestore overrides or reads
# (in the Keras releases of distribute.PATCHED_KERAS). A Keras that renames them would leave
# the atomic writes and the epoch checks silently unused: the backup refuses to start instead.
BACKUP_INTERNALS = {"methods": ("_save_model", "_load_model"),
                    "attributes": ("_weights_path", "_training_metadata_path",
                                   "_current_epoch", "_last_batch_seen")}


def check_backup_internals(backup):
    """Raises a RuntimeError naming the Keras version unless ``backup`` (a
    `keras.callbacks.BackupAndRestore`) has the private methods and attributes
    :class:`SafeBackupAndRestore` relies on (``BACKUP_INTERNALS``)."""
    missing = [f"BackupAndRestore.{name}()" for name in BACKUP_INTERNALS["methods"]
               if not callable(getattr(keras.callbacks.BackupAndRestore, name, None))]
    missing += [f"BackupAndRestore.{name}" for name in BACKUP_INTERNALS["attributes"]
                if not hasattr(backup, name)]
    if missing:
        raise RuntimeError(
            f"Keras {keras.__version__} has no {', '.join(missing)}: keras_fcn's safe backup "
            "(atomic weights, the epoch it holds) was written against Keras "
            f"{'-'.join('.'.join(map(str, v)) for v in KERAS_CHECKED)} and needs updating for "
            "this release.")


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that writes its backup atomically, does not back up weights after a
    NaN stop (`NaNGuard`), and keeps the backup in that case so a fixed run can resume from
    the last good epoch.

    Keras writes the backup weights in place: a SIGKILL during that write left a truncated
    `latest.weights.h5` that made `--resume` fail (found by the random-kill test). Here the
    weights and the epoch go to temporary files that are renamed into place, and the weights
    file carries its epoch (attribute `keras_fcn_epoch`), which a resume trusts over
    `training_metadata.json`: a kill between the two renames resumed one epoch early from the
    newer weights, training that epoch twice.

    A restore that would silently go wrong is refused with a ValueError: a backup whose
    optimizer state does not fit the optimizer (Keras only warns and starts the optimizer
    afresh: step 0 of the learning-rate schedule, no momentum), and a backup of more epochs
    than `fit` is asked for. A constant learning rate is the one this run's optimizer was given
    (a `--resume` may change it), not the backup's.

    Args:
        backup_dir: the backup folder.
        nan_guard: the run's `NaNGuard`.
        keep_at_end: keep the backup when `fit` ends (Keras deletes it); the caller deletes it
            once the run's last files are written (`keras_fcn.training.fit` does, after
            `metrics.json`), so a kill after the last epoch resumes without training again.

    Example:
        backup = SafeBackupAndRestore("runs/a/backup", guard)
    """

    def __init__(self, backup_dir, nan_guard, keep_at_end=False, **kwargs):
        super().__init__(backup_dir, **kwargs)
        check_backup_internals(self)
        self._nan_guard = nan_guard
        self._keep_at_end = keep_at_end

    def on_epoch_end(self, epoch, logs=None):
        if self._nan_guard.nan_step is None:
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        import h5py

        def write(tmp):
            self.model.save_weights(tmp, overwrite=True)
            with h5py.File(tmp, "a") as f:
                f.attrs[BACKUP_EPOCH_ATTR] = self._current_epoch
                states = f.create_group(RANDOM_STATES_GROUP)
                for i, state in enumerate(random_states(self.model)):
                    states[str(i)] = keras.ops.convert_to_numpy(state.value)
                torch_states = f.create_group(TORCH_STATES_GROUP)
                for i, state in enumerate(_torch_generator_states()):
                    torch_states[str(i)] = state

        os.makedirs(self.backup_dir, exist_ok=True)
        io.atomic_write(self._weights_path, write)
        io.write_json(self._training_metadata_path,
                      {"epoch": self._current_epoch, "batch": self._last_batch_seen})

    def _load_model(self):
        # The backup's optimizer variables include a constant learning rate: the rate this run
        # was given (a --resume may change it) is put back after them.
        rate = _constant_rate(getattr(self.model, "optimizer", None))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            super()._load_model()
        if rate is not None:
            rate[0].assign(rate[1])
        for warning in caught:
            text = str(warning.message)
            if text.startswith("Skipping variable loading for optimizer"):
                counts = re.search(r"has (\d+) variables whereas the saved optimizer has "
                                   r"(\d+)", text)
                detail = (f"this one has {counts.group(1)} variables, the backup's "
                          f"{counts.group(2)}" if counts else text[:200])
                raise ValueError(
                    f"The backup in '{self.backup_dir}' holds the state of another optimizer "
                    f"({detail}): resuming would start the "
                    "optimizer afresh (step 0 of the learning-rate schedule, no momentum). Were "
                    "--optimizer, --momentum, --ema_decay or --precision (float16 adds a "
                    "loss-scale state) changed since the run began? Resume with the run's "
                    "flags, or start a new run (another --output_dir).")
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
        if not os.path.exists(self._weights_path):
            return
        import h5py

        with h5py.File(self._weights_path, "r") as f:
            epoch = f.attrs.get(BACKUP_EPOCH_ATTR)
            saved, torch_saved = (
                [group[str(i)][()] for i in range(len(group))] if group is not None else []
                for group in (f.get(RANDOM_STATES_GROUP), f.get(TORCH_STATES_GROUP)))
        states = random_states(self.model)
        if len(saved) == len(states):  # a backup of an older release has none: kept as is
            for state, value in zip(states, saved):
                state.assign(value)
        _set_torch_generator_states(torch_saved)
        if epoch is not None:  # the weights' own epoch wins over training_metadata.json's
            self.model._initial_epoch = int(epoch)
        trained, epochs = self.model._initial_epoch, self.params.get("epochs")
        if trained is not None and epochs is not None and trained > epochs:
            raise ValueError(
                f"The backup in '{self.backup_dir}' has trained {trained} epochs, more than "
                f"the {epochs} asked for: the run would end as a {epochs}-epoch run holding "
                f"{trained} epochs. Resume with --epochs={trained} or more, or start a new "
                f"run. Received: epochs={epochs}")

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        check_workers_agree(self.model, self.backup_dir)

    def on_train_end(self, logs=None):
        if self._nan_guard.nan_step is None and not self._keep_at_end:
            super().on_train_end(logs)


def random_states(model):
    """The state variables of `model`'s random generators (`keras.random.SeedGenerator`: one
    per dropout layer), in the order of `model.variables`.

    Example:
        >>> import keras
        >>> inputs = keras.Input((4,))
        >>> model = keras.Model(inputs, keras.layers.Dropout(0.5)(inputs))
        >>> [tuple(state.shape) for state in random_states(model)]
        [(2,)]
    """
    return [variable for variable in model.variables
            if variable.path.split("/")[-1] == "seed_generator_state"]


def _torch_generator_states():
    """PyTorch's global generator states (CPU, then each GPU's) on the torch backend, else
    none: numpy uint8 arrays."""
    if keras.backend.backend() != "torch":
        return []
    import torch

    states = [torch.get_rng_state()]
    if torch.cuda.is_available():
        states += torch.cuda.get_rng_state_all()
    return [state.cpu().numpy() for state in states]


def _set_torch_generator_states(states):
    if keras.backend.backend() != "torch" or not states:
        return
    import torch

    torch.set_rng_state(torch.from_numpy(states[0]))
    if torch.cuda.is_available() and len(states) == 1 + torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.from_numpy(state) for state in states[1:]])


def _constant_rate(optimizer):
    """``(variable, value)`` of ``optimizer``'s constant learning rate (that of the optimizer a
    `keras.optimizers.LossScaleOptimizer` wraps), or None for a schedule or no optimizer.

    Example:
        >>> variable, value = _constant_rate(keras.optimizers.Adam(1e-4))
        >>> round(float(value), 6)
        0.0001
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    # public: a constant rate is the optimizer's variable, a schedule's is a computed value
    rate = getattr(optimizer, "learning_rate", None)
    if not isinstance(rate, keras.Variable):
        return None
    return rate, keras.ops.convert_to_numpy(rate).copy()


def _weights_checksum(model):
    """One float64 summing every weight of ``model`` (this worker's copy), in a fixed order."""
    total = 0.0
    for weight in model.get_weights():
        weight = np.asarray(weight, "float64")
        total += np.abs(weight).sum() + 0.5 * weight.sum()  # a sign flip changes it too
    return float(total)


def check_workers_agree(model, backup_dir):
    """Under `MultiWorkerMirroredStrategy`, raises a RuntimeError on every worker when the
    workers start `fit` at different epochs or from different weights.

    Each worker restores its own backup: one that finds none (a folder the chief sees and it
    does not) starts at epoch 1 from its initial weights while the chief resumes, and the run
    goes on with weights that differ between workers (the gradients are summed, the weights
    never compared) until a worker ends early. Gathered across workers after the restore,
    the epochs and a checksum of the weights must be equal. Nothing is done otherwise.
    """
    if not _on_multi_worker(model):
        return
    import tensorflow as tf

    strategy = model.distribute_strategy
    mine = tf.constant([[float(model._initial_epoch or 0), _weights_checksum(model)]],
                       tf.float64)
    # Named functions: AutoGraph could not tell two lambdas on one line apart (4 warnings).
    @tf.autograph.experimental.do_not_convert
    def replica_state():
        return tf.identity(mine)

    @tf.function(autograph=False)
    def gather():
        return strategy.gather(strategy.run(replica_state), 0)

    states = gather().numpy()  # in a tf.function: tf.distribute warns of an eager run()
    epochs, sums = states[:, 0], states[:, 1]
    if (epochs == epochs[0]).all() and np.allclose(sums, sums[0], rtol=1e-12, atol=0):
        return
    detail = "; ".join(f"replica {i}: epoch {int(e)}, weights checksum {c:.9g}"
                       for i, (e, c) in enumerate(states))
    raise RuntimeError(
        "The workers would train from different states (" + detail + "): the backup in "
        f"'{backup_dir}' is not the same on every worker. A resumed multi-worker run needs its "
        "output directory on a file system that every worker sees (keras_fcn's recipes copy "
        "the chief's run folder to the other workers when they can read it).")


def _on_multi_worker(model):
    if not _tf.on_tensorflow():
        return False
    import tensorflow as tf

    strategy = getattr(model, "distribute_strategy", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
