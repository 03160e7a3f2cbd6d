"""Tests of weight files: ImageNet VGG16 net surgery, formats read by name, offline errors."""

import hashlib

import h5py
import numpy as np
import pytest
import keras

import keras_fcn
from keras_fcn import weights as weights_lib
from keras_fcn.models import build_fcn
from tiny import TINY_FC as FC
from tiny import TINY_WIDTHS as WIDTHS


def tiny(variant="32s", weights=None, **kwargs):
    return build_fcn(variant, num_classes=3, weights=weights, widths=WIDTHS, fc_units=FC, **kwargs)


def write_legacy_vgg16_h5(path, widths=WIDTHS, fc_units=FC, seed=0):
    """Writes a small file in the layout of keras.applications' vgg16_weights_tf_dim_ordering_tf_kernels.h5."""
    rng = np.random.default_rng(seed)
    layers, cin = {}, 3
    for block, (width, count) in enumerate(zip(widths, (2, 2, 3, 3, 3)), start=1):
        for i in range(1, count + 1):
            layers[f"block{block}_conv{i}"] = [rng.normal(size=(3, 3, cin, width)), rng.normal(size=width)]
            cin = width
    layers["fc1"] = [rng.normal(size=(7 * 7 * cin, fc_units)), rng.normal(size=fc_units)]
    layers["fc2"] = [rng.normal(size=(fc_units, fc_units)), rng.normal(size=fc_units)]
    layers["predictions"] = [rng.normal(size=(fc_units, 10)), rng.normal(size=10)]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in ["input_1", *layers, "flatten"]]
        for name in ["input_1", "flatten"]:
            f.create_group(name).attrs["weight_names"] = []
        for name, (kernel, bias) in layers.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.create_dataset(f"{name}/kernel:0", data=kernel.astype("float32"))
            group.create_dataset(f"{name}/bias:0", data=bias.astype("float32"))
    return {k: [a.astype("float32") for a in v] for k, v in layers.items()}


def test_imagenet_vgg16_surgery_maps_fc1_fc2_to_fc6_fc7(tmp_path):
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    source = write_legacy_vgg16_h5(path)
    model = tiny("8s", weights=None)
    done = keras_fcn.load_weights(model, str(path))
    assert set(done) == set(weights_lib.VGG16_FCN_LAYERS)
    np.testing.assert_array_equal(model.get_layer("conv3_2").get_weights()[0], source["block3_conv2"][0])
    # fc6 as a 7x7 convolution on a 7x7 map equals the dense fc1 on the flattened NHWC map.
    feature = np.random.default_rng(1).normal(size=(1, 7, 7, WIDTHS[-1])).astype("float32")
    conv = np.asarray(model.get_layer("fc6")(feature))[0, 0, 0]
    dense = np.maximum(feature.reshape(1, -1) @ source["fc1"][0] + source["fc1"][1], 0)[0]
    np.testing.assert_allclose(conv, dense, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(model.get_layer("fc7").get_weights()[0][0, 0], source["fc2"][0])
    assert all(np.all(w == 0) for w in model.get_layer("score_fr").get_weights())


def test_builder_weights_path_and_rgbd_first_conv_extension(tmp_path):
    path = tmp_path / "vgg.h5"
    source = write_legacy_vgg16_h5(path)
    model = build_fcn("32s", num_classes=3, input_shape=(None, None, 4), weights=str(path),
                      widths=WIDTHS, fc_units=FC)
    kernel = model.get_layer("conv1_1").get_weights()[0]
    np.testing.assert_array_equal(kernel[:, :, :3], source["block1_conv1"][0])
    np.testing.assert_allclose(kernel[:, :, 3], source["block1_conv1"][0].mean(axis=2), rtol=1e-6)


def test_vgg16_file_missing_a_layer_is_an_error(tmp_path):
    path = tmp_path / "vgg.h5"
    write_legacy_vgg16_h5(path)
    with h5py.File(path, "a") as f:
        names = [n for n in f.attrs["layer_names"] if n != "fc2"]
        f.attrs["layer_names"] = names
    with pytest.raises(ValueError, match="fc7"):
        keras_fcn.load_weights(tiny(), str(path))


@pytest.mark.parametrize("suffix", [".keras", ".npz"])
def test_weight_formats_round_trip_by_name(tmp_path, suffix):
    from test_models import randomize

    source = randomize(tiny("16s"), seed=4)
    path = str(tmp_path / f"w{suffix}")
    if suffix == ".keras":
        source.save(path)
    else:
        np.savez(path, **{f"{name}/{i}": a for name, arrays in keras_fcn.read_weights(source).items()
                          for i, a in enumerate(arrays)})
    target = tiny("8s", weights=path)  # staged init from a file
    for name in ("conv1_1", "fc7", "score_fr", "score_pool4", "upscore2"):
        for a, b in zip(source.get_layer(name).get_weights(), target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert all(np.all(w == 0) for w in target.get_layer("score_pool3").get_weights())


def test_shape_mismatch_names_the_layer_and_shapes():
    source = tiny("32s")
    other = build_fcn("32s", num_classes=5, weights=None, widths=WIDTHS, fc_units=FC)
    with pytest.raises(ValueError, match=r"score_fr.*\(1, 1, 8, 3\).*\(1, 1, 8, 5\)"):
        keras_fcn.set_weights_by_name(other, keras_fcn.read_weights(source))
    done = keras_fcn.set_weights_by_name(other, keras_fcn.read_weights(source), skip_mismatch=True)
    assert "score_fr" not in done and "fc6" in done


def test_bad_weight_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        tiny(weights=str(tmp_path / "nope.h5"))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="junk.h5"):
        tiny(weights=str(junk))
    other = tmp_path / "w.pt"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"w\.pt"):
        tiny(weights=str(other))


