"""The ImageNet backbones: downloading the Keras VGG16 and MobileNetV2 weights, and the VGG16
layer names of ``keras.applications`` mapped to the paper's (net surgery of ``fc1``/``fc2``
into ``fc6``/``fc7``).

Files come through ``keras.utils.get_file``: downloaded once, cached in ``<cache>/models``
(``cache_dir``, else ``$KERAS_HOME``, else ``~/.keras``: where ``keras.applications`` caches
the same files), verified when a checksum is known, so later calls work offline.

Example:
    >>> path = fetch_vgg16_imagenet_weights()  # doctest: +SKIP
"""

import errno
import hashlib
import logging
import os
import pathlib
import time
import urllib.parse

from keras_fcn.io import (LOCK_FILE, DirectoryLockedError, DownloadError, lock_directory,
                          unlock_directory)

log = logging.getLogger("keras_fcn")

VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
VGG16_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + VGG16_WEIGHTS_FILE
)
VGG16_WEIGHTS_MD5 = "64373286793e3c8b2b4e3219cbf3544b"

MOBILENET_V2_WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
MOBILENET_V2_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
    + MOBILENET_V2_WEIGHTS_FILE
)
# keras/src/applications/mobilenet_v2.py downloads this file without a checksum (Keras
# publishes none), so by default the file is verified by structure instead: every trunk
# layer must be found in it with the right shapes. Pass file_hash to also check bytes.
MOBILENET_V2_WEIGHTS_HASH = None

# keras.applications VGG16 layer names -> the paper's names.
KERAS_VGG16_TO_FCN = {
    "block1_conv1": "conv1_1", "block1_conv2": "conv1_2",
    "block2_conv1": "conv2_1", "block2_conv2": "conv2_2",
    "block3_conv1": "conv3_1", "block3_conv2": "conv3_2", "block3_conv3": "conv3_3",
    "block4_conv1": "conv4_1", "block4_conv2": "conv4_2", "block4_conv3": "conv4_3",
    "block5_conv1": "conv5_1", "block5_conv2": "conv5_2", "block5_conv3": "conv5_3",
    "fc1": "fc6", "fc2": "fc7",
}
VGG16_FCN_LAYERS = tuple(KERAS_VGG16_TO_FCN.values())


HASH_DIGITS = {64: "SHA-256", 32: "MD5"}  # what keras.utils.get_file checks, by length


def check_file_hash(file_hash):
    """The ``file_hash`` argument of the downloads in lower case, or None; refused before any
    download when ``keras.utils.get_file`` could never match it (it compares lower-case hex
    digests, and takes 64 digits for SHA-256, any other length for MD5).

    Raises:
        ValueError: not a SHA-256 or MD5 hex digest (a SHA-1, as the BVLC model zoo
            publishes, has 40 digits), naming the value.

    Example:
        >>> check_file_hash("64373286793E3C8B2B4E3219CBF3544B")
        '64373286793e3c8b2b4e3219cbf3544b'
    """
    if file_hash is None:
        return None
    text = file_hash.strip().lower() if isinstance(file_hash, str) else None
    if text is None or len(text) not in HASH_DIGITS or text.strip("0123456789abcdef"):
        sha1 = (" A 40-digit hash is a SHA-1 (what the BVLC model zoo publishes), which "
                "keras.utils.get_file cannot check: compute the file's sha256 instead."
                if text is not None and len(text) == 40 else "")
        raise ValueError("file_hash must be the SHA-256 (64 hex digits) or MD5 (32 hex digits) "
                         f"of the file.{sha1} Received: file_hash={file_hash!r}")
    return text


def file_digest(path, file_hash):
    """The hex digest of the file at ``path`` that ``file_hash`` is compared with: SHA-256 for
    64 hex digits, else MD5 (as ``keras.utils.get_file`` reads it).

    Example:
        >>> file_digest("/data/w.h5", "0" * 32)  # doctest: +SKIP
        '64373286793e3c8b2b4e3219cbf3544b'
    """
    digest = hashlib.sha256() if len(file_hash) == 64 else hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_matches(path, file_hash):
    """True if the file at ``path`` has ``file_hash`` (64 hex digits: SHA-256, else MD5, as
    ``keras.utils.get_file`` reads it); any file matches ``file_hash=None``.

    Example:
        >>> file_matches("/data/w.h5", None)
        True
    """
    if file_hash is None:
        return True
    return file_digest(path, file_hash) == file_hash.lower()


