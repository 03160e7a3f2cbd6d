"""Tests of keras_fcn.presets.fetch: downloads of the released weights into the cache (killed,
concurrent, read-only, damaged), offline through file:// URLs."""

import fcntl
import hashlib
import os
import threading

import pytest

from preset_files import caffe_layers, serve, tiny_preset
from keras_fcn import io
from keras_fcn.presets import PRESETS, download_caffemodel, from_preset
from keras_fcn.weights import imagenet


# Review 7: a download killed midway, two processes downloading one file, a read-only cache,
# a damaged cached file.

FILENAME = "fcn32s-heavy-pascal.caffemodel"  # the voc-fcn32s preset's download
CONTENT = bytes(range(256)) * 64


@pytest.fixture
def served(tmp_path):
    """A small file served through a file:// URL (the download tests convert nothing)."""
    path = tmp_path / "server" / FILENAME
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path.as_uri()


def test_a_killed_download_leaves_no_file_that_a_later_call_takes_as_cached(
        monkeypatch, tmp_path, served):
    """keras.utils.get_file writes into the cached name as it downloads and removes it only on
    an Exception: a process that ends otherwise (SystemExit from a SIGTERM handler, SIGKILL)
    left a truncated file that every later call returned as the download."""
    from keras.src.utils import file_utils

    def killed(url, filename, *args):
        with open(filename, "wb") as f:
            f.write(CONTENT[:1000])
        raise SystemExit(143)

    monkeypatch.setattr(file_utils, "urlretrieve", killed)
    with pytest.raises(SystemExit):
        download_caffemodel("voc-fcn32s", cache_dir=str(tmp_path / "cache"), url=served)
    folder = tmp_path / "cache" / "keras_fcn"
    assert not (folder / FILENAME).exists()
    monkeypatch.undo()
    path = download_caffemodel("voc-fcn32s", cache_dir=str(tmp_path / "cache"), url=served)
    assert open(path, "rb").read() == CONTENT
    assert os.listdir(folder) == [FILENAME]  # no .part, no lock file left


