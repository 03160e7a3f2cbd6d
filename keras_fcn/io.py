"""Writing outputs safely: one atomic writer for files and folders, with ordinary permissions.

Every file keras_fcn writes (models, checkpoints, JSON, PNG, NPY, videos, TFLite, SavedModel
folders) goes through :func:`atomic_write` or :func:`atomic_write_dir`: the output is written
to a temporary name in the destination folder and renamed into place, so an interrupted run
never leaves a half-written file where a complete one was, and it gets the permissions a plain
``open`` would give under the user's umask (``mkstemp`` alone creates files 0600).

Example:
    >>> from keras_fcn import io
    >>> io.write_json("runs/a/metrics.json", {"mean_iu": 0.61})
    'runs/a/metrics.json'

    io.save_model(model, "runs/a/best.keras")
"""

import atexit
import contextlib
import errno
import json
import math
import os
import platform
import re
import shutil
import tempfile
import time

import numpy as np

# The full-disk messages live in keras_fcn.disk_full; they stay reachable as keras_fcn.io's.
from keras_fcn.disk_full import (  # noqa: F401
    DiskFullError,
    disk_full_error,
    is_disk_full,
    writing,
)

# Image files the readers, predict and export accept (what Pillow decodes).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def natural_key(name):
    """Sort key that orders the numbers in names by value: ``frame_2`` before ``frame_10``
    (the order of a folder of frames, padded or not).

    Example:
        >>> sorted(["f10.png", "f2.png", "f1.png"], key=natural_key)
        ['f1.png', 'f2.png', 'f10.png']
    """
    parts = re.split(r"(\d+)", name)
    return [int(part) if i % 2 else part.casefold() for i, part in enumerate(parts)], name


def is_inside(path, folder):
    """True if ``path`` is ``folder`` or lies under it (both as real paths: symbolic links
    resolved); False for paths on different drives.

    Example:
        >>> is_inside("runs/a/best.keras", "runs"), is_inside("runs2", "runs")
        (True, False)
    """
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def set_default_permissions(path):
    """Gives ``path`` (a file, or a folder and everything in it) the permissions that
    ``open``/``os.makedirs`` give under the current umask: 0644/0755 under umask 0022."""
    umask = os.umask(0)
    os.umask(umask)
    if not os.path.isdir(path):
        os.chmod(path, 0o666 & ~umask)
        return
    os.chmod(path, 0o777 & ~umask)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


