"""Findings of the inference walkthrough of 2026-12-07 (session 24), each failing before its fix:
the API's wrong-kind arguments, --tile_size without --tile_overlap, a --model that is not a
model file, and where the tool's report goes."""

import keras
import numpy as np
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
