"""A walkthrough of presets and downloads: a .caffemodel that fails conversion, url= and
file_hash= with a cached download or converted model, a read-only cache or file system, local
file URLs that are missing or folders, and tools/evaluate.py's data folder checked before a
preset's download. No network: tiny presets served through file:// URLs and plain paths."""

import errno
import hashlib
import json
import os

import numpy as np
import pytest

from preset_files import caffe_layers, serve, tiny_preset
from keras_fcn import io
from keras_fcn.presets import download_caffemodel, fetch, from_preset
from keras_fcn.weights import imagenet

NAME = "voc-fcn32s"
FILENAME = "fcn32s-heavy-pascal.caffemodel"  # the voc-fcn32s preset's download
IMAGE = np.random.default_rng(0).integers(0, 256, (1, 37, 45, 3)).astype("float32")


def _files(monkeypatch, tmp_path):
    """The tiny voc-fcn32s preset, and two different good files and a bad one (fc7 missing)
    served: their paths."""
    preset = tiny_preset(monkeypatch, NAME)
    model = preset.builder(**preset.build_kwargs)
    layers = caffe_layers(model)
    _, good = serve(tmp_path, layers, "good.caffemodel")
    other = [layer._replace(blobs=[blob + 1 for blob in layer.blobs]) for layer in layers]
    _, second = serve(tmp_path, other, "other.caffemodel")
    _, bad = serve(tmp_path, caffe_layers(model, skip=("fc7",)), "bad.caffemodel")
    return good, second, bad


def _same(a, b):
    np.testing.assert_allclose(a.predict(IMAGE, verbose=0), b.predict(IMAGE, verbose=0),
                               rtol=1e-5, atol=1e-5)


def _sha256(path):
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def test_a_file_that_fails_conversion_is_deleted_and_url_is_then_used(monkeypatch, tmp_path):
    """The file that did not fit stayed in the cache, and from_preset(url=<a good file>)
    ignored url= and repeated the old error."""
    good, _, bad = _files(monkeypatch, tmp_path)
    cache = tmp_path / "cache"
    target = cache / "keras_fcn" / FILENAME
    with pytest.raises(ValueError) as info:
        from_preset(NAME, cache_dir=str(cache), url=bad)
    message = str(info.value)
    assert "without weights in the file: ['fc7']" in message
    assert f"The file was deleted ({target})" in message
    assert not target.exists()
    model = from_preset(NAME, cache_dir=str(cache), url=good)
    _same(model, from_preset(NAME, cache_dir=str(tmp_path / "fresh"), url=good))


def test_an_explicit_url_replaces_a_different_cached_file(monkeypatch, tmp_path):
    good, second, _ = _files(monkeypatch, tmp_path)
    cache = tmp_path / "cache"
    target = cache / "keras_fcn" / FILENAME
    target.parent.mkdir(parents=True)
    target.write_bytes(open(second, "rb").read())  # another file, put there earlier
    model = from_preset(NAME, cache_dir=str(cache), url=good)
    assert target.read_bytes() == open(good, "rb").read()
    _same(model, from_preset(NAME, cache_dir=str(tmp_path / "fresh"), url=good))
    # the same file as the cached one: used, not copied again
    os.remove(fetch.converted_path(NAME, str(cache)))
    before = os.stat(target).st_mtime_ns
    from_preset(NAME, cache_dir=str(cache), url=good)
    assert os.stat(target).st_mtime_ns == before


def test_url_and_file_hash_are_checked_against_a_cached_converted_model(monkeypatch, tmp_path):
    """The cached <name>.keras came back whatever url= and file_hash= said."""
    good, second, _ = _files(monkeypatch, tmp_path)
    cache = str(tmp_path / "cache")
    first = from_preset(NAME, cache_dir=cache, url=good)
    cached = fetch.converted_path(NAME, cache)
    sidecar = json.loads(open(cached[:-len(".keras")] + ".labels.json").read())
    assert sidecar["source_sha256"] == _sha256(good)
    _same(first, from_preset(NAME, cache_dir=cache, url=good))  # its own source: fine
    _same(first, from_preset(NAME, cache_dir=cache, file_hash=_sha256(good)))
    for kwargs, what in (({"url": second}, f"url={second!r}"),
                         ({"file_hash": "ab" * 32}, f"file_hash={'ab' * 32!r}")):
        with pytest.raises(ValueError) as info:
            from_preset(NAME, cache_dir=cache, **kwargs)
        message = str(info.value)
        assert message.startswith(f"Preset {NAME!r}: the converted model {cached} in the cache "
                                  f"does not fit {what}")
        assert f"delete {cached}" in message and "cache_dir=" in message
    # a .keras put there by hand (no recorded source): url= cannot be checked, so refused
    os.remove(cached[:-len(".keras")] + ".labels.json")
    with pytest.raises(ValueError, match=r"records no source"):
        from_preset(NAME, cache_dir=cache, url=good)
    _same(first, from_preset(NAME, cache_dir=cache))  # without url=: used as it is


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_read_only_cache_with_only_the_caffemodel_converts_without_caching(
        monkeypatch, tmp_path, code):
    good, _, _ = _files(monkeypatch, tmp_path)
    cache = tmp_path / "cache"
    folder = cache / "keras_fcn"
    folder.mkdir(parents=True)
    (folder / FILENAME).write_bytes(open(good, "rb").read())

    def save_model(model, path, overwrite=True):
        raise (PermissionError if code == errno.EACCES else OSError)(
            code, os.strerror(code), str(path))

    monkeypatch.setattr(io, "save_model", save_model)
    monkeypatch.setattr(fetch, "_WARNED_READ_ONLY", set(), raising=False)
    with pytest.warns(UserWarning) as caught:
        model = from_preset(NAME, cache_dir=str(cache))
        from_preset(NAME, cache_dir=str(cache))  # warned once
    assert len(caught) == 1
    assert f"{folder} cannot be written" in str(caught[0].message)
    assert "cache_dir=" in str(caught[0].message)
    assert sorted(os.listdir(folder)) == [FILENAME]
    assert model.output_shape[-1] == 21