def test_imagenet_download_offline_fails_fast_with_how_to(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(RuntimeError, match=r"offline.*weights='/path/to/vgg16_weights"):
        keras_fcn.build_fcn32s(weights="imagenet")


def test_download_is_checksummed_and_cached(tmp_path):
    served = tmp_path / "served.h5"
    served.write_bytes(b"pretend weights")
    md5 = hashlib.md5(b"pretend weights").hexdigest()
    cache = tmp_path / "cache"
    path = weights_lib.fetch_vgg16_imagenet_weights(str(cache), url=served.as_uri(), md5=md5)
    assert open(path, "rb").read() == b"pretend weights"
    served.unlink()  # cached: a second call needs no source
    assert weights_lib.fetch_vgg16_imagenet_weights(str(cache), url=served.as_uri(), md5=md5) == path
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"corrupted")
    with pytest.raises(RuntimeError, match=f"failed their checksum \\(expected {md5}\\)"):
        weights_lib.fetch_vgg16_imagenet_weights(str(tmp_path / "c2"), url=bad.as_uri(), md5=md5)


def test_keras3_weights_file_loads_into_the_same_architecture_only(tmp_path):
    from test_models import randomize

    source = randomize(tiny("16s"), seed=4)
    path = str(tmp_path / "w.weights.h5")
    source.save_weights(path)
    same = tiny("16s", weights=path)
    for a, b in zip(source.get_weights(), same.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"w\.weights\.h5.*\.keras model file"):
        tiny("8s", weights=path)


def test_a_weights_file_that_matches_no_layer_is_an_error_naming_it(tmp_path):
    """A file of another network used to load nothing, silently (issue 25)."""
    from keras_fcn.weights import save_npz

    path = str(tmp_path / "other.npz")
    save_npz({"dense_1": [np.zeros((3, 2), "float32"), np.zeros(2, "float32")]}, path)
    with pytest.raises(ValueError, match=r"other\.npz.*match no layer"):
        build_fcn("32s", num_classes=3, weights=path, widths=(4, 4, 8, 8, 8), fc_units=8)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense_1")])
    with pytest.raises(ValueError, match="match no layer"):
        build_fcn("32s", num_classes=3, weights=other, widths=(4, 4, 8, 8, 8), fc_units=8)
