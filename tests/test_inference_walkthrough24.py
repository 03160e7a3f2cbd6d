"""Findings of the inference walkthroughs of 2026-12-07 (session 24), each failing before its
fix: the API's wrong-kind arguments, --tile_size without --tile_overlap, a --model that is not a
model file, where the tool's report goes, tiles off the network's 32-pixel grid, and the
precision the tool ran in."""

import keras
import numpy as np
from keras import ops
import pytest
from PIL import Image

import keras_fcn
from tiny import saved_raw_rgb_fcn
from tool_flags import one_error_line, run_in_process


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), 3, seed=4)[1]


def _photo(path, height, width, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_predict_names_a_file_name_given_for_the_model_or_an_image(model_path, tmp_path):
    """keras_fcn.predict("run/best.keras", image): AttributeError "'str' object has no
    attribute 'layers'"; an image's file name: "Received: shape=()"; tta_flip="no" flipped."""
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(TypeError, match=r"model must be a keras.Model \(a file name: load it "
                                        r"with keras.models.load_model.*Received: '.*tiny"):
        keras_fcn.predict(model_path, image)
    model = keras.models.load_model(model_path, compile=False)
    photo = _photo(tmp_path / "p.png", 8, 8)
    for images in (photo, [image, photo]):
        with pytest.raises(TypeError, match=r"not file names; read a file with "
                                            r"keras_fcn.inference.read_image.*p\.png'"):
            keras_fcn.predict(model, images)
    with pytest.raises(TypeError, match=r"tta_flip must be True or False. Received: "
                                        r"tta_flip='no'"):
        keras_fcn.predict(model, image, tta_flip="no")
    labels = keras_fcn.predict(model, image, tta_flip=np.bool_(False),
                               return_probabilities=False)
    assert labels.shape == (8, 8)


def test_tile_size_alone_takes_a_quarter_as_its_overlap(model_path, tmp_path):
    """--tile_size=32 alone failed on --tile_overlap's default 64, in predict()'s parameter
    names ("tile_overlap must be an integer in [0, tile_size)")."""
    photo = _photo(tmp_path / "p.png", 40, 72)

    def labels(out, *flags):
        done = run_in_process("tools/predict.py", f"--model={model_path}", "--noprogress",
                              f"--output_dir={tmp_path / out}", "--image_size=native",
                              *flags, photo, positional=True)
        assert done.returncode == 0, done.stderr
        return np.asarray(Image.open(tmp_path / out / "p_labels.png"))

    alone = labels("alone", "--tile_size=32")
    np.testing.assert_array_equal(alone, labels("eight", "--tile_size=32", "--tile_overlap=8"))
    assert alone.shape == (40, 72)
    done = run_in_process("tools/predict.py", f"--model={model_path}", "--tile_size=32",
                          "--tile_overlap=40", f"--output_dir={tmp_path / 'no'}", photo,
                          positional=True)
    assert one_error_line(done) == ("error: --tile_overlap must be >= 0 and smaller than "
                                    "--tile_size=32. Received: --tile_overlap=40")
    assert not (tmp_path / "no").exists()


def test_a_file_of_another_kind_as_the_model_is_named_in_one_line(tmp_path):
    """--model=run/config.json: Keras' message about legacy SavedModels and TFSMLayer."""
    (tmp_path / "config.json").write_text("{}")
    photo = _photo(tmp_path / "p.png", 8, 8)
    done = run_in_process("tools/predict.py", f"--model={tmp_path / 'config.json'}",
                          f"--output_dir={tmp_path / 'out'}", photo, positional=True)
    assert one_error_line(done) == (
        f"error: Cannot load the model file '{tmp_path / 'config.json'}': its name ends in "
        "'.json'; expected a .keras file (written by model.save) or a legacy Keras .h5 file.")


def test_the_tools_warnings_and_failures_go_to_stderr(model_path, tmp_path):
    """They came out on stdout with the counts ("processed 1 frames")."""
    folder = tmp_path / "frames"
    folder.mkdir()
    _photo(folder / "a.png", 16, 16)
    (folder / "b.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("x")
    done = run_in_process("tools/predict.py", f"--model={model_path}", "--noprogress",
                          f"--output_dir={tmp_path / 'out'}", str(folder), positional=True)
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "processed 1 frame, wrote 2 files"
    assert "1 input(s) failed:" in done.stderr and "b.png" in done.stderr
    assert "warning: " in done.stderr and "notes.txt" in done.stderr
    assert "warning" not in done.stdout and "failed" not in done.stdout


class _BlockMean(keras.layers.Layer):
    """Each pixel gets the mean of its 32x32 block of a grid anchored at the input's origin:
    the pooling grid of an FCN at its coarsest stride, with a receptive field of one block."""

    def call(self, x):
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        pooled = ops.average_pool(x, 32, 32, padding="same")
        return ops.repeat(ops.repeat(pooled, 32, axis=1), 32, axis=2)[:, :height, :width, :]


def test_tiles_equal_one_pass_on_the_networks_grid():
    """The last tile was flush with the image at any offset (2500x2100 in 1024-pixel tiles:
    at 1076 and 1476), off the 32-pixel pooling grid of a one-pass prediction: 1-9% of the
    labels across those tiles changed. Tiles now start on the grid; with a model whose
    receptive field is one block, tiled and one-pass probabilities are equal everywhere."""
    image = keras.Input((None, None, 3))
    blocks = _BlockMean()(keras.layers.Rescaling(1 / 255, name="preprocess")(image))
    logits = keras.layers.Conv2D(3, 1, kernel_initializer=keras.initializers.RandomNormal(
        0, 5, seed=1))(blocks)
    model = keras.Model(image, logits)
    # blocks of random colours, 16 pixels wide: every 32-pixel block mixes four of them
    colours = np.random.default_rng(0).integers(0, 256, (12, 20, 3)).astype("uint8")
    photo = np.repeat(np.repeat(colours, 16, axis=0), 16, axis=1)  # 192x320
    for flip in (False, True):
        _, whole = keras_fcn.predict(model, photo, tile_size=None, tta_flip=flip)
        # 112-pixel tiles, 40 overlapping: before, they started at 0, 80 (rows) and 0, 72,
        # 144, 208 (columns)
        _, tiled = keras_fcn.predict(model, photo, tile_size=112, tile_overlap=40,
                                     tta_flip=flip)
        assert np.abs(whole - whole.mean((0, 1))).max() > 0.05  # the blocks differ
        np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_the_tool_says_which_precision_it_computed_in(model_path, tmp_path):
    """The summary was the same for float32, bfloat16, float16 and auto (which resolves to
    bfloat16 on CPUs with AVX512-BF16), unlike tools/evaluate.py's."""
    from keras_fcn import runtime

    photo = _photo(tmp_path / "p.png", 16, 16)
    model = keras.models.load_model(model_path, compile=False)
    auto = runtime.resolve_precision("auto", model=model)
    for flags, expected in (((), "computed in float32"),
                            (("--precision=bfloat16",), "computed in bfloat16"),
                            (("--precision=auto",), f"computed in {auto} (--precision=auto)")):
        done = run_in_process("tools/predict.py", f"--model={model_path}", "--noprogress",
                              "--image_size=native", *flags,
                              f"--output_dir={tmp_path / str(len(flags)) / expected[-5:]}",
                              photo, positional=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == ("model input at each image's own size "
                                               f"(--image_size=native: no resizing), {expected}")


def test_a_local_url_that_is_no_caffemodel_is_named_without_download_advice(monkeypatch,
                                                                             tmp_path):
    """from_preset(url=<a local junk file>) said "call again to download it anew", which
    copies the same file again."""
    from keras_fcn import from_preset
    from test_fetch import FILENAME, tiny_preset

    tiny_preset(monkeypatch, "voc-fcn32s")
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(ValueError) as info:
        from_preset("voc-fcn32s", cache_dir=str(tmp_path / "cache"), url=junk.as_uri())
    assert "not a valid .caffemodel" in str(info.value)
    assert str(info.value).endswith(f"The file was deleted (a copy of url='{junk.as_uri()}', "
                                    "which was kept): pass url= of the right file.")
    assert junk.exists() and not (tmp_path / "cache" / "keras_fcn" / FILENAME).exists()
