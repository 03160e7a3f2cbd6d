"""What a full disk tells the user: :class:`DiskFullError` names the output, the free space
and what to do next for the operation that was writing (:func:`writing`).

keras_fcn.io's writers raise it (and re-export these names: ``keras_fcn.io.DiskFullError``).

Example:
    >>> with writing("export"):
    ...     "export again" in str(disk_full_error("m.tflite"))
    True
"""

import contextlib
import contextvars
import errno
import os
import shutil


class DiskFullError(OSError):
    """An output could not be written for lack of space (``errno`` ENOSPC); the message names
    the path and the free space, and the previous file at that path is unchanged."""

    def __str__(self):
        return self.strerror or super().__str__()


_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How writers that do not raise OSError (h5py, TensorFlow's file system, zipfile) say it.
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "errno = 28")


def is_disk_full(error):
    """True if ``error``, or an exception it was raised from, says the disk is full."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "errno", None) in _DISK_FULL_ERRNOS or any(
                text in str(error) for text in _DISK_FULL_TEXTS):
            return True
        error = error.__cause__ or error.__context__
    return False


# What to do once space is freed, by the operation that was writing (see `writing`).
_DISK_FULL_ADVICE = {
    "training": "Free some space and continue the run with --resume (training.fit resumes "
                "from the run's backup)",
    "export": "Free some space and export again",
    "predict": "Free some space and run the prediction again",
}
_GENERIC_ADVICE = "Free some space and write it again"
_operation = contextvars.ContextVar("keras_fcn_io_operation", default=None)


@contextlib.contextmanager
def writing(operation):
    """Within the block, the writes are those of ``operation`` ("training", "export",
    "predict" or any other name): a :class:`DiskFullError` raised there gives that operation's
    advice. ``keras_fcn.io.directory_lock`` sets it for its block; ``None`` keeps the outer one.

    Example:
        >>> with writing("export"):
        ...     "export again" in str(disk_full_error("m.tflite"))
        True
    """
    if operation is None:
        yield
        return
    token = _operation.set(operation)
    try:
        yield
    finally:
        _operation.reset(token)


def disk_full_error(path, error=None, operation=None):
    """The :class:`DiskFullError` for ``path``: names it, the free space left on its file
    system, what became of the previous file and what to do next, for ``operation``
    ("training": continue with --resume; "export"; "predict"; default: the operation of the
    enclosing :func:`writing` block, else a plain "write it again").

    Example:
        >>> str(disk_full_error("/mnt/small/best.keras", operation="training"))  # doctest: +SKIP
        "No space left on the device to write '/mnt/small/best.keras': 4.0 KiB free ..."
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = f"{shutil.disk_usage(folder).free / 1024:.1f} KiB free"
    except OSError:
        free = "free space unknown"
    kept = ("the previous file there is unchanged" if os.path.exists(path)
            else "nothing was written there")
    detail = f" ({error})" if error is not None else ""
    operation = operation or _operation.get()
    advice = _DISK_FULL_ADVICE.get(operation, _GENERIC_ADVICE)
    message = f"No space left on the device to write {path!r}: {free} in {folder!r}; {kept}. " \
              f"{advice}.{detail}"
    return DiskFullError(errno.ENOSPC, message)
