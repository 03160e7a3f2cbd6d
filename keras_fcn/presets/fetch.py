"""Download, check and convert a released model once; later calls load the converted copy.

The ``.caffemodel`` (or torchvision's ``.pth``) goes through ``keras.utils.get_file`` into
``<cache>/keras_fcn/`` (the Keras cache, ``~/.keras`` or ``$KERAS_HOME``, or ``cache_dir``).
It is checked (its byte size when the table knows it, the sha256 prefix in a torchvision file
name, ``file_hash`` when given, every layer's shape, and that every layer of the model gets a
weight) and converted once by the preset's ``converter`` (:mod:`keras_fcn.presets.converters`):
the model is saved beside it as ``<preset>.keras`` with its labels sidecar
``<preset>.labels.json``, so a second call reads nothing from the network.

Example:
    >>> model = from_preset("voc-fcn8s")  # doctest: +SKIP
    >>> model, labels = resolve_model("voc-fcn8s")  # or a .keras path  # doctest: +SKIP
"""

import filecmp
import hashlib
import json
import logging
import os
import warnings

import keras

from keras_fcn import io
from keras_fcn.labels import ModelLabels
from keras_fcn.layers import CaffePreprocessing
from keras_fcn.models import has_preprocessing
from keras_fcn.models.trunk import did_you_mean
from keras_fcn.presets.catalog import get_preset, list_presets, preset_labels
from keras_fcn.weights import CaffeModelError, check_sha256_prefix, load_model_file
from keras_fcn.weights.imagenet import (ChecksumError, cached_mismatch, cannot_write,
                                        check_file_hash, download_file, local_file_problem,
                                        local_path, read_only_message)

CACHE_SUBDIR = "keras_fcn"
log = logging.getLogger("keras_fcn")
_WARNED_READ_ONLY = set()  # cache folders whose converted model could not be saved: told once


def cache_folder(cache_dir=None):
    """The folder of the downloads and converted models: ``<cache_dir>/keras_fcn``.

    Args:
        cache_dir: the cache root; default ``$KERAS_HOME`` or ``~/.keras`` (as Keras).

    Example:
        >>> cache_folder("/data/keras")
        '/data/keras/keras_fcn'
    """
    root = cache_dir or os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    try:
        root = os.fspath(root)
    except TypeError:
        raise ValueError("cache_dir must be a folder path (str or os.PathLike) or None. "
                         f"Received: cache_dir={cache_dir!r}") from None
    return os.path.join(os.path.expanduser(root), CACHE_SUBDIR)


def _make_cache_folder(folder, cache_dir):
    """Creates ``folder`` (the cache's ``keras_fcn/``), or raises a ValueError naming
    ``cache_dir`` when a file stands in its way."""
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(
            f"The preset cache folder {folder} cannot be created: a file stands in its way "
            f"({folder} or a folder above it is a file). Expected cache_dir to be a folder "
            "(default $KERAS_HOME or ~/.keras). "
            f"Received: cache_dir={cache_dir!r}") from None
    except OSError as error:  # no permission, or a read-only file system (EROFS)
        if not cannot_write(error):
            raise
        raise PermissionError(
            f"The preset cache folder {folder} cannot be created ({error}). Pass a writable "
            f"cache_dir (or set $KERAS_HOME to a writable folder). "
            f"Received: cache_dir={cache_dir!r}") from None


def converted_path(name, cache_dir=None):
    """Where the converted model of a preset is cached (``<folder>/<name>.keras``)."""
    return os.path.join(cache_folder(cache_dir), f"{get_preset(name).name}.keras")


def _check_size(preset, path):
    size = os.path.getsize(path)
    if preset.size_bytes is not None and size != preset.size_bytes:
        os.remove(path)
        raise ValueError(
            f"Preset {preset.name!r}: {path} has {size} bytes, expected {preset.size_bytes} "
            "(an incomplete or wrong download). The file was deleted: call again to download "
            "it anew, or put the right file there by hand.")