def test_a_second_download_waits_for_the_first_and_takes_its_file(tmp_path):
    """Two processes downloading one file wrote it at the same time, and the second one
    returned the first one's half-written file as complete (seen with two processes and a
    300 MB file: 17 MB returned)."""
    folder = tmp_path / "cache" / "keras_fcn"
    folder.mkdir(parents=True)
    # Another process's download: it holds the cache folder's lock, then renames its file in.
    fd = os.open(folder / io.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def other_process_finishes():
        (folder / FILENAME).write_bytes(CONTENT)
        os.close(fd)

    timer = threading.Timer(0.3, other_process_finishes)
    timer.start()
    try:  # nothing to download from: the file must come from the other process
        path = download_caffemodel("voc-fcn32s", cache_dir=str(tmp_path / "cache"),
                                   url="file:///nowhere/" + FILENAME)
    finally:
        timer.join()
    assert open(path, "rb").read() == CONTENT


def _read_only(monkeypatch, folder):
    """Makes ``folder`` read-only for os.access (the tests run as root, which writes anyway)."""
    real = os.access

    def access(path, mode, **kwargs):
        if mode & os.W_OK and os.path.realpath(path).startswith(os.path.realpath(folder)):
            return False
        return real(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_a_file_in_a_read_only_cache_is_used(monkeypatch, tmp_path):
    """get_file passes over a cache it cannot write for /tmp/.keras, so a file put by hand in
    a read-only shared cache was ignored: offline, the error asked to put it where it was."""
    cache = tmp_path / "shared"
    (cache / "keras_fcn").mkdir(parents=True)
    (cache / "keras_fcn" / FILENAME).write_bytes(CONTENT)
    (cache / "models").mkdir()
    (cache / "models" / imagenet.VGG16_WEIGHTS_FILE).write_bytes(b"vgg16")
    _read_only(monkeypatch, cache)
    path = download_caffemodel("voc-fcn32s", cache_dir=str(cache), url="file:///nowhere/x")
    assert path == str(cache / "keras_fcn" / FILENAME)
    md5 = hashlib.md5(b"vgg16").hexdigest()
    assert imagenet.fetch_vgg16_imagenet_weights(
        str(cache), url="file:///nowhere/x", md5=md5) == str(
            cache / "models" / imagenet.VGG16_WEIGHTS_FILE)


def test_a_read_only_cache_without_the_file_names_it(monkeypatch, tmp_path):
    cache = tmp_path / "shared"
    (cache / "keras_fcn").mkdir(parents=True)
    _read_only(monkeypatch, cache)
    target = cache / "keras_fcn" / "fcn8s-heavy-pascal.caffemodel"
    with pytest.raises(PermissionError) as info:
        download_caffemodel("voc-fcn8s", cache_dir=str(cache), url="file:///nowhere/x")
    assert str(info.value) == (
        f"Preset 'voc-fcn8s': {target} is not there, and its folder {cache / 'keras_fcn'} "
        "cannot be written to download it from file:///nowhere/x. Pass a writable "
        f"cache_dir, or download that file on another machine and put it at {target}")
    assert not os.path.exists(os.path.join("/tmp", ".keras", "keras_fcn", target.name))


def test_a_damaged_cached_caffemodel_is_deleted_and_named(monkeypatch, tmp_path):
    """An error page saved as the .caffemodel (or a download truncated by an older version)
    stayed in the cache: every later call failed on it, offline or not."""
    tiny_preset(monkeypatch, "voc-fcn32s")
    cached = tmp_path / "keras_fcn" / FILENAME
    cached.parent.mkdir()
    cached.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(ValueError) as info:
        from_preset("voc-fcn32s", cache_dir=str(tmp_path), url="file:///nowhere/x")
    assert str(info.value).startswith(f"Preset 'voc-fcn32s': {cached}: not a valid .caffemodel")
    assert str(info.value).endswith(
        "The file was deleted (a damaged download, or an error page saved in its place): "
        "call again to download it anew, or put the right file there by hand.")
    assert not cached.exists()


def test_a_damaged_converted_model_says_how_to_convert_again(tmp_path):
    converted = tmp_path / "keras_fcn" / "voc-fcn32s.keras"
    converted.parent.mkdir()
    converted.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"^Preset 'voc-fcn32s': Cannot load the model file .*"
                                         r"not a zip archive.* Delete .*voc-fcn32s\.keras to "
                                         r"convert the preset again from its download\.$"):
        from_preset("voc-fcn32s", cache_dir=str(tmp_path))


# Audit round 5 leftovers: a file_hash no file can match fails before any download.


def test_a_sha1_file_hash_fails_before_the_download(tmp_path, downloads):
    sha1 = "a" * 40
    with pytest.raises(ValueError) as info:
        from_preset("voc-fcn32s", cache_dir=str(tmp_path), url="file:///nowhere/x.caffemodel",
                    file_hash=sha1)
    assert str(info.value) == (
        "file_hash must be the SHA-256 (64 hex digits) or MD5 (32 hex digits) of the file. A "
        "40-digit hash is a SHA-1 (what the BVLC model zoo publishes), which "
        "keras.utils.get_file cannot check: compute the file's sha256 instead. Received: "
        f"file_hash='{sha1}'")
    with pytest.raises(ValueError, match=r"Received: file_hash='xyz'"):
        imagenet.fetch_weights_file("f.h5", "file:///nowhere/f.h5", "xyz", str(tmp_path), "weights",
                           "build_fcn8s(weights='f.h5')")
    with pytest.raises(ValueError, match=r"Received: file_hash=123"):
        imagenet.check_file_hash(123)
    assert downloads == []


def test_an_upper_case_sha256_matches_its_file(monkeypatch, tmp_path):
    """keras.utils.get_file compares lower-case digests: an upper-case sha256 never matched,
    so the download ran and then failed."""
    preset = tiny_preset(monkeypatch, "voc-fcn32s")
    url, path = serve(tmp_path, caffe_layers(preset.builder(**preset.build_kwargs)))
    with open(path, "rb") as file:
        digest = hashlib.sha256(file.read()).hexdigest().upper()
    model = from_preset("voc-fcn32s", cache_dir=str(tmp_path / "cache"), url=url,
                        file_hash=digest)
    assert model.output_shape[-1] == 21
    assert PRESETS["voc-fcn32s"] is preset


def _hold_lock(folder):
    """Another process's lock on ``folder`` (an flock on its lock file); close the fd to free."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / io.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_the_wait_for_a_hung_download_gives_up_and_names_it(monkeypatch, tmp_path):
    """A hung process keeps its lock: the wait had no end."""
    folder = tmp_path / "cache" / "keras_fcn"
    fd = _hold_lock(folder)
    monkeypatch.setattr(imagenet, "DOWNLOAD_STALL_S", 0.5)
    try:
        with pytest.raises(TimeoutError, match=r"Preset .voc-fcn32s.: Gave up waiting for "
                           rf"another download into {folder}: nothing was written there for "
                           r"0.5 s while another process held its lock \(pid unknown: it is "
                           rf"starting; {folder / io.LOCK_FILE}\)\. If that process is hung"):
            download_caffemodel("voc-fcn32s", cache_dir=str(tmp_path / "cache"),
                                url="file:///nowhere/" + FILENAME)
    finally:
        os.close(fd)
    models = tmp_path / "cache" / "models"
    fd = _hold_lock(models)
    try:  # the ImageNet trunk weights: the same message, not a network error
        with pytest.raises(TimeoutError, match=rf"^Gave up waiting for another download into "
                           rf"{models}: nothing was written there for 0.5 s"):
            imagenet.fetch_vgg16_imagenet_weights(str(tmp_path / "cache"),
                                                  url="file:///nowhere/x", md5="0" * 32)
    finally:
        os.close(fd)


def test_a_slow_download_that_writes_is_waited_for(monkeypatch, tmp_path):
    """Stalled means no byte written: a download that keeps writing its .part is not given up
    on, however long it takes past DOWNLOAD_STALL_S."""
    folder = tmp_path / "cache" / "keras_fcn"
    fd = _hold_lock(folder)
    monkeypatch.setattr(imagenet, "DOWNLOAD_STALL_S", 1.0)
    part = folder / f".{FILENAME}.part"

    def other_process_downloads():  # 16 writes 0.15 s apart: 2.4 s, past the 1 s stall limit
        for i in range(0, len(CONTENT), len(CONTENT) // 16):
            with open(part, "ab") as f:
                f.write(CONTENT[i:i + len(CONTENT) // 16])
            threading.Event().wait(0.15)
        os.replace(part, folder / FILENAME)
        os.close(fd)

    thread = threading.Thread(target=other_process_downloads)
    thread.start()
    try:
        path = download_caffemodel("voc-fcn32s", cache_dir=str(tmp_path / "cache"),
                                   url="file:///nowhere/" + FILENAME)
    finally:
        thread.join()
    assert open(path, "rb").read() == CONTENT