def check_writable(path, overwrite):
    """Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is False; creates the
    parent folder otherwise."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} exists; pass overwrite=True (--overwrite) to replace it.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def expect_folder(path, flag=None):
    """Raises NotADirectoryError naming ``path`` (``flag``: "--output_dir") if it is a file."""
    if path and os.path.exists(path) and not os.path.isdir(path):
        named = f"{flag}={os.fspath(path)!r}" if flag else f"The output folder {os.fspath(path)!r}"
        raise NotADirectoryError(f"{named} is a file; expected a folder.")


_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def unwritable_folder(folder):
    """Within the block, an OS refusal to write in ``folder`` (no permission, a read-only file
    system) is a PermissionError naming the folder, not the temporary or lock file it names."""
    try:
        yield
    except OSError as error:
        if error.errno in _UNWRITABLE:
            raise PermissionError(f"Cannot write in the folder {folder!r} ({error.strerror}): "
                                  "choose a folder this process can write to.") from None
        raise


def atomic_write(path, write_fn, overwrite=True):
    """Writes a file through a temporary file in the same folder, then renames it.

    Args:
        path: destination path.
        write_fn: called with the temporary path (which has the same extension, so writers
            that pick a format from it work); must create that file.
        overwrite: if False and ``path`` exists, raises ``FileExistsError``.

    Returns:
        ``path``.

    Example:
        atomic_write("out.keras", model.save)
    """
    path = os.fspath(path)
    check_writable(path, overwrite)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    # All the suffixes ("x.weights.h5" -> ".weights.h5"): writers pick the format from them.
    suffix = _temp_suffix(base)
    tmp = None
    try:
        with unwritable_folder(folder):
            fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=folder)
        os.close(fd)
        write_fn(tmp)
        set_default_permissions(tmp)
        os.replace(tmp, path)
    except Exception as error:
        _remove(tmp)
        if is_disk_full(error):
            raise disk_full_error(path, error) from error
        if tmp and isinstance(error, OSError) and error.filename == tmp:  # name the target
            raise OSError(error.errno, error.strerror, path) from error
        raise
    finally:
        _remove(tmp)
    return path


def atomic_write_dir(path, write_fn, overwrite=True):
    """Writes a folder (a SavedModel, say) under a temporary name, then swaps it into place.

    Args:
        path: destination folder.
        write_fn: called with the temporary folder path (it does not exist yet).
        overwrite: if False and ``path`` exists, raises ``FileExistsError``; if True an
            existing folder is replaced only after the new one is complete.

    Returns:
        ``path``.
    """
    path = os.fspath(path)
    check_writable(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    holder = None
    try:
        with unwritable_folder(parent):
            holder = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
        tmp = os.path.join(holder, "out")
        write_fn(tmp)
        set_default_permissions(tmp)
        if os.path.isdir(path):
            old = os.path.join(holder, "old")
            os.replace(path, old)
        elif os.path.exists(path):
            os.remove(path)
        os.replace(tmp, path)
    except Exception as error:
        _remove(holder)
        if is_disk_full(error):
            raise disk_full_error(path, error) from error
        raise
    finally:
        _remove(holder)
    return path


class DownloadError(RuntimeError):
    """A file could not be downloaded (offline, or it failed its checksum); the message says
    where to put a copy fetched on another machine."""


def _temp_suffix(base):
    """The suffix :func:`atomic_write` gives the temporary file of ``base``."""
    return base[base.index(".", 1):] if "." in base[1:] else ".tmp"


_TEMP_RANDOM = re.compile(r"[a-z0-9_]{8}")  # the random part of tempfile's names


def stale_temp_files(folder):
    """The temporary files (and SavedModel folders) that :func:`atomic_write` and
    :func:`atomic_write_dir` left in ``folder`` when their process was killed mid-write:
    ``.<name>.<8 random characters><suffix of name>``, hidden and never an output. Only the
    folder's own entries; sorted.

    Example:
        >>> os.makedirs("out", exist_ok=True)
        >>> for name in (".clip.mp4.30whb4i1.mp4", ".notes.txt", "clip.mp4"):
        ...     open(os.path.join("out", name), "w").close()
        >>> stale_temp_files("out")
        ['.clip.mp4.30whb4i1.mp4']
    """
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        is_dir = os.path.isdir(os.path.join(folder, name))
        for dot in range(2, len(name) - 8):  # name = "." + base + "." + random + suffix
            if name[dot] != "." or not _TEMP_RANDOM.fullmatch(name[dot + 1:dot + 9]):
                continue
            base, rest = name[1:dot], name[dot + 9:]
            if rest == ("" if is_dir else _temp_suffix(base)):
                found.append(name)
                break
    return found


def _remove(path):
    """Removes a temporary file or folder if it is there."""
    if path is None or not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


def write_bytes(path, data, overwrite=True):
    """Writes ``bytes`` (or ``str``, as UTF-8) to ``path`` atomically."""
    mode = "w" if isinstance(data, str) else "wb"

    def write(tmp):
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            f.write(data)

    return atomic_write(path, write, overwrite)


def jsonable(obj):
    """``obj`` with numpy values turned into Python ones and non-finite floats into None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path, obj, overwrite=True):
    """Writes ``obj`` as indented JSON, atomically (see :func:`jsonable`)."""
    return write_bytes(path, json.dumps(jsonable(obj), indent=2) + "\n", overwrite)


def read_json(path, what="JSON file"):
    """Reads a JSON file; a missing or broken file raises an error that names it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{what} {path!r} is not valid JSON: {error}") from error


def save_model(model, path, overwrite=True):
    """Saves a Keras model atomically: ``path`` always holds a complete model.

    Example:
        save_model(model, "runs/a/best.keras")
    """
    return atomic_write(path, model.save, overwrite)


def save_png(path, image, overwrite=True):
    """Saves a PIL image (or a uint8 array) as PNG, atomically."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype="uint8"))
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), overwrite)


def save_npy(path, array, overwrite=True):
    """Saves a numpy array atomically."""

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array))

    return atomic_write(path, write, overwrite)


# ------------------------------------------------------------------ output directory lock ----