def download_caffemodel(name, cache_dir=None, file_hash=None, url=None):
    """Downloads the weights file of a preset (``.caffemodel`` or ``.pth``) into the cache
    (once) and checks it.

    Args:
        name: the preset.
        cache_dir: the cache root (see :func:`cache_folder`).
        file_hash: expected sha256 (or md5) of the file; the authors publish none. When it is
            given it replaces the byte-size check.
        url: another address of the same file (a mirror, or a local copy: ``file://`` and
            its absolute path, or the path itself). Given, a file already in the cache is
            used only if it matches ``file_hash`` (when given) or is the same as the local
            copy's; otherwise it is downloaded (copied) anew from ``url``.

    Returns:
        The path of the file in the cache.

    Raises:
        RuntimeError: the download failed (offline): names the URL and the path where the
            file can be put by hand.
        ValueError: the file has the wrong size or hash (the message names the expected
            and the actual digest; a torchvision file whose sha256 does not start with the
            prefix in its name is deleted); before any download, a ``file_hash`` that no file
            can match (not a SHA-256 or MD5 hex digest), or a ``url`` that is neither an
            http(s)://, ftp:// or file:// URL nor an existing file.
        PermissionError: the file is not in the cache and the cache cannot be written (a
            file put by hand in a read-only cache is used).

    The download is renamed into place only once complete, and one process at a time
    downloads (see :func:`keras_fcn.weights.imagenet.download_file`).

    Example:
        >>> download_caffemodel("voc-fcn32s")  # doctest: +SKIP
        '/root/.keras/keras_fcn/fcn32s-heavy-pascal.caffemodel'
    """
    preset = get_preset(name)
    file_hash = check_file_hash(file_hash)
    given_url, url = url, url or preset.url
    folder = cache_folder(cache_dir)
    _make_cache_folder(folder, cache_dir)  # else get_file would fall back to /tmp/.keras
    target = os.path.join(folder, preset.filename)
    replace = _replaced(target, given_url, file_hash)
    if replace:
        log.warning("Preset %r: replacing %s with the file of url=%r", name, target, url)
    try:
        path = download_file(preset.filename, url, file_hash, folder, replace=replace)
    except PermissionError as error:  # a read-only cache without the file
        if error.errno is not None:  # no permission on the lock or .part: not download_file's
            raise PermissionError(f"Preset {name!r}: {read_only_message(folder, error)} "
                                  f"Received: cache_dir={cache_dir!r}") from None
        raise PermissionError(f"Preset {name!r}: {error}. Pass a writable cache_dir, or "
                              f"download that file on another machine and put it at {target}"
                              ) from None
    except TimeoutError as error:  # another process's download hung: not a network error
        raise TimeoutError(f"Preset {name!r}: {error}") from None
    except ChecksumError as error:  # get_file's hash check; the download was deleted
        raise ValueError(f"Preset {name!r}: {target} downloaded from {url} does not match "
                         f"file_hash={file_hash!r}: its {error.algorithm} is {error.actual}. "
                         "The download was deleted: check url= and file_hash=.") from None
    except ValueError as error:  # url is no URL get_file reads, nor a local file
        raise ValueError(f"Preset {name!r}: {error}") from None
    except Exception as error:  # get_file raises a bare Exception for URL errors
        if cannot_write(error):  # a read-only file system (EROFS): not the network's fault
            raise PermissionError(f"Preset {name!r}: {read_only_message(folder, error)} "
                                  f"Received: cache_dir={cache_dir!r}") from None
        stale = cached_mismatch(target, file_hash)  # a wrong file put there by hand
        if not stale and (problem := local_file_problem(url, preset.filename)):
            raise io.DownloadError(  # a local file: no network advice
                f"Preset {name!r}: {problem} (url={url!r}). Pass url= with the path of the "
                f"downloaded file, or put it at {target}, then call again.") from None
        failed = (f"{stale} Downloading it anew from {url} failed" if stale
                  else f"cannot download {url}")
        raise io.DownloadError(
            f"Preset {name!r}: {failed} ({error}). Without a network, download that file on "
            f"another machine and put it at {target}, then call again.") from None
    if file_hash is None:
        _check_size(preset, path)
    if preset.filename.endswith(".pth"):
        try:
            check_sha256_prefix(path, preset.filename)
        except ValueError as error:
            raise ValueError(f"Preset {name!r}: {error}") from None
    return path


