"""Review round 7 (2026-12-06, ninth session): argument checks that disagreed between modules.

Each test failed before its fix: a 0..1 float palette became black in labels.json and the mask
lookup, a string range was read character by character, NumPy ints were refused by predict and
export, a normalized 0..1 image was segmented as a near-black one.
"""

import importlib.util
import os

import numpy as np
import pytest

from keras_fcn._checks import as_range
from keras_fcn.data.masks import palette_to_table
from keras_fcn.export.graph import check_input_size
from keras_fcn.export.litert_runner import check_rgb_image
from keras_fcn.inference.images import check_image
from keras_fcn.inference.predict import check_predict_args
from keras_fcn.labels import ModelLabels, check_colour, check_ignore_label


@pytest.mark.parametrize("make", [
    lambda p: ModelLabels(num_classes=2, palette=p),
    palette_to_table,
])
def test_a_fractional_palette_is_refused_not_truncated_to_black(make):
    with pytest.raises(ValueError, match=r"palette\[0\] must be an \(r, g, b\) colour of whole "
                                         r"numbers in 0..255. Received: \[0.6, 0.2, 0.9\]"):
        make([[0.6, 0.2, 0.9], [1.0, 0.5, 0.0]])


def test_whole_float_colours_still_pass_as_ints():
    assert ModelLabels(num_classes=2, palette=[[0, 0, 0], [1.0, 5, 6]]).palette == (
        (0, 0, 0), (1, 5, 6))
    codes, labels = palette_to_table({(0, 0, 0): 1, (1, 2, 3.0): np.int64(0)})
    assert codes.tolist() == [0, 66051] and labels.tolist() == [1, 0]
    codes, labels = palette_to_table(np.array([[0, 0, 0], [128, 0, 0]]))
    assert codes.tolist() == [0, 8388608] and labels.tolist() == [0, 1]
    assert check_colour(np.array([255, 0, 7])) == (255, 0, 7)


@pytest.mark.parametrize("palette", [[0, 0, 0, 128, 0, 0], [[0, 0]], [[0, 0, 256]]])
def test_malformed_palettes_name_the_entry(palette):
    with pytest.raises(ValueError, match=r"palette\[0\] must be an \(r, g, b\) colour"):
        palette_to_table(palette)


def test_a_string_range_is_refused_not_read_per_character():
    with pytest.raises(ValueError, match="scale_range.*Received: scale_range='12'"):
        as_range("scale_range", "12")
    assert as_range("scale_range", ["0.5", 2]) == (0.5, 2.0)


def test_a_string_ignore_label_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="ignore_label must be an integer or None. "
                                         "Received: ignore_label='255'"):
        check_ignore_label("255", 3)
    check_ignore_label(np.int64(255), 3)
    with pytest.raises(ValueError, match="ignore_label=1 is a class id"):
        check_ignore_label(1.0, 3)


def test_numpy_ints_pass_predict_and_export_checks():
    assert check_predict_args(np.int64(2), np.int32(64), np.int64(8), [1.0]) == (1.0,)
    size = check_input_size((np.int64(360), np.int32(480)))
    assert size == (360, 480) and all(type(d) is int for d in size)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        check_predict_args(np.bool_(True), None, 64, [1.0])
    with pytest.raises(ValueError, match="input_size must be"):
        check_input_size((np.int64(0), 4))


def test_a_normalized_image_is_refused_by_predict_and_a_black_one_passes():
    with pytest.raises(ValueError, match=r"Image 0 looks normalized to \[0, 1\] \(max=0.9"):
        check_image(0, np.full((4, 4, 3), 0.9, np.float32))
    check_image(0, np.zeros((4, 4, 3), np.float32))        # an all-black frame
    check_image(0, np.full((4, 4, 3), 1.5, np.float32))    # dark, but on the 0..255 scale
    assert check_rgb_image(np.zeros((4, 4, 3), np.float32)).shape == (4, 4, 3)
    with pytest.raises(ValueError):
        check_rgb_image(np.full((4, 4, 3), 0.5, np.float32))


def test_the_safe_backup_refuses_a_keras_without_the_internals_it_overrides(tmp_path,
                                                                            monkeypatch):
    import keras

    from keras_fcn.training.callbacks import NaNGuard, SafeBackupAndRestore

    backup = SafeBackupAndRestore(str(tmp_path / "b"), NaNGuard(steps_per_epoch=1))
    assert callable(backup._save_model)  # the installed Keras has them
    monkeypatch.delattr(keras.callbacks.BackupAndRestore, "_load_model")
    with pytest.raises(RuntimeError, match=r"Keras .* has no BackupAndRestore._load_model\(\): "
                                           "keras_fcn's safe backup"):
        SafeBackupAndRestore(str(tmp_path / "c"), NaNGuard(steps_per_epoch=1))


@pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV not installed")
def test_a_video_without_decodable_frames_fails_instead_of_counting_files(tmp_path, monkeypatch):
    import keras

    from keras_fcn.inference import files, predictor, video
    from tiny import tiny_fcn

    model_path = str(tmp_path / "tiny.keras")
    tiny_fcn().save(model_path)
    clip = str(tmp_path / "clip.mp4")
    with video.VideoWriter(clip, fps=5) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
    monkeypatch.setattr(video, "read_video", lambda path: iter(()))  # opens, decodes nothing
    opts = predictor.PredictOptions(model=model_path, inputs=[clip],
                                    output_dir=str(tmp_path / "out"))
    report = files.run(opts)
    assert report.written == 0 and report.processed == 0
    assert [path for path, _ in report.failures] == [clip]
    assert "No frame of the video" in report.failures[0][1]
    assert not os.path.exists(tmp_path / "out" / "clip_overlay.mp4")


def test_calibration_images_are_resized_as_training_resizes_them():
    from keras_fcn.data.arrays import resize_image
    from keras_fcn.export.images import calibration_images

    image = np.random.default_rng(0).uniform(0, 255, (40, 48, 3)).astype("float32")
    (got,) = list(calibration_images(image[None], (10, 12), num_images=1))
    want = resize_image(image, (10, 12), antialias=True)
    np.testing.assert_allclose(got[0], want, atol=1e-2)
    assert np.abs(resize_image(image, (10, 12)) - want).max() > 5  # aliased samples differ


def test_siftflow_and_nyud_images_are_read_as_the_training_pipelines_read_them(tmp_path):
    from PIL import Image

    from keras_fcn.datasets.common import read_image_file

    path = str(tmp_path / "grey16.png")
    Image.fromarray(np.full((3, 4), 40000, np.uint16)).save(path)
    np.testing.assert_array_equal(read_image_file(path, "RGB"), np.full((3, 4, 3), 156))
    (tmp_path / "bad.png").write_bytes(b"xx")
    with pytest.raises(ValueError, match="bad.png"):
        read_image_file(str(tmp_path / "bad.png"), "RGB")
