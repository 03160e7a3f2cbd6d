"""A kill in the middle of `fit`, for the resume tests: nothing after it runs."""

import keras


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs (BaseException: no `except Exception`
    catches it)."""


class Epochs(keras.callbacks.Callback):
    """Records the epochs that begin (1-based); raises `Killed` at the start of `kill_at`."""

    def __init__(self, kill_at=None):
        super().__init__()
        self.kill_at, self.epochs = kill_at, []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.kill_at:
            raise Killed()
        self.epochs.append(epoch + 1)
