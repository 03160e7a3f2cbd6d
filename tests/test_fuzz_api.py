"""Seeded fuzz of the Python API's arguments (issue 26, item 5; round 1 is tests/test_fuzz.py).

predict's options, images of every dtype, shape and fill (uint16, NaN, 2-D, 4-channel, mixed
sizes), PredictOptions fields, num_classes and model paths that are images or folders. Each case
ends in a correct result or a ValueError naming the value and what was expected; which one is
decided here by rules written out in the test, not by the library's own checks.
"""

import math
import numbers
import os

import numpy as np
import pytest
from tiny import saved_raw_rgb_fcn
from PIL import Image

import fuzz_cases as fc

COUNTS = fc.COUNTS
NUM_CLASSES = 3
ARG_CASES, IMAGE_CASES, OPTION_CASES = 400, 400, 150
MODEL_RUNS = 40  # of the valid cases, this many also run the model (the rest: checks only)


def _rng(label):
    import random

    return random.Random(f"{fc.SEED}:api:{label}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, path = saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), NUM_CLASSES, 3)
    return model, path


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _first_bad_argument(kwargs):
    """The name of predict's first invalid option, or None (the test's own rules)."""
    if not _positive_int(kwargs["batch_size"]):
        return "batch_size"
    tile = kwargs["tile_size"]
    if tile is not None and tile != "auto" and not _positive_int(tile):
        return "tile_size"
    overlap = kwargs["tile_overlap"]
    if tile is not None:
        limit = 1024 if tile == "auto" else tile
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < limit:
            return "tile_overlap"
    scales = kwargs["scales"]
    if not scales or any(isinstance(s, bool) or not isinstance(s, numbers.Real)
                         or not math.isfinite(s) or s <= 0 for s in scales):
        return "scales"
    return None


def test_predict_arguments(tiny):
    from keras_fcn.inference import predict

    model, _ = tiny
    image = np.random.default_rng(0).integers(0, 256, (16, 20, 3)).astype("uint8")
    runs = 0
    for label, kwargs in fc.predict_argument_cases(_rng("args"), ARG_CASES):
        bad = _first_bad_argument(kwargs)
        if bad is not None:
            with pytest.raises(ValueError) as error:
                predict(model, image, **kwargs)
            message = str(error.value)
            assert f"{bad}=" in message and repr(kwargs[bad]) in message, (label, message)
        elif runs < MODEL_RUNS and min(kwargs["scales"]) >= 0.5:
            runs += 1
            labels, probs = predict(model, image, **kwargs)
            assert labels.shape == (16, 20) and probs.shape == (16, 20, NUM_CLASSES), label
            np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
            np.testing.assert_array_equal(labels, probs.argmax(-1))
    COUNTS["inference.predict arguments"] += ARG_CASES


def _image_error(array):
    """What is wrong with one image, or None (the test's own rules)."""
    if array.ndim != 3 or array.shape[-1] != 3:
        return "shape"
    if min(array.shape[:2]) < 1:
        return "empty"
    if array.dtype == bool:
        return "bool array"
    if array.dtype.kind in "iu" and array.dtype != np.uint8 and (array.min() < 0
                                                                 or array.max() > 255):
        return "0..255"
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return "NaN"
    if array.dtype.kind == "f" and (array.min() < 0 or array.max() > 255):
        return "outside [0, 255]"
    return None


def test_predict_images(tiny):
    from keras_fcn.inference import predict

    model, _ = tiny
    runs = 0
    for label, images, kind, _ in fc.image_argument_cases(_rng("images"), IMAGE_CASES):
        arrays = images if kind == "list" else np.asarray(images)
        if kind != "list" and arrays.ndim not in (3, 4):
            with pytest.raises(ValueError, match=r"images must be .*Received: shape"):
                predict(model, images)
            continue
        if kind != "list":
            arrays = [arrays] if arrays.ndim == 3 else list(arrays)
        errors = [(i, _image_error(a)) for i, a in enumerate(arrays) if _image_error(a)]
        if errors:
            index, what = errors[0]
            with pytest.raises(ValueError, match=f"Image {index} ") as error:
                predict(model, images)
            assert what in str(error.value), (label, str(error.value))
        elif runs < MODEL_RUNS:
            runs += 1
            labels, probs = predict(model, images)
            for i, array in enumerate(arrays):
                one = labels if kind == "single" else labels[i]
                assert one.shape == array.shape[:2], label
                # The same image alone, as float32, gives the same labels.
                alone = predict(model, array.astype("float32"), return_probabilities=False)
                np.testing.assert_array_equal(one, alone, err_msg=label)
    COUNTS["inference.predict images"] += IMAGE_CASES


def _option_error(field, value):
    """The field named in PredictOptions.check's error, or None."""
    if field == "smooth_alpha":
        return None if 0.0 < value <= 1.0 else field
    if field == "tile_size":
        return None if value in (None, "auto") or _positive_int(value) else field
    if field == "tile_overlap":
        return None if 0 <= value < 1024 else field
    if field == "scales":
        return None if value == (1.0,) else field
    if field == "video_format":
        return None if value in ("mp4", "webm", "mov") else field
    if field == "mask_margin":
        return None if 0.0 <= value < 1.0 else field
    if field == "mask_hold":
        return None if value >= 1 else field
    if field == "mask_feather":
        return None if value >= 0 else field
    if field == "uncertainty":
        return None if set(value) <= {"entropy", "margin", "mc_dropout"} else field
    return None  # mc_samples is only checked with mc_dropout, which the base options lack


def test_predict_options(tiny, tmp_path):
    from keras_fcn.inference import PredictOptions

    _, model_path = tiny
    for label, field, value in fc.option_cases(_rng("options"), OPTION_CASES):
        opts = PredictOptions(model=model_path, inputs=["x.png"], output_dir=str(tmp_path))
        setattr(opts, field, value)
        bad = _option_error(field, value)
        if bad is None:
            opts.check()
        else:
            with pytest.raises(ValueError, match=bad) as error:
                opts.check()
            assert "Received" in str(error.value), (label, str(error.value))
    COUNTS["inference.PredictOptions"] += OPTION_CASES


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, "3", True, None])
def test_num_classes_errors_name_the_value(num_classes):
    from keras_fcn.models import build_fcn

    with pytest.raises(ValueError, match=f"num_classes={num_classes!r}"):
        build_fcn("8s", num_classes=num_classes, weights=None, widths=(4, 4, 8, 8, 8),
                  fc_units=8)
    COUNTS["models.build_fcn num_classes"] += 1


