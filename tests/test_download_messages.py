"""What the download errors say: a plain path or an unknown scheme as ``url=`` (once reported
as a checksum mismatch against file_hash=None), a real checksum mismatch (both digests), and a
wrong file already in the cache while offline (once only "offline?"). No network: small files
served through file:// URLs and plain paths."""

import hashlib
import os
import pathlib
import re

import pytest

from preset_files import caffe_layers, serve, tiny_preset
from keras_fcn import io
from keras_fcn.presets import download_caffemodel, from_preset
from keras_fcn.weights import imagenet

FILENAME = "fcn32s-heavy-pascal.caffemodel"  # the voc-fcn32s preset's download
CONTENT = b"released weights " * 64
VGG = imagenet.VGG16_WEIGHTS_FILE
HOW_TO_PASS = f"build_fcn8s(weights='/path/to/{VGG}')"


@pytest.fixture
def source(tmp_path):
    """A small file on disk (what a user downloaded by hand)."""
    path = tmp_path / "server" / FILENAME
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _md5(data):
    return hashlib.md5(data).hexdigest()


def test_a_plain_path_of_an_existing_file_is_taken_as_its_file_url(monkeypatch, tmp_path,
                                                                     source):
    """get_file takes no paths ("unknown url type"): that was a 'does not match file_hash'."""
    cache = tmp_path / "cache"
    path = download_caffemodel("voc-fcn32s", str(cache), file_hash=_sha256(CONTENT),
                               url=str(source))
    assert path == str(cache / "keras_fcn" / FILENAME)
    assert pathlib.Path(path).read_bytes() == CONTENT
    monkeypatch.chdir(source.parent)  # a relative path too
    other = download_caffemodel("voc-fcn32s", str(tmp_path / "other"), url=FILENAME)
    assert pathlib.Path(other).read_bytes() == CONTENT
    assert imagenet.download_url(FILENAME) == "file://" + str(source)
    assert imagenet.download_url("HTTPS://example.com/x") == "HTTPS://example.com/x"


def test_from_preset_converts_a_plain_path(monkeypatch, tmp_path):
    """The walkthrough's call: from_preset(name, url="/some/plain/path.caffemodel")."""
    preset = tiny_preset(monkeypatch, "voc-fcn32s")
    _, path = serve(tmp_path, caffe_layers(preset.builder(**preset.build_kwargs)))
    model = from_preset("voc-fcn32s", cache_dir=str(tmp_path / "cache"), url=path)
    assert model.output_shape[-1] == 21
    assert os.path.isfile(tmp_path / "cache" / "keras_fcn" / "voc-fcn32s.keras")


def test_a_plain_path_without_a_file_or_another_scheme_is_named(tmp_path):
    cache = tmp_path / "cache"
    missing = str(tmp_path / "absent" / FILENAME)
    with pytest.raises(ValueError) as info:
        download_caffemodel("voc-fcn32s", str(cache), url=missing)
    assert str(info.value) == (
        "Preset 'voc-fcn32s': url must be an http://, https://, ftp:// or file:// URL, or the "
        f"path of an existing file; {missing!r} is neither: no file is there (a local copy is "
        "given by the path of an existing file, or as file:// and its absolute path, e.g. "
        f"file://{missing}). Received: url={missing!r}")
    with pytest.raises(ValueError) as info:
        imagenet.fetch_vgg16_imagenet_weights(str(cache), url="s3://bucket/w.h5")
    assert str(info.value) == (
        "Cannot fetch the ImageNet VGG16 weights: url must be an http://, https://, ftp:// or "
        "file:// URL, or the path of an existing file; 's3://bucket/w.h5' is neither. "
        "Received: url='s3://bucket/w.h5'")
    with pytest.raises(ValueError, match=r"^url must be a URL or a file path \(str\)\. "
                                         r"Received: url=b'/w.h5'$"):
        imagenet.download_url(b"/w.h5")
    # a bad port or no host: named, not a download that failed "(offline?)"
    for bad, what in (("http://h:abc/w.h5", "the port 'abc'"), ("https://h:70000/w.h5",
                                                                 "the port '70000'"),
                      ("ftp:///w.h5", "no host")):
        with pytest.raises(ValueError) as info:
            imagenet.fetch_vgg16_imagenet_weights(str(cache), url=bad)
        assert str(info.value) == (
            f"Cannot fetch the ImageNet VGG16 weights: url {bad!r} has {what}: expected a URL "
            "like https://host[:port]/path, the port a number of 0 to 65535. "
            f"Received: url={bad!r}")
    assert imagenet.download_url("http://h:8080/w.h5") == "http://h:8080/w.h5"
    assert sorted(os.listdir(cache / "keras_fcn")) == []  # nothing was downloaded
    assert sorted(os.listdir(cache / "models")) == []