def _read_only_file_system(monkeypatch, under):
    real = os.makedirs

    def makedirs(path, *args, **kwargs):
        if os.fspath(path).startswith(os.fspath(under)):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)


def test_a_read_only_file_system_names_the_folder_and_is_no_network_error(monkeypatch,
                                                                         tmp_path):
    cache = tmp_path / "ro"
    _read_only_file_system(monkeypatch, cache)
    with pytest.raises(PermissionError) as info:
        from_preset(NAME, cache_dir=str(cache), url="file:///nowhere/x.caffemodel")
    assert f"{cache / 'keras_fcn'} cannot be created" in str(info.value)
    assert "Read-only file system" in str(info.value) and "cache_dir" in str(info.value)
    with pytest.raises(PermissionError) as info:
        imagenet.fetch_vgg16_imagenet_weights(str(cache), url="file:///nowhere/x.h5")
    message = str(info.value)
    assert f"{cache / 'models'} cannot be written" in message
    assert "cache_dir=" in message and "KERAS_HOME" in message
    assert "offline" not in message and not isinstance(info.value, io.DownloadError)

    # the folder is there, its lock file cannot be written: the same, not "(offline?)"
    (tmp_path / "c" / "keras_fcn").mkdir(parents=True)

    def lock_directory(folder, what):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(folder, io.LOCK_FILE))

    monkeypatch.setattr(imagenet, "lock_directory", lock_directory)
    with pytest.raises(PermissionError) as info:
        download_caffemodel(NAME, cache_dir=str(tmp_path / "c"), url="file:///nowhere/x")
    assert f"{tmp_path / 'c' / 'keras_fcn'} cannot be written" in str(info.value)
    assert "Without a network" not in str(info.value)


def test_local_urls_that_are_missing_or_folders_get_no_network_advice(tmp_path):
    cache = str(tmp_path / "cache")
    missing = tmp_path / "missing.caffemodel"
    with pytest.raises(io.DownloadError) as info:
        download_caffemodel(NAME, cache, url=missing.as_uri())
    message = str(info.value)
    assert f"no such file: {missing}" in message and "network" not in message
    folder = tmp_path / "downloads"
    folder.mkdir()
    for url in (str(folder), folder.as_uri()):
        with pytest.raises((ValueError, io.DownloadError)) as info:
            download_caffemodel(NAME, cache, url=url)
        assert f"{folder} is a folder, expected a .caffemodel file" in str(info.value)
        assert "network" not in str(info.value) and "no file is there" not in str(info.value)
    with pytest.raises(io.DownloadError, match=f"no such file: {tmp_path / 'w.h5'}"):
        imagenet.fetch_vgg16_imagenet_weights(cache, url=(tmp_path / "w.h5").as_uri())


def test_evaluate_checks_the_data_folder_before_fetching_a_preset(monkeypatch, tmp_path):
    """tools/evaluate.py downloaded and converted the preset (~540 MB) before it found that
    --data_dir did not exist."""
    from keras_fcn import presets
    from tests.tool_flags import run_in_process

    fetched = []

    def fetch_preset(*args, **kwargs):
        fetched.append(args)
        raise ValueError("fetched")

    monkeypatch.setattr(presets, "model_file", fetch_preset)
    monkeypatch.setattr(fetch, "from_preset", fetch_preset)
    missing = tmp_path / "VOCdevkit"
    done = run_in_process("tools/evaluate.py", "--model=voc-fcn8s", "--dataset=voc",
                          f"--data_dir={missing}", "--split=seg11valid")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"error: No VOC2012 or VOC2011 layout (SegmentationClass, JPEGImages, "
        f"ImageSets/Segmentation) found under --data_dir='{missing}'"), done.stderr
    assert fetched == []