def test_a_million_classes_is_an_error_naming_num_classes():
    from keras_fcn.models import build_fcn

    COUNTS["models.build_fcn num_classes"] += 1
    # FCN-8s's upsampling kernels: (4 * 4 + 4 * 4 + 16 * 16) x 10**12 weights, 4 bytes each.
    with pytest.raises(ValueError, match=r"num_classes=1000000 would give .* "
                       r"288,000,000,000,000 weights, 1,072,883.6 GiB .* limit is 256 GiB, "
                       r"so at most 15,446 classes for variant='8s'"):
        build_fcn("8s", num_classes=10 ** 6, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8)


def test_the_class_limit_is_exact_and_admits_the_largest_label_sets():
    from keras_fcn.models import get_trunk
    from keras_fcn.models.builders import HEAD_BYTES_LIMIT, check_head_size

    vgg16 = get_trunk("vgg16")
    # FCN-32s's one 64 x 64 upscore: 4 * 64**2 * C**2 bytes <= 2**38 holds up to C = 2**12.
    assert 4 * 64 ** 2 * 4096 ** 2 == HEAD_BYTES_LIMIT
    check_head_size("32s", 4096, vgg16)
    with pytest.raises(ValueError, match="num_classes=4097 .* at most 4,096 classes"):
        check_head_size("32s", 4097, vgg16)
    check_head_size("8s", 15446, vgg16)  # 4 * 288 * 15446**2 = 274,842,911,232 bytes <= 2**38
    with pytest.raises(ValueError, match="num_classes=15447"):
        check_head_size("8s", 15447, vgg16)
    check_head_size("32s", 3688, get_trunk("alexnet"))  # ADE20K full's label set
    check_head_size("dilated", 10 ** 6, get_trunk("resnet50"))  # no class-by-class kernels