def _replaced(target, url, file_hash):
    """Why the cached ``target`` is not to be used for an explicit ``url`` (None: it is):
    a local copy that differs from it, or a network URL (nothing to compare it with) without
    a ``file_hash`` (which the cached file must then match)."""
    if url is None or file_hash is not None or not os.path.isfile(target):
        return None
    source = local_path(url)
    if source is None:
        return "may not be the file of url= (a network URL: pass file_hash= to use it)"
    if os.path.isfile(source) and not filecmp.cmp(source, target, shallow=False):
        return f"differs from the file of url= ({source})"
    return None  # the same file, or none there to compare


def _convert(preset, path, model, url=None):
    """Sets the model's weights with the preset's converter and checks its report; a file
    that fails is deleted (every later call would fail on it, url= or not)."""
    try:
        report = preset.converter(preset, path, model)
    except CaffeModelError as error:  # not a .caffemodel
        source = None if url is None else local_path(url)
        if source is not None and os.path.isfile(source) and filecmp.cmp(source, path,
                                                                          shallow=False):
            # a copy of the local file of url=: a new "download" copies it again
            raise ValueError(f"Preset {preset.name!r}: {error}. {_deleted(path)} (a copy of "
                             f"url={url!r}, which was kept): pass url= of the right file."
                             ) from None
        raise ValueError(f"Preset {preset.name!r}: {error}. {_deleted(path)} (a damaged "
                         "download, or an error page saved in its place): call again to "
                         "download it anew, or put the right file there by hand.") from None
    except ValueError as error:  # a shape, an unknown layer, NaN: named
        raise ValueError(f"Preset {preset.name!r}: {str(error).rstrip('.')}. "
                         f"{_deleted(path, True)}") from None
    if report is None:  # the converter checked every layer itself
        return
    problems = [f"{what} {report[key]}" for key, what in (
        ("missing", "the model's layers without weights in the file:"),
        ("unused", "the file's layers the model does not have:")) if report[key]]
    if problems:
        raise ValueError(f"Preset {preset.name!r}: {path} does not fit the model: "
                         + "; ".join(problems) + f". Is it the right file? {_deleted(path, True)}")


def _deleted(path, named=False):
    """Deletes the weights file that failed its conversion; what to say of it."""
    try:
        os.remove(path)
    except OSError as error:
        return (f"It could not be deleted ({error.strerror or error}): delete {path}, "
                "or pass cache_dir= of a writable folder")
    if not named:
        return "The file was deleted"
    return (f"The file was deleted ({path}): call again with url= of the right file, or put "
            "the right file there by hand.")


def _with_mean(preset, model):
    """Puts the reference's Caffe preprocessing, with this data set's mean, in front."""
    if preset.mean_bgr is None or has_preprocessing(model):
        return model
    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    outputs = model(CaffePreprocessing(preset.mean_bgr, name="preprocess")(inputs))
    return keras.Model(inputs, outputs, name=preset.name.replace("-", "_"))


