"""Review 7 of the pretrained weights, presets and downloads: a download killed midway, two
processes downloading one file, a read-only cache, a damaged cached file, and state dicts or
Caffe files with values that must not load as weights (bfloat16, integers, NaN)."""

import fcntl
import hashlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import keras
from caffe_writer import write_caffemodel
from preset_files import caffe_layers, tiny_preset
from keras_fcn import io
from keras_fcn.presets import download_caffemodel, from_preset
from keras_fcn.weights import (
    CaffeLayer,
    convert_caffemodel,
    convert_torch_state_dict,
    convert_torchvision_state_dict,
    load_torch_state_dict,
)
from keras_fcn.weights import imagenet

FILENAME = "fcn32s-heavy-pascal.caffemodel"  # the voc-fcn32s preset's download
CONTENT = bytes(range(256)) * 64


@pytest.fixture
def served(tmp_path):
    """A small file served through a file:// URL (the download tests convert nothing)."""
    path = tmp_path / "server" / FILENAME
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path.as_uri()


# --- downloads ---------------------------------------------------------------------------

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


# --- values that must not load as weights ---------------------------------------------------

def _conv_state_dict(dtype="float32"):
    import torch

    rng = np.random.default_rng(0)
    weight = torch.tensor(rng.normal(size=(4, 3, 3, 3)).astype("float32"))
    return {"conv1_1.weight": weight.to(getattr(torch, dtype)),
            "conv1_1.bias": torch.arange(4, dtype=torch.float32).to(getattr(torch, dtype))}


def test_a_bfloat16_state_dict_converts_like_its_float32_values():
    """numpy has no bfloat16: the conversion failed with torch's TypeError ("Got unsupported
    ScalarType BFloat16"), a traceback in tools/convert_weights.py."""
    bf16 = _conv_state_dict("bfloat16")
    as_float = {key: value.float() for key, value in bf16.items()}
    got, expected = convert_torch_state_dict(bf16), convert_torch_state_dict(as_float)
    for a, b in zip(got["conv1_1"], expected["conv1_1"]):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    tv = convert_torchvision_state_dict({"backbone.conv1.weight": bf16["conv1_1.weight"]})
    np.testing.assert_array_equal(tv["conv1"][0], expected["conv1_1"][0])


def test_an_integer_state_dict_is_refused_naming_the_key():
    """Integer (quantized, or wrong) tensors were cast to float and loaded as weights."""
    ints = _conv_state_dict("int32")
    with pytest.raises(ValueError, match=r"^state dict: entry 'conv1_1\.weight' holds int32 "
                                         r"values; expected floating-point weights"):
        convert_torch_state_dict(ints)
    with pytest.raises(ValueError, match=r"^state dict: entry 'backbone\.conv1\.weight' holds "
                                         r"int32 values"):
        convert_torchvision_state_dict({"backbone.conv1.weight": ints["conv1_1.weight"],
                                        "backbone.bn1.num_batches_tracked": 3})


def test_nan_weights_are_refused_naming_the_file_and_array(tmp_path):
    """A diverged snapshot's NaN loaded silently from .pth and .caffemodel files (the .npz,
    .h5 and .keras readers refused them)."""
    import torch

    state = _conv_state_dict()
    state["conv1_1.weight"][0, 0, 0, 0] = float("nan")
    path = str(tmp_path / "diverged.pth")
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"diverged\.pth: array 'conv1_1\.weight' has 1 NaN or "
                                         r"infinite values of 108"):
        convert_torch_state_dict(path)
    with pytest.raises(ValueError, match=r"^state dict: array 'backbone\.conv1\.weight' has 1 "):
        convert_torchvision_state_dict({"backbone.conv1.weight": state["conv1_1.weight"]})
    blob = np.zeros((4, 3, 3, 3), "float32")
    blob[1, 2, 0, 0] = np.inf
    caffemodel = write_caffemodel([CaffeLayer("conv1_1", "Convolution", [blob], 1)],
                                  str(tmp_path / "diverged.caffemodel"))
    with pytest.raises(ValueError, match=r"diverged\.caffemodel: array 'conv1_1/0' has 1 NaN or "
                                         r"infinite values of 108"):
        convert_caffemodel(caffemodel)


def test_a_pickled_model_file_is_one_line_naming_what_to_save(tmp_path):
    """torch's weights_only error is many lines with terminal colours: not a CLI error line."""
    import torch

    path = str(tmp_path / "module.pth")
    torch.save(torch.nn.Conv2d(3, 4, 3), path)
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(path)
    assert str(info.value) == (
        f"{path}: not a readable PyTorch file: it holds pickled Python objects, not only "
        "tensors (a whole model saved with torch.save(model)?); save model.state_dict() "
        "instead")


# --- tools/convert_weights.py ---------------------------------------------------------------

@pytest.mark.slow
def test_convert_weights_bad_flag_is_one_line_and_status_2(tmp_path):
    """absl's own flag error: "FATAL Flags parsing error" and a second line, exit status 1."""
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                        "convert_weights.py")
    result = subprocess.run(
        [sys.executable, tool, "--input=x.pth", "--model=fcn4s", f"--output={tmp_path}/o.keras"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error", "FATAL"))]
    assert lines == ["error: flag --model=fcn4s: value should be one of "
                     "<fcn32s|fcn16s|fcn8s|fcn8s_at_once>. Pass --helpfull to list the flags."]


def test_a_bad_blob_shape_names_its_layer(tmp_path):
    """A grouped Deconvolution whose group does not divide its inputs, or a blob that is not
    4-D, gave an error without the layer's name."""
    from keras_fcn.weights import convert_caffe_layers, read_converted_weights

    with pytest.raises(ValueError, match=r"^layer 'upscore': group=2 does not divide the 3 "
                                         r"input channels \(weight shape \(3, 1, 4, 4\)\)$"):
        convert_caffe_layers([CaffeLayer("upscore", "Deconvolution",
                                         [np.zeros((3, 1, 4, 4), "float32")], 2)])
    with pytest.raises(ValueError, match=r"^layer 'conv1_1': expected a 4-D conv weight "
                                         r"\(out, in, kh, kw\), got shape \(4, 27\)$"):
        convert_caffe_layers([CaffeLayer("conv1_1", "Convolution",
                                         [np.zeros((4, 27), "float32")], 1)])
    with pytest.raises(IsADirectoryError, match=r"is a directory; expected one of the files"):
        read_converted_weights(str(tmp_path))