def cached_mismatch(path, file_hash):
    """A sentence saying that the file at ``path`` fails ``file_hash`` (naming both digests and
    what to do), or ``""`` when it matches, there is no file or no hash: what an error of a
    failed download adds when a wrong file already stands at its place in the cache.

    Example:
        >>> cached_mismatch("/nowhere/w.h5", "0" * 32)
        ''
    """
    if file_hash is None or not os.path.isfile(path) or file_matches(path, file_hash):
        return ""
    algorithm = HASH_DIGITS.get(len(file_hash), "MD5")
    return (f"The file already at {path} failed its {algorithm} checksum (expected {file_hash}, "
            f"got {file_digest(path, file_hash)}): a damaged or wrong file. Delete it, or "
            "replace it with the right file.")


class ChecksumError(ValueError):
    """A download that does not have the expected ``file_hash`` (it was deleted).

    Attributes: ``path`` (where it was to go), ``url``, ``expected`` (``file_hash``),
    ``actual`` (the download's digest), ``algorithm`` (``"SHA-256"`` or ``"MD5"``).

    Example:
        >>> str(ChecksumError("/c/w.h5", "file:///w.h5", "0" * 32, "1" * 32)).split(":")[0]
        'The download of /c/w.h5 from file'
    """

    def __init__(self, path, url, expected, actual):
        self.path, self.url, self.expected, self.actual = path, url, expected, actual
        self.algorithm = HASH_DIGITS.get(len(expected), "MD5")
        super().__init__(
            f"The download of {path} from {url} failed its {self.algorithm} checksum "
            f"(expected {expected}, got {actual}); the download was deleted")


URL_SCHEMES = ("http", "https", "ftp", "file")  # what urllib reads (keras.utils.get_file)
# A folder that cannot be written: no permission, or a read-only file system (EROFS: an
# OSError, not a PermissionError). Alike for the messages: not a network error.
WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def cannot_write(error):
    """True for an OSError of a folder or file that cannot be written (:data:`WRITE_ERRNOS`)."""
    return isinstance(error, OSError) and error.errno in WRITE_ERRNOS


def local_path(url):
    """The local path a ``file://`` URL or a plain path names (absolute), None for a network
    URL. Example: ``local_path("file:///data/w.h5")`` is ``'/data/w.h5'``."""
    import urllib.request

    parts = urllib.parse.urlsplit(os.fspath(url))
    if parts.scheme.lower() == "file":
        return urllib.request.url2pathname(parts.path)
    return None if parts.scheme.lower() in URL_SCHEMES else os.path.abspath(os.fspath(url))


def local_file_problem(url, filename):
    """What is wrong with the local file ``url`` names ("no such file: <path>", "<path> is a
    folder, expected a .caffemodel file"), or None (a network URL, or an existing file)."""
    path = local_path(url)
    if path is not None and os.path.isdir(path):
        return f"{path} is a folder, expected a {os.path.splitext(filename)[1]} file"
    return f"no such file: {path}" if path is not None and not os.path.exists(path) else None


def download_url(url, filename=""):
    """The URL ``keras.utils.get_file`` is to read: ``url`` itself when it is an ``http://``,
    ``https://``, ``ftp://`` or ``file://`` URL, a ``file://`` URL for the path of an existing
    file (``get_file`` takes no paths: "unknown url type").

    Raises:
        ValueError: neither (a plain path that is not a file, another scheme), or a network
            URL without a host or with a port that is no number of 0 to 65535, naming ``url``.

    Example:
        >>> download_url("https://example.com/w.h5")
        'https://example.com/w.h5'
        >>> download_url("/data/w.h5")  # an existing file  # doctest: +SKIP
        'file:///data/w.h5'
    """
    try:
        text = os.fspath(url)
    except TypeError:
        text = None
    if isinstance(text, bytes) or text is None:
        raise ValueError("url must be a URL or a file path (str). Received: "
                         f"url={url!r}") from None
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() in URL_SCHEMES:
        if parts.scheme.lower() != "file":
            _check_host_and_port(parts, url)
        return text
    if os.path.isfile(text):
        return pathlib.Path(text).resolve().as_uri()
    if os.path.isdir(text):
        raise ValueError(f"{local_file_problem(text, filename or '.file')}: pass the path of "
                         f"the file in it. Received: url={url!r}")
    local = ("" if "://" in text else ": no file is there (a local copy is given by the path "
             "of an existing file, or as file:// and its absolute path, e.g. "
             f"{pathlib.Path(os.path.abspath(text)).as_uri()})")
    raise ValueError(
        f"url must be an http://, https://, ftp:// or file:// URL, or the path of an existing "
        f"file; {text!r} is neither{local}. Received: url={url!r}")