@pytest.mark.parametrize("size", [1, 2, 7, 31, 33])
def test_inputs_smaller_than_the_network_stride_predict(tiny, size):
    from keras_fcn.inference import predict

    model, _ = tiny
    image = np.full((size, size + 1, 3), 90, "uint8")
    labels, probs = predict(model, image)
    assert labels.shape == (size, size + 1)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    COUNTS["inference.predict small inputs"] += 1


def _model_paths(folder):
    rgb = np.zeros((4, 4, 3), "uint8")
    paths = {"folder": folder / "models"}
    paths["folder"].mkdir()
    Image.fromarray(rgb).save(folder / "photo.png")
    paths["png"] = folder / "photo.png"
    paths["npy_as_h5"] = fc.write(folder / "w.h5", fc.npy_bytes())
    paths["empty_keras"] = fc.write(folder / "empty.keras", b"")
    paths["text_keras"] = fc.write(folder / "text.keras", b"not a model\n")
    paths["png_as_keras"] = fc.write(folder / "photo.keras", (folder / "photo.png").read_bytes())
    return paths


@pytest.mark.parametrize("kind", ["folder", "png", "npy_as_h5", "empty_keras", "text_keras",
                                  "png_as_keras"])
def test_model_paths_that_are_not_models(tmp_path, kind):
    from keras_fcn.inference import PredictOptions, Predictor

    path = os.fspath(_model_paths(tmp_path)[kind])
    COUNTS["inference.Predictor model paths"] += 1
    with pytest.raises(ValueError) as error:
        opts = PredictOptions(model=path, inputs=["x.png"], output_dir=str(tmp_path / "out"))
        opts.check()
        Predictor(opts)
    message = str(error.value)
    assert path in message or os.path.basename(path) in message, message
    assert "file not found" not in message.lower(), message  # it exists


# Regression tests of the faults this fuzzing found (docs/reliability.md, round 2).

@pytest.mark.parametrize("scale", [float("nan"), float("inf")])
def test_a_nan_or_infinite_scale_is_refused_naming_it(tiny, scale):
    from keras_fcn.inference import predict

    # Was: "cannot convert float NaN to integer" / OverflowError from round().
    with pytest.raises(ValueError, match=r"`scales` must be finite positive numbers.*" + str(scale)):
        predict(tiny[0], np.zeros((8, 8, 3), "uint8"), scales=(1.0, scale))


def test_a_16_bit_image_is_refused_naming_its_range(tiny):
    from keras_fcn.inference import predict

    # Was: predicted as colours up to 65535, meaningless labels without a word.
    image = np.full((8, 8, 3), 40000, np.uint16)
    with pytest.raises(ValueError, match=r"Image 0 .*outside 0..255 .*max=40000.*uint16"):
        predict(tiny[0], image)
    labels = predict(tiny[0], (image // 257).astype("uint8"), return_probabilities=False)
    assert labels.shape == (8, 8)


def test_a_keras_file_that_is_not_a_zip_is_named_not_reported_missing(tmp_path):
    from keras_fcn.weights.io import load_model_file

    path = fc.write(tmp_path / "photo.keras", fc.encode(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(ValueError, match=r"photo.keras.*not a zip archive; expected a .keras"):
        load_model_file(path)