def test_a_checksum_mismatch_names_both_digests(tmp_path, source):
    cache = tmp_path / "cache"
    wrong = "ab" * 32
    with pytest.raises(ValueError) as info:
        download_caffemodel("voc-fcn32s", str(cache), file_hash=wrong.upper(),
                            url=source.as_uri())
    target = cache / "keras_fcn" / FILENAME
    assert str(info.value) == (
        f"Preset 'voc-fcn32s': {target} downloaded from {source.as_uri()} does not match "
        f"file_hash={wrong!r}: its SHA-256 is {_sha256(CONTENT)}. The download was deleted: "
        "check url= and file_hash=.")
    assert os.listdir(cache / "keras_fcn") == []
    md5 = "cd" * 16
    with pytest.raises(io.DownloadError) as info:
        imagenet.fetch_vgg16_imagenet_weights(str(cache), url=str(source), md5=md5)
    assert str(info.value) == (
        f"The ImageNet VGG16 weights from {source} failed their checksum (expected {md5}): the "
        f"download's MD5 is {_md5(CONTENT)}, so it was deleted ({cache / 'models' / VGG}). "
        f"Check url= and the checksum, or pass a local copy: {HOW_TO_PASS}.")
    assert os.listdir(cache / "models") == []


def test_a_wrong_file_in_the_cache_offline_is_named_with_its_digests(tmp_path, source):
    """The file put in the cache by hand failed its MD5: the error only said 'offline?' and to
    copy the file to the path where it already was."""
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    cached = cache / "models" / VGG
    cached.write_bytes(b"random bytes")
    offline = (tmp_path / "nowhere" / VGG).as_uri()
    md5 = _md5(CONTENT)
    with pytest.raises(io.DownloadError) as info:
        imagenet.fetch_vgg16_imagenet_weights(str(cache), url=offline, md5=md5)
    assert re.fullmatch(re.escape(
        f"The file already at {cached} failed its MD5 checksum (expected {md5}, got "
        f"{_md5(b'random bytes')}): a damaged or wrong file. Delete it, or replace it with the "
        f"right file. Downloading the ImageNet VGG16 weights anew from {offline} failed "
        f"(offline?): URL fetch failure on {offline}") + r".+" + re.escape(
        f"Download {offline} on a machine with internet access and either copy it to "
        f"{cached} or pass its path: {HOW_TO_PASS}. Use weights=None for a randomly "
        "initialized trunk."), str(info.value))
    assert cached.read_bytes() == b"random bytes"  # the user's file: kept
    # Online again (the URL serves the right file): replaced.
    assert imagenet.fetch_vgg16_imagenet_weights(str(cache), url=str(source), md5=md5) \
        == str(cached)
    assert cached.read_bytes() == CONTENT

    # A preset with file_hash: the same note.
    target = cache / "keras_fcn" / FILENAME
    target.parent.mkdir()
    target.write_bytes(b"random bytes")
    with pytest.raises(io.DownloadError) as info:
        download_caffemodel("voc-fcn32s", str(cache), file_hash=md5, url=offline)
    assert str(info.value).startswith(
        f"Preset 'voc-fcn32s': The file already at {target} failed its MD5 checksum (expected "
        f"{md5}, got {_md5(b'random bytes')}): a damaged or wrong file. Delete it, or replace "
        f"it with the right file. Downloading it anew from {offline} failed (URL fetch "
        f"failure on {offline}")
    assert str(info.value).endswith(
        f"Without a network, download that file on another machine and put it at {target}, "
        "then call again.")


def test_imagenet_weights_honour_keras_home(monkeypatch, tmp_path, source):
    """As keras.utils.get_file (and keras.applications, which cache the same file) do."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    md5 = _md5(CONTENT)
    path = imagenet.fetch_vgg16_imagenet_weights(url=source.as_uri(), md5=md5)
    assert path == str(tmp_path / "keras_home" / "models" / VGG)
    assert imagenet.weights_cache(str(tmp_path / "c")) == str(tmp_path / "c" / "models")
    monkeypatch.delenv("KERAS_HOME")
    assert imagenet.weights_cache() == os.path.expanduser(os.path.join("~", ".keras", "models"))