def _check_host_and_port(parts, url):
    """A network URL's host and port, checked before a download: urllib's own error for a bad
    port was taken for a network failure ("offline?")."""
    try:
        port = parts.port
    except ValueError:  # not a number, or past 65535
        port = -1
    if not parts.hostname or port == -1:
        what = "no host" if not parts.hostname else f"the port {parts.netloc.rpartition(':')[2]!r}"
        raise ValueError(f"url {url!r} has {what}: expected a URL like "
                         f"https://host[:port]/path, the port a number of 0 to 65535. "
                         f"Received: url={url!r}")


# Seconds another process's download may go without writing a byte before the wait for it
# gives up: a hung process keeps its lock (a dead one releases it), and a download that
# makes progress, however slow, is waited for.
DOWNLOAD_STALL_S = 600


def _download_progress(folder):
    """What changes while a download into ``folder`` goes on: its ``.part`` files' sizes."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".part"))
    except OSError:
        return ()
    progress = []
    for name in names:
        try:
            progress.append((name, os.stat(os.path.join(folder, name)).st_size))
        except OSError:
            pass  # renamed into place meanwhile
    return tuple(progress)


def _wait_for_folder_lock(folder, what):
    """Takes the lock of ``folder`` (:func:`keras_fcn.io.lock_directory`), waiting while
    another process holds it; returns True if this call took it (False: already held here).

    Raises:
        TimeoutError: the holder's download wrote nothing for ``DOWNLOAD_STALL_S`` seconds:
            the message names the holder and its lock file.
    """
    from keras_fcn.io import holds_lock

    if holds_lock(folder):
        return False
    stall_s = DOWNLOAD_STALL_S  # read per call: the tests shorten it
    told = False
    progress, since = None, time.monotonic()
    while True:
        try:
            lock_directory(folder, what)
            return True
        except DirectoryLockedError as error:
            if not told:
                log.warning("Waiting for another download into %s: %s", folder, error)
                told = True
            now = _download_progress(folder)
            if now != progress:
                progress, since = now, time.monotonic()
            elif time.monotonic() - since > stall_s:
                raise TimeoutError(
                    f"Gave up waiting for another download into {folder}: nothing was written "
                    f"there for {stall_s:g} s while another process held its lock "
                    f"({error.holder}; {os.path.join(folder, LOCK_FILE)}). If that process "
                    "is hung, stop it (its lock goes with it) and try again.") from None
            time.sleep(0.2)


def download_file(filename, url, file_hash, folder, replace=None):
    """The path of ``folder/filename``: the file already there, else downloaded from ``url``
    through ``keras.utils.get_file`` and checked against ``file_hash`` (when given).

    What ``get_file`` alone does not do: the download goes to a hidden ``.<filename>.part``
    renamed into place once complete, so a download killed midway leaves no truncated file
    that a later call takes as cached; one process at a time downloads into ``folder`` (the
    lock of :func:`keras_fcn.io.lock_directory`): another one waits and then takes its file,
    instead of reading it half-written or writing it at the same time; and a file already in a
    folder this process cannot write (a read-only shared cache) is used, not passed over for a
    download into ``/tmp/.keras``.

    Args:
        filename: the file's name in ``folder``.
        url: where to download it from (``file://`` too, or the path of a local file: see
            :func:`download_url`).
        file_hash: SHA-256 or MD5 hex digest (lower case, see :func:`check_file_hash`), or None.
        folder: an existing folder.
        replace: why a file already there is not to be used (it differs from ``url``'s):
            it is then downloaded anew, or None.

    Returns:
        ``os.path.join(folder, filename)``.

    Raises:
        PermissionError: the file is not there (or not with ``file_hash``) and ``folder``
            cannot be written; the message names both.
        TimeoutError: another process holds ``folder``'s lock and its download wrote nothing
            for ``DOWNLOAD_STALL_S`` seconds.
        ChecksumError: the download does not have ``file_hash`` (a ValueError naming both
            digests; the download is deleted).
        ValueError: ``url`` is no URL ``get_file`` reads nor an existing file
            (:func:`download_url`; checked before the cache is), or urllib refused it.
        Exception: ``get_file``'s error for a failed download (offline, no such file).

    Example:
        >>> download_file("w.h5", "file:///data/w.h5", None, "/data/cache")  # doctest: +SKIP
        '/data/cache/w.h5'
    """
    import keras

    source = download_url(url, filename)
    target = os.path.join(folder, filename)
    if not replace and os.path.isfile(target) and file_matches(target, file_hash):
        return target  # complete: only a finished download is renamed to this name
    if not os.access(folder, os.W_OK):
        there = ("is not there" if not os.path.isfile(target) else replace
                 or f"there does not match file_hash={file_hash!r}")
        raise PermissionError(
            f"{target} {there}, and its folder {folder} cannot be written to download it "
            f"from {url}")
    took = _wait_for_folder_lock(folder, f"download of {filename}")
    part = os.path.join(folder, f".{filename}.part")
    try:
        if not replace and os.path.isfile(target) and file_matches(target, file_hash):
            return target  # another process downloaded it while this one waited
        if os.path.lexists(part):
            os.remove(part)  # what a killed download left; get_file would take it as cached
        try:
            downloaded = keras.utils.get_file(os.path.basename(part), source,
                                              file_hash=file_hash, cache_subdir="",
                                              cache_dir=folder)
        except ValueError as error:  # its hash check (else urllib refused the URL)
            if file_hash is not None and os.path.isfile(part):
                raise ChecksumError(target, url, file_hash,
                                    file_digest(part, file_hash)) from None
            raise ValueError(f"Cannot download {url}: {error}. Expected an http://, https://, "
                             f"ftp:// or file:// URL. Received: url={url!r}") from None
        os.replace(downloaded, target)
        return target
    finally:
        if os.path.lexists(part):
            os.remove(part)  # a download that failed its hash
        if took:
            unlock_directory(folder)


def read_only_message(folder, error):
    """The message of an OSError of :data:`WRITE_ERRNOS` met writing into the cache ``folder``:
    names it, and ``cache_dir=`` or ``$KERAS_HOME`` to use another one."""
    return (f"The cache folder {folder} cannot be written ({error.strerror or error}: no "
            "permission, or a read-only file system). Pass a writable cache_dir= (or set "
            "$KERAS_HOME to a writable folder).")


def weights_cache(cache_dir=None):
    """The folder of the ImageNet trunks' files: ``<cache_dir>/models``; ``cache_dir`` defaults
    to ``$KERAS_HOME``, else ``~/.keras``, as ``keras.utils.get_file`` (and so
    ``keras.applications``, which caches the same files there) does.

    Example:
        >>> weights_cache("/data/keras")
        '/data/keras/models'
    """
    root = cache_dir or os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.join(os.path.expanduser(root), "models")


def fetch_weights_file(filename, url, file_hash, cache_dir, what, how_to_pass):
    """Returns the cached path of a weights file, downloading it once through ``get_file``.

    Args:
        filename: the file name in the cache.
        url: where to download from (a mirror, a ``file://`` URL or a local file's path).
        file_hash: SHA-256 or MD5 checksum, or None for no byte check.
        cache_dir: cache root; ``None`` means ``$KERAS_HOME``, else ``~/.keras``
            (:func:`weights_cache`).
        what: what the file is, for the messages ("ImageNet VGG16 weights").
        how_to_pass: the builder call that takes a local copy instead.

    Raises:
        RuntimeError: the file is not cached and cannot be downloaded (offline) or fails its
            checksum; the message says how to pass a local copy. When a file that fails
            ``file_hash`` already stands in the cache, the message says so, with both digests.
        ValueError: ``file_hash`` is no SHA-256 or MD5 (:func:`check_file_hash`), before
            anything is downloaded; ``url`` is no URL nor an existing file
            (:func:`download_url`).
        PermissionError: the file is not cached and the cache cannot be written (a
            read-only ``cache_dir``); a file put there by hand is used.

    Example:
        >>> fetch_weights_file("w.h5", "file:///data/w.h5", None, "/data/keras", "weights",
        ...                    "build_fcn8s(weights='w.h5')")  # doctest: +SKIP
        '/data/keras/models/w.h5'
    """
    file_hash = check_file_hash(file_hash)
    folder = weights_cache(cache_dir)
    cached = os.path.join(folder, filename)
    how_to = (
        f"Download {url} on a machine with internet access and either copy it to {cached} or "
        f"pass its path: {how_to_pass}. Use weights=None for a randomly initialized trunk."
    )
    try:
        if not os.path.isfile(cached):
            os.makedirs(folder, exist_ok=True)
        return download_file(filename, url, file_hash, folder)
    except PermissionError as error:  # a read-only cache without the file
        if error.errno is None:  # download_file's own message
            raise PermissionError(f"{error}. {how_to}") from None
        raise PermissionError(read_only_message(folder, error) + f" {how_to}") from None
    except TimeoutError:  # another process's download hung: its own message
        raise
    except ChecksumError as error:
        raise DownloadError(
            f"The {what} from {url} failed their checksum (expected {file_hash}): the "
            f"download's {error.algorithm} is {error.actual}, so it was deleted ({cached}). "
            f"Check url= and the checksum, or pass a local copy: {how_to_pass}."
        ) from None
    except ValueError as error:  # url is no URL get_file reads
        raise ValueError(f"Cannot fetch the {what}: {error}") from None
    except Exception as error:  # get_file raises a bare Exception on network failures.
        if cannot_write(error):  # a read-only file system (EROFS): not a network error
            raise PermissionError(read_only_message(folder, error) + f" {how_to}") from None
        stale = cached_mismatch(cached, file_hash)
        if not stale and (problem := local_file_problem(url, filename)):  # no network advice
            raise DownloadError(f"Cannot fetch the {what}: {problem} (url={url!r}). Pass url= "
                                f"with the path of the file, put it at {cached}, or "
                                f"{how_to_pass}.") from None
        if stale:
            raise DownloadError(f"{stale} Downloading the {what} anew from {url} failed "
                                f"(offline?): {error}. " + how_to) from error
        raise DownloadError(f"Could not fetch the {what} from {url} (offline?): {error}. "
                            + how_to) from error


def fetch_vgg16_imagenet_weights(cache_dir=None, url=VGG16_WEIGHTS_URL, md5=VGG16_WEIGHTS_MD5):
    """Returns the local path of the Keras ImageNet VGG16 weights, MD5-checked.

    Args:
        cache_dir: cache root; ``None`` means ``$KERAS_HOME``, else ``~/.keras``.
        url: where to download from (a mirror, a ``file://`` URL or a local file's path).
        md5: expected MD5 checksum of the file.

    Raises:
        RuntimeError: offline and not cached, or a checksum failure (see
            :func:`fetch_weights_file`).

    Example:
        >>> path = fetch_vgg16_imagenet_weights()  # doctest: +SKIP
    """
    return fetch_weights_file(
        VGG16_WEIGHTS_FILE, url, md5, cache_dir, "ImageNet VGG16 weights",
        f"build_fcn8s(weights='/path/to/{VGG16_WEIGHTS_FILE}')",
    )


def fetch_mobilenet_v2_imagenet_weights(cache_dir=None, url=MOBILENET_V2_WEIGHTS_URL,
                                        file_hash=MOBILENET_V2_WEIGHTS_HASH):
    """Returns the local path of the Keras ImageNet MobileNetV2 (no top) weights.

    Args:
        cache_dir: cache root; ``None`` means ``$KERAS_HOME``, else ``~/.keras``.
        url: where to download from (a mirror, a ``file://`` URL or a local file's path).
        file_hash: optional SHA-256 or MD5 of the file. Keras publishes none for this file,
            so ``None`` skips the byte check; the loader still checks every layer and shape.

    Returns:
        The path of the ``.h5`` file.

    Raises:
        RuntimeError: offline and not cached, or a checksum failure (see
            :func:`fetch_weights_file`).

    Example:
        >>> path = fetch_mobilenet_v2_imagenet_weights()  # doctest: +SKIP
    """
    return fetch_weights_file(
        MOBILENET_V2_WEIGHTS_FILE, url, file_hash, cache_dir, "ImageNet MobileNetV2 weights",
        f"build_fcn8s(backbone='mobilenet_v2', weights='/path/to/{MOBILENET_V2_WEIGHTS_FILE}')",
    )
