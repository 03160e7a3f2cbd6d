"""A resumed run reads the batches an uninterrupted run reads.

Keras' ``fit`` restores a backup's weights and optimizer, not where the training data was: a
new process starts the data at its first epoch again, so every resume would replay the first
epochs' order and random augmentation. :class:`ResumeDataOrder` moves the data on instead,
without reading it: a `keras_fcn.data.arrays` PyDataset (its draws are keyed by its epoch
counter) by its epochs, a finite seeded `tf.data.Dataset` (of known size or not) by making and
dropping the iterators Keras would have made (each new iterator advances the seeds of
``shuffle(reshuffle_each_iteration=True)`` and ``Dataset.random(rerandomize_each_iteration=
True)``). tests/test_resume_data_order.py and tests/backend_cases.py compare a resumed run's
losses with an uninterrupted run's, and fail if Keras changes how it reads the data.

Example:
    >>> from keras_fcn.training.data_order import advance_data

    advance_data(train_ds, 3, fit_iterators_per_epoch())  # the next epoch reads epoch 4's
"""

import keras

from keras_fcn import _tf


def fit_iterators_per_epoch(data=None):
    """How many iterators Keras' ``fit`` makes of a finite `tf.data.Dataset` ``data`` per
    epoch (with ``steps_per_epoch=None``): 2 on the TensorFlow backend for a set of known size
    (Keras 3's epoch iterator makes the next epoch's iterator when an epoch of known length
    ends, and a new one when the next begins), else 1: a set of unknown size (``filter``, a
    generator) gets one per epoch, and on JAX and PyTorch the iterators are Python generators
    that start when first read."""
    if not _tf.on_tensorflow():
        return 1
    return 1 if data is not None and int(data.cardinality()) < 0 else 2


def fit_build_iterators(model):
    """How many iterators of a `tf.data.Dataset` Keras' ``fit`` of a freshly built ``model``
    makes before its first epoch: one to read the batch that builds the metrics, under a
    tf.distribute strategy on TensorFlow (``_maybe_symbolic_build``) and always on JAX and
    PyTorch (``_symbolic_build``); none on TensorFlow without a strategy."""
    if _tf.on_tensorflow():
        return 1 if getattr(model, "_distribute_strategy", None) is not None else 0
    return 1


def advance_data(data, epochs, iterators_per_epoch=1, extra=0):
    """Moves training data on by ``epochs`` epochs (and ``extra`` more moves: PyDataset epochs
    or tf.data iterators) without reading it.

    Returns:
        True if the data moved on (or had nothing to move), False if it cannot be moved: an
        endless tf.data set, or another kind of data.

    Example:
        advance_data(train_ds, 3, fit_iterators_per_epoch())  # a resume at epoch 4
    """
    if _unmovable(data, steps_per_epoch=None) is not None:
        return epochs + extra == 0
    if isinstance(data, keras.utils.PyDataset):
        data.epoch += epochs + extra
    else:  # a finite tf.data.Dataset
        for _ in range(epochs * iterators_per_epoch + extra):
            iter(data)
    return True


def _unmovable(data, steps_per_epoch):
    """Why ``data`` cannot be moved on in a fit with ``steps_per_epoch``, or None."""
    if isinstance(data, keras.utils.PyDataset) and hasattr(data, "epoch_order"):
        if steps_per_epoch not in (None, len(data)):
            return (f"steps_per_epoch={steps_per_epoch} of its {len(data)} batches: Keras "
                    "keeps one iterator across epochs")
        return None
    if _tf.HAS_TENSORFLOW:
        import tensorflow as tf

        if isinstance(data, tf.data.Dataset):
            if steps_per_epoch is not None:
                return "an endless stream for steps_per_epoch / --steps_per_epoch"
            if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
                return "an endless tf.data set (no epochs to move on)"
            return None
    return f"a {type(data).__name__}, which keras_fcn cannot move on"


class ResumeDataOrder(keras.callbacks.Callback):
    """On a resume, moves the training data on (:func:`advance_data`) past the epochs the
    backup holds and past ``skipped_fits``: the epochs of each earlier ``fit`` over the same
    data that an uninterrupted run made and this process did not (the finished stages a
    resumed staged run skips; each such fit also moved the data on once before its first
    epoch, as this one did: measured here for a PyDataset, :func:`fit_build_iterators` for
    tf.data). Where the data cannot be moved on, it says so and why.

    Runs after Keras' ``BackupAndRestore`` (which sets ``model._initial_epoch``).
    """

    def __init__(self, data, skipped_fits=(), steps_per_epoch=None):
        super().__init__()
        self.data, self.skipped_fits = data, tuple(int(e) for e in skipped_fits)
        self.steps_per_epoch = steps_per_epoch
        self.start_epoch = getattr(data, "epoch", None)  # before fit moves a PyDataset

    def on_train_begin(self, logs=None):
        initial = getattr(self.model, "_initial_epoch", None) or 0
        epochs = initial + sum(self.skipped_fits)
        if not epochs and not self.skipped_fits:
            return
        reason = _unmovable(self.data, self.steps_per_epoch)
        if reason is None:
            if isinstance(self.data, keras.utils.PyDataset):
                before = self.data.epoch - self.start_epoch  # this fit's move before epoch 1
                advance_data(self.data, epochs, extra=before * len(self.skipped_fits))
            else:
                advance_data(self.data, epochs, fit_iterators_per_epoch(self.data),
                             extra=fit_build_iterators(self.model) * len(self.skipped_fits))
            return
        if initial >= (self.params or {}).get("epochs", initial + 1):
            return  # every epoch of this fit is done: it trains nothing, so nothing to say
        print(f"Resuming after {epochs} epochs: the training data starts again from its first "
              f"batch ({reason}).", flush=True)
