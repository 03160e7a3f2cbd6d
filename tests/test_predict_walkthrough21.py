"""Prediction on odd image files (walkthrough of session 21): files of a folder that share a
stem are named by their extension (a name hanging on the listing's order gave a rerun's kept
outputs to another file), a kept ``_labels.png`` must be this image's label map, a folder at
an output's name fails that image only, GIFs in folders are predicted (first frame, said),
other files of a folder are named, and a bool array is refused."""

import keras
import numpy as np
import pytest
from PIL import Image

import keras_fcn
from keras_fcn.inference import files
from keras_fcn.inference.predictor import PredictOptions
from tiny import saved_raw_rgb_fcn, tiny_fcn


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), 3, seed=4)[1]


def _photo(path, width, height, seed=0, fmt=None):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, fmt)
    return str(path)


def _size(path):
    with Image.open(path) as image:
        return image.size


def test_files_sharing_a_stem_keep_their_names_when_a_file_joins_the_folder(tmp_path,
                                                                             model_path):
    folder = tmp_path / "dup"
    folder.mkdir()
    jpg, png = _photo(folder / "a.jpg", 56, 40, 0), _photo(folder / "a.png", 24, 16, 1)
    opts = PredictOptions(model=model_path, inputs=[str(folder)], output_dir=str(tmp_path / "o"))
    report = files.run(opts)
    out = tmp_path / "o" / "dup"
    assert report.processed == 2 and not report.failures
    assert _size(out / "a_jpg_labels.png") == (56, 40) and _size(out / "a_png_labels.png") == (24, 16)
    assert f"{jpg}: outputs named a_jpg_* (another file there has that stem)" in report.warnings
    assert f"{png}: outputs named a_png_* (another file there has that stem)" in report.warnings
    # a.bmp sorts first: before, it took the name 'a' and the others shifted, keeping
    # a.jpg's outputs as a.png's; now each name stays, and a.bmp is predicted
    bmp = _photo(folder / "a.bmp", 30, 20, 2, "BMP")
    again = files.run(opts)
    assert again.processed == 1 and not again.failures, again.failures
    assert _size(out / "a_bmp_labels.png") == (30, 20)
    assert _size(out / "a_jpg_labels.png") == (56, 40) and _size(out / "a_png_labels.png") == (24, 16)
    labels, _ = keras_fcn.predict(keras.models.load_model(model_path),
                                  np.asarray(Image.open(bmp).convert("RGB")))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a_bmp_labels.png")), labels)


def test_a_kept_label_map_of_another_size_fails_the_image(tmp_path, model_path):
    """Outputs counted as kept must be this image's: a label map of another size was kept as
    if it were (a user's file or another input's outputs)."""
    image = _photo(tmp_path / "x.png", 20, 12)
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(out / "x_labels.png")
    report = files.run(PredictOptions(model=model_path, inputs=[image], output_dir=str(out)))
    labels = str(out / "x_labels.png")
    assert report.failures == [(image, f"its output {labels!r} exists but is 5x7 pixels (HxW), "
                                "not this image's 12x20: it is not this image's label map. It was "
                                "kept; move it, or pass --overwrite to replace it")]
    assert report.written == 0 and _size(labels) == (7, 5)
    report = files.run(PredictOptions(model=model_path, inputs=[image], output_dir=str(out),
                                      overwrite=True))
    assert not report.failures and _size(labels) == (20, 12)
    # a kept label map of the image's own size is kept, as before
    report = files.run(PredictOptions(model=model_path, inputs=[image], output_dir=str(out)))
    assert not report.failures and report.skipped == 2 and report.written == 0


def test_a_kept_label_map_of_an_exif_rotated_photo_is_its_displayed_size(tmp_path, model_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed a quarter turn: 40 wide, 56 high
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)).save(
        path, exif=exif)
    opts = PredictOptions(model=model_path, inputs=[str(path)], output_dir=str(tmp_path / "o"))
    assert files.run(opts).processed == 1
    assert _size(tmp_path / "o" / "phone_labels.png") == (40, 56)
    again = files.run(opts)
    assert not again.failures and again.skipped == 2


def test_gifs_in_a_folder_are_predicted_and_other_files_named(tmp_path, model_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    frames = [Image.fromarray(np.full((12, 16, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    _photo(folder / "still.png", 16, 12)
    (folder / "notes.txt").write_text("not a photo")
    report = files.run(PredictOptions(model=model_path, inputs=[str(folder)],
                                      output_dir=str(tmp_path / "o")))
    assert report.processed == 2 and not report.failures
    assert _size(tmp_path / "o" / "mixed" / "anim_labels.png") == (16, 12)
    assert any(line.startswith(f"{folder / 'anim.gif'}: 3 frames") and "only the first" in line
               for line in report.warnings), report.warnings
    assert any(line.startswith(f"{folder}: skipped 1 file(s) that are neither images") and
               line.endswith("nor videos: notes.txt") for line in report.warnings), report.warnings
    # a folder of GIFs alone was "a folder that holds no image or video files"
    alone = tmp_path / "gifs"
    alone.mkdir()
    frames[0].save(alone / "one.gif")
    assert files.run(PredictOptions(model=model_path, inputs=[str(alone)],
                                    output_dir=str(tmp_path / "o2"))).processed == 1


def test_a_bool_array_is_refused():
    with pytest.raises(ValueError, match=r"^Image 0 is a bool array \(0/1 pixels\); expected "
                       r"RGB in \[0, 255\]\. Read a 1-bit image file with "
                       r"keras_fcn\.inference\.read_image"):
        keras_fcn.predict(tiny_fcn(), np.ones((8, 8, 3), bool))
