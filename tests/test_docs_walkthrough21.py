"""What a walkthrough of the docs' snippets found (session 21): a with_preprocessing model took
images normalized to [0, 1] silently, entropy/margin failed on predict's list of images of
several sizes, representative_data refused the TFLite converter's own convention (a function)
and a list of paths with unclear messages, compare_tflite failed on wrong argument types with
AttributeError/unpacking errors, and tools/export.py's missing --input_size did not name the
size of the run's own export."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import keras_fcn
from keras_fcn import export
from keras_fcn.inference import entropy, margin
from keras_fcn.models import preprocessing_fn
from tiny import saved_raw_rgb_fcn, tiny_fcn
from tool_flags import one_error_line, run_in_process

SIZE = 32


def test_a_model_wrapped_with_preprocessing_refuses_unit_floats_and_keeps_its_record():
    inner = tiny_fcn()
    wrapped = keras_fcn.with_preprocessing(inner, input_dtype="float32")
    assert (wrapped.backbone, wrapped.variant) == ("vgg16", "8s")
    with pytest.raises(ValueError, match=r"`x` looks normalized to \[0, 1\] \(max=0\.5\)"):
        wrapped.predict(np.full((1, 16, 16, 3), 0.5, "float32"), verbose=0)
    image = np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    expected = inner.predict(preprocessing_fn(inner)(image), verbose=0)
    np.testing.assert_allclose(wrapped.predict(image, verbose=0), expected, atol=1e-5)


def test_entropy_and_margin_take_predicts_list_of_images_of_several_sizes():
    model = tiny_fcn()
    rng = np.random.default_rng(1)
    images = [rng.uniform(0, 255, (30, 41, 3)), rng.uniform(0, 255, (17, 23, 3))]
    _, probs = keras_fcn.predict(model, images)
    for fn in (entropy, margin):
        maps = fn(probs)
        assert [m.shape for m in maps] == [(30, 41), (17, 23)]
        for one, p in zip(maps, probs):
            np.testing.assert_array_equal(one, fn(p))
    p = probs[1].astype("float64")
    np.testing.assert_allclose(entropy(probs)[1], -(p * np.log(p)).sum(-1), rtol=1e-5)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), 3, seed=0)[1]


def _photos(folder, count=3):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(2)
    paths = []
    for i in range(count):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_calibration_takes_a_function_and_a_list_of_paths(tmp_path):
    paths = _photos(tmp_path / "photos")
    arrays = [np.asarray(Image.open(p), "float32")[None] for p in paths]
    expected = [a for a in export.calibration_images(np.concatenate(arrays), (SIZE, SIZE))]
    from_paths = list(export.calibration_images(paths, (SIZE, SIZE)))
    from_function = list(export.calibration_images(lambda: ([a] for a in arrays), (SIZE, SIZE)))
    for got in (from_paths, from_function):
        assert len(got) == 3
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, atol=1e-3)


def test_compare_tflite_names_wrong_argument_types(model_path):
    with pytest.raises(ValueError, match=r"as a dict \{name: \.tflite path or bytes\}.*"
                                         r"Received: tflite_paths of type list"):
        export.compare_tflite(model_path, ["m.tflite"], [("a.png", None)])
    with pytest.raises(ValueError, match=r"\(image path, mask path or None\) pairs.*Received: "
                                         r"pairs\[0\] of type ndarray and length 32"):
        export.compare_tflite(model_path, {"f": "m.tflite"}, np.zeros((2, SIZE, SIZE, 3)))
    with pytest.raises(ValueError, match=r"Received: pairs\[1\] of type str"):
        export.compare_tflite(model_path, {"f": "m.tflite"}, [("a.png", None), "b.png"])


def test_export_without_input_size_names_the_size_of_the_runs_own_export(tmp_path, model_path):
    run = tmp_path / "run"
    run.mkdir()
    model = str(run / "best.keras")
    with open(model_path, "rb") as source, open(model, "wb") as target:
        target.write(source.read())
    (run / "model_float16.tflite").write_bytes(b"")
    (run / "model_float16.json").write_text(json.dumps(
        {"input": {"name": "images", "shape": [1, 24, 40, 3]}}))
    (run / "other.tflite").write_bytes(b"")  # no sidecar: left out
    done = run_in_process("tools/export.py", f"--model={model}", f"--output_dir={tmp_path / 'o'}",
                          "--quantizations=float16", "--nosaved_model")
    line = one_error_line(done)
    assert line.startswith("error: TFLite export needs --input_size (e.g. 360x480): ")
    assert line.endswith("; model_float16.tflite beside it takes 24x40."), line
    assert export.metadata.exported_input_sizes(str(run)) == {"model_float16.tflite": (24, 40)}