LOCK_FILE = ".keras_fcn.lock"
_held_locks = {}  # real path of a folder -> file descriptor of its locked LOCK_FILE


class DirectoryLockedError(FileExistsError):
    """Another process (its pid and host named in the message and in ``holder``) writes to
    the output folder."""

    holder = None  # "pid 123 on host, since ...", where the lock file says it


def _lock_holder(fd):
    """What the lock file open at ``fd`` says of its holder ("pid 123 on host, since ...")."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return (f"pid {info['pid']} on {info['host']}, {info['what']} started "
                f"{info['started']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown: it is starting"


def lock_directory(folder, what="keras_fcn"):
    """Takes the lock of the output folder ``folder`` for this process: until
    :func:`unlock_directory` or the end of the process, another process that asks for it gets
    :class:`DirectoryLockedError` naming the folder and the holder's pid.

    The lock is an ``fcntl.flock`` on ``folder/.keras_fcn.lock``, which also holds the pid, the
    host, ``what`` and the start time. The kernel releases it when the process ends, killed or
    not, so the lock file a killed run leaves is stale and the next run takes it over (a
    process that exits normally removes its lock files). Taking a
    lock this process holds already does nothing. (Where ``fcntl`` is missing, on Windows,
    nothing is locked.)

    Returns:
        The lock file's path, or None where nothing could be locked.

    Raises:
        DirectoryLockedError: another live process holds the lock.

    Example:
        >>> lock_directory("runs/a", "training")
        '.../runs/a/.keras_fcn.lock'
    """
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    expect_folder(folder)
    folder = os.path.realpath(os.path.expanduser(os.fspath(folder)))
    path = os.path.join(folder, LOCK_FILE)
    if folder in _held_locks:
        return path
    for _ in range(10):
        with unwritable_folder(folder):
            os.makedirs(folder, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            error = DirectoryLockedError(
                f"Output directory {folder!r} is in use by another process ({holder}). Wait "
                "for it to end or choose another directory; two processes writing one "
                "directory would overwrite each other's files.")
            error.holder = holder
            raise error from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file that its last holder unlinked on release
            break
        os.close(fd)
    else:
        raise DirectoryLockedError(f"Could not lock output directory {folder!r}: its lock file "
                                   f"{path!r} keeps being replaced.")
    info = {"pid": os.getpid(), "host": platform.node(), "what": what,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    try:
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    except OSError as error:  # a full disk: locked all the same, the holder is not named
        if not is_disk_full(error):
            os.close(fd)
            raise
    if not _held_locks:
        atexit.register(lambda: [unlock_directory(f) for f in list(_held_locks)])  # none left
    _held_locks[folder] = fd
    return path


def holds_lock(folder):
    """True if this process holds the lock of ``folder`` (see :func:`lock_directory`)."""
    return os.path.realpath(os.path.expanduser(os.fspath(folder))) in _held_locks


def unlock_directory(folder):
    """Releases this process's lock of ``folder`` (see :func:`lock_directory`) and removes the
    lock file; does nothing if this process does not hold it."""
    folder = os.path.realpath(os.path.expanduser(os.fspath(folder)))
    fd = _held_locks.pop(folder, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):  # unlinked while still locked: see lock_directory
        os.remove(os.path.join(folder, LOCK_FILE))
    os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def directory_lock(folder, what="keras_fcn"):
    """Holds the lock of the output folder ``folder`` within the block (see
    :func:`lock_directory`); a lock this process held before stays held after it. Taking it
    removes the temporary files a killed writer left there (:func:`stale_temp_files`). ``folder``
    None or "" locks nothing. The block's writes are ``what``'s (:func:`writing`): a full disk
    there gives the advice for ``what``.

    Example:
        with directory_lock("exports/camvid", "export"):
            export_tflite(model, "exports/camvid/model.tflite")
    """
    if not folder:
        with writing(what):
            yield None
        return
    held_before = holds_lock(folder)
    existed = os.path.isdir(folder)
    path = lock_directory(folder, what)
    if not held_before:  # no other keras_fcn writer here now: a killed one's temporary files
        for name in stale_temp_files(folder):
            _remove(os.path.join(folder, name))
    try:
        with writing(what):  # a full disk in the block gives advice for ``what``
            yield path
    finally:
        if not held_before:
            unlock_directory(folder)
            if not existed:  # a run that wrote nothing leaves no empty folder behind
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