def _digests(path):
    """The sha256 and md5 of the weights file, in one read (recorded in the sidecar)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha256.update(block)
            md5.update(block)
    return {"source_sha256": sha256.hexdigest(), "source_md5": md5.hexdigest()}


def _sidecar_extra(preset, url, source):
    extra = {"preset": preset.name, "source_url": url, "paper": preset.paper,
             "input": preset.input, **_digests(source)}
    if preset.geometric_class_names is not None:
        extra["geometric_class_names"] = list(preset.geometric_class_names)
    return extra


def from_preset(name, *, cache_dir=None, file_hash=None, url=None):
    """Returns a released FCN by name, with the authors' trained weights.

    The first call downloads the ``.caffemodel`` (hundreds of MB for the VGG16 models) or
    torchvision's ``.pth`` (135 and 208 MB for the FCN-ResNets),
    checks and converts it, and caches the converted ``.keras`` model with its
    ``.labels.json`` sidecar; later calls load that (fast, offline). Delete the ``.keras`` to
    convert again. The class names are :func:`keras_fcn.presets.preset_labels`.

    Args:
        name: a preset of :func:`keras_fcn.presets.list_presets`, e.g. ``"voc-fcn8s"``.
        cache_dir: the cache root (default ``$KERAS_HOME`` or ``~/.keras``); files go in its
            ``keras_fcn/`` folder.
        file_hash: the sha256 (or md5) the download must have.
        url: another address of the weights file (a mirror, a ``file://`` URL or a local
            file's path). With ``url`` or ``file_hash``, a cached converted model is used
            only if the source recorded in its sidecar fits them (else a ValueError names
            it), and a cached download only if it is the same file (else it is replaced).

    Returns:
        A ``keras.Model``. RGB presets take raw RGB images (0..255, any size) and do the
        reference's BGR mean subtraction themselves; the NYUDv2 HHA, RGB-D and late-fusion
        presets take the preprocessed inputs of ``keras_fcn.datasets.nyud`` (see
        ``preset_info(name)["input"]``). SIFT Flow models output
        ``{"semantic": ..., "geometric": ...}``.

    Raises:
        ValueError: unknown name, a ``file_hash`` that is no SHA-256 or MD5 (before any
            download), or a downloaded file that is not the model (size, hash, layer shape,
            missing or extra layers, NaN: the message says which; a file that fails its
            conversion is deleted, so the next call downloads it anew), ``url=`` or
            ``file_hash=`` that a cached converted model's recorded source does not fit, or a
            damaged converted ``.keras`` in the cache (the message says to delete it), or a
            ``url`` that is neither a URL nor an existing file.
        RuntimeError: the download failed; the message names the URL and where to put the
            file by hand.
        PermissionError: the cache cannot be written (no permission, a read-only file
            system) and holds no download; one holding only the download gives the
            converted model without caching it (one warning).

    Example:
        >>> model = from_preset("voc-fcn8s")  # doctest: +SKIP
        >>> logits = model.predict(images_uint8)  # (N, H, W, 21)  # doctest: +SKIP
    """
    preset = get_preset(name)
    file_hash = check_file_hash(file_hash)  # a hash no file can match fails before the download
    cached = converted_path(name, cache_dir)
    if os.path.isfile(cached):
        _check_cached_source(name, cached, url, file_hash)
        try:
            return load_model_file(cached)
        except ValueError as error:
            raise ValueError(f"Preset {name!r}: {error} Delete {cached} to convert the preset "
                             "again from its download.") from None
    source = download_caffemodel(name, cache_dir, file_hash, url)
    model = preset.builder(**preset.build_kwargs)
    _convert(preset, source, model, url)
    model = _with_mean(preset, model)
    try:
        io.save_model(model, cached)
    except OSError as error:  # a read-only cache holding the download: used, not cached
        if not cannot_write(error):
            raise
        folder = os.path.dirname(cached)
        if folder not in _WARNED_READ_ONLY:
            _WARNED_READ_ONLY.add(folder)
            warnings.warn(f"Preset {name!r}: the converted model is not cached: {folder} "
                          f"cannot be written ({error.strerror or error}), so every call "
                          "converts the download again. Pass cache_dir= of a writable "
                          "folder to cache it.", stacklevel=2)
        return model
    preset_labels(name).write(ModelLabels.sidecar_path(cached),
                              extra=_sidecar_extra(preset, url or preset.url, source))
    return model


def _check_cached_source(name, cached, url, file_hash):
    """Raises a ValueError naming ``cached`` when ``url=`` or ``file_hash=`` is given and the
    converted model's recorded source (its sidecar's ``source_url``, ``source_sha256``,
    ``source_md5``) does not fit them, or none is recorded."""
    if url is None and file_hash is None:
        return
    try:
        with open(ModelLabels.sidecar_path(cached)) as file:
            recorded = json.load(file)
    except (OSError, ValueError):
        recorded = {}
    recorded = recorded if isinstance(recorded, dict) else {}
    misfits = []
    if file_hash is not None:
        key = "source_sha256" if len(file_hash) == 64 else "source_md5"
        if recorded.get(key) != file_hash:
            misfits.append(f"file_hash={file_hash!r} (its source's: {recorded.get(key)})")
    source = None if url is None else local_path(url)
    if source is not None and os.path.isfile(source):
        digest = _digests(source)["source_sha256"]
        if recorded.get("source_sha256") != digest:
            misfits.append(f"url={url!r} (a file of another sha256, {digest})")
    elif url is not None and recorded.get("source_url") != url:
        misfits.append(f"url={url!r} (it was converted from {recorded.get('source_url')})")
    if not misfits:
        return
    what = ("records no source (no source_sha256 in its .labels.json) to check"
            if "source_sha256" not in recorded else "does not fit")
    raise ValueError(
        f"Preset {name!r}: the converted model {cached} in the cache {what} "
        + "; ".join(misfits) + f", so it is not used. To convert the preset from url=: delete "
        f"{cached} (the download is replaced when url= differs from it); to use it: leave "
        "url= and file_hash= out; or pass another cache_dir=.")


def resolve_model(name_or_path, cache_dir=None):
    """A model by preset name or file path, and its labels: what the tools' ``--model`` takes.

    Args:
        name_or_path: a preset name (``"voc-fcn8s"``) or a ``.keras`` model file.
        cache_dir: the cache root for presets.

    Returns:
        ``(model, labels)``: labels is the preset's :class:`ModelLabels`, or for a file the
        sidecar beside it (None if there is none).

    Raises:
        FileNotFoundError: a path (with a folder or a .keras/.h5 name) that is not a file.
        ValueError: neither a preset nor an existing file (the message lists the presets).

    Example:
        >>> model, labels = resolve_model("voc-fcn8s")  # doctest: +SKIP
        >>> labels.class_names[15]  # doctest: +SKIP
        'person'
    """
    if name_or_path in list_presets():
        return from_preset(name_or_path, cache_dir=cache_dir), preset_labels(name_or_path)
    _check_model_file(name_or_path)
    return load_model_file(name_or_path), ModelLabels.for_model(name_or_path)


def model_file(name_or_path, cache_dir=None, single_output=None):
    """The ``.keras`` file of a preset (downloaded and converted on first use, with its labels
    sidecar beside it) or of a path: what the tools' ``--model`` takes.

    Args:
        single_output: what takes only single-output models (e.g. "prediction"): a preset of
            two heads (SIFT Flow) is then refused before its download.

    Raises:
        FileNotFoundError: a path (with a folder or a .keras/.h5 name) that is not a file.
        ValueError: neither a preset nor an existing file (the message lists the presets);
            a two-headed preset where `single_output` is given.

    Example:
        >>> model_file("voc-fcn8s")  # doctest: +SKIP
        '/home/me/.keras/keras_fcn/voc-fcn8s.keras'
    """
    if name_or_path in list_presets():
        heads = get_preset(name_or_path).geometric_class_names
        if single_output and heads:
            raise ValueError(
                f"Preset {name_or_path!r} has two heads (semantic, geometric); {single_output} "
                "takes a single-output FCN: build it with keras_fcn.presets.from_preset and "
                "keep one head, e.g. keras.Model(model.inputs, model.output['semantic']). "
                f"Received: model={name_or_path!r}")
        from_preset(name_or_path, cache_dir=cache_dir)
        return converted_path(name_or_path, cache_dir)
    _check_model_file(name_or_path)
    return os.fspath(name_or_path)


def _check_model_file(name_or_path):
    """Raises a ValueError naming ``name_or_path`` unless it is an existing file; a name
    close to a preset's gets the suggestion."""
    ok = isinstance(name_or_path, (str, os.PathLike)) and os.path.isfile(name_or_path)
    if not ok and isinstance(name_or_path, (str, os.PathLike)) and (
            os.sep in os.fspath(name_or_path)
            or os.fspath(name_or_path).endswith((".keras", ".h5"))):
        there = "is a folder" if os.path.isdir(name_or_path) else "does not exist"
        raise FileNotFoundError(f"Model file {os.fspath(name_or_path)!r} {there}; expected a "
                                "saved .keras model or a preset name (keras_fcn.list_presets())")
    if not ok:
        raise ValueError(f"Expected a model file or one of the presets {list_presets()}."
                         f"{did_you_mean(name_or_path, list_presets())} "
                         f"Received: {name_or_path!r}")
