"""tools/predict.py runs a model at the resolution it was trained at, as tools/evaluate.py does
(--image_size=auto: the size in the model's labels file), and the small tool/API errors of the
TF-less walkthrough (tools/export.py --help, Predictor given a model).

Before: predict.py fed every frame at its own size (a CamVid model trained at 90x120 and run
at 360x480 labelled 2/3 of the pixels Pedestrian), export.py --help without TensorFlow printed
the needs-TensorFlow error, and Predictor(model) raised AttributeError: 'FCN' object has no
attribute 'model'.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_fcn.inference import predict, predictor, resolution
from keras_fcn.labels import ModelLabels
from tiny import tiny_fcn
from tool_flags import tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINED = (16, 24)  # the training size the labels record
FRAME = (37, 53)  # the frames' size: not a multiple of it


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny raw-RGB FCN-8s saved with a labels sidecar recording image_size=TRAINED."""
    folder = tmp_path_factory.mktemp("model")
    # The trunk's initial weights come from Keras' global seed: set it, or the model depends on
    # the tests run before in the worker (CI drew one whose output was class 2 everywhere, at
    # either size). Seed 11 gives all four classes, 55% of labels differing between sizes.
    keras.utils.set_random_seed(11)
    model = tiny_fcn(num_classes=4, seed=5, scale=1.0, include_preprocessing=True)
    path = str(folder / "m.keras")
    model.save(path)
    ModelLabels(num_classes=4, image_size=TRAINED).write(ModelLabels.sidecar_path(path))
    image = np.random.default_rng(0).integers(0, 256, (*FRAME, 3)).astype("uint8")
    image[:, : FRAME[1] // 2] //= 3  # a darker half: structure for the convolutions
    Image.fromarray(image).save(folder / "frame.png")
    return model, path, image, folder


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _reference(model, image, size):
    """evaluate's path, computed here with TensorFlow: the image resized to ``size``
    (bilinear, antialiased, as training's image_size), the model's softmax, resized back
    bilinearly to the frame."""
    tf = pytest.importorskip("tensorflow")
    small = tf.image.resize(image[None].astype("float32"), size, "bilinear", antialias=True)
    small = np.clip(small.numpy(), 0, 255)
    probs = _softmax(np.asarray(model(small, training=False), "float64")).astype("float32")
    return tf.image.resize(probs, image.shape[:2], "bilinear").numpy()[0]


def _options(path, out, inputs=(), **kwargs):
    return predictor.PredictOptions(model=path, inputs=list(inputs), output_dir=str(out),
                                    **kwargs)


def test_input_size_rule_is_evaluates():
    labels = ModelLabels(num_classes=2, image_size=(90, 120))
    assert resolution.input_size("auto", labels) == (90, 120)
    assert resolution.input_size("auto", ModelLabels(num_classes=2)) is None
    assert resolution.input_size("auto", None) is None
    assert resolution.input_size("native", labels) is None
    assert resolution.input_size("48,64", labels) == (48, 64)
    assert resolution.input_size("48x64") == (48, 64)
    assert resolution.input_size((7, 9)) == (7, 9)
    for bad in ("abc", "0,5", (3,), (2.5, 3), (True, 4)):
        with pytest.raises(ValueError, match="image_size"):
            resolution.input_size(bad)


def test_predictor_runs_at_the_recorded_training_size(trained, tmp_path):
    model, path, image, _ = trained
    p = predictor.Predictor(_options(path, tmp_path))
    assert p.image_size == TRAINED
    assert p.input_note.startswith(f"model input {TRAINED[0]}x{TRAINED[1]} "
                                   "(--image_size=auto: the training size in ")
    probs = p.probabilities(image)
    assert probs.shape == (*FRAME, 4)
    np.testing.assert_allclose(probs, _reference(model, image, TRAINED), atol=2e-5)
    # ... which is not what the model gives at the frame's own size
    native = predictor.Predictor(_options(path, tmp_path, image_size="native"))
    assert native.image_size is None
    labels_native = native.probabilities(image).argmax(-1)
    assert np.mean(labels_native != probs.argmax(-1)) > 0.05


def test_native_keeps_the_old_behaviour(trained, tmp_path):
    model, path, image, _ = trained
    p = predictor.Predictor(_options(path, tmp_path, image_size="native"))
    expected = _softmax(np.asarray(model(image[None].astype("float32"), training=False),
                                   "float64"))[0]
    np.testing.assert_allclose(p.probabilities(image), expected, atol=2e-5)


def test_tiles_flip_and_scales_apply_at_the_model_size(trained, tmp_path):
    model, path, image, _ = trained
    opts = _options(path, tmp_path, tile_size=12, tile_overlap=4, tta_flip=True,
                    scales=(0.75, 1.0))
    got = predictor.Predictor(opts).probabilities(image)
    tf = pytest.importorskip("tensorflow")
    small = tf.image.resize(image[None].astype("float32"), TRAINED, "bilinear",
                            antialias=True).numpy()[0]
    _, at_model = predict(model, np.clip(small, 0, 255), tile_size=12, tile_overlap=4,
                          tta_flip=True, scales=(0.75, 1.0))
    expected = tf.image.resize(at_model[None], FRAME, "bilinear").numpy()[0]
    np.testing.assert_allclose(got, expected, atol=2e-5)


def _cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "predict.py"),
                           "--noprogress", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _in_process(capsys, *args):
    """tools/predict.py's main in this process (as tests/test_cli_tools.py: the error it
    raises is what run_main prints, exiting 2; the first run of the test below checks the
    script end to end); returns what it printed."""
    flag_args = [a for a in args if a.startswith("--")]
    inputs = [a for a in args if not a.startswith("--")]
    capsys.readouterr()
    with tool("predict", "--noprogress", *flag_args) as module:
        assert module.main(["predict.py", *inputs]) == 0
    return capsys.readouterr().out


def _label_map(path):
    with Image.open(path) as png:
        return np.asarray(png).astype("int64")


def _is_argmax(labels, probs):
    """Every label is a class of the highest probability (ties to float round-off)."""
    chosen = np.take_along_axis(probs, labels[..., None], -1)[..., 0]
    return np.all(chosen >= probs.max(-1) - 1e-5)


def test_tool_predicts_at_the_training_size_and_says_so(trained, tmp_path, capsys):
    model, path, image, folder = trained
    result = _cli(f"--model={path}", f"--output_dir={tmp_path / 'auto'}",
                  str(folder / "frame.png"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"model input {TRAINED[0]}x{TRAINED[1]} (--image_size=auto: the training size in "
            f"{ModelLabels.sidecar_path(path)})") in result.stdout
    labels = _label_map(tmp_path / "auto" / "frame_labels.png")
    assert labels.shape == FRAME
    assert _is_argmax(labels, _reference(model, image, TRAINED))

    printed = _in_process(capsys, f"--model={path}", f"--output_dir={tmp_path / 'native'}",
                          "--image_size=native", str(folder / "frame.png"))
    assert "model input at each image's own size (--image_size=native" in printed
    native = _label_map(tmp_path / "native" / "frame_labels.png")
    full = _softmax(np.asarray(model(image[None].astype("float32"), training=False),
                               "float64"))[0]
    assert _is_argmax(native, full) and np.mean(native != labels) > 0.05

    with pytest.raises(ValueError, match="image_size='abc'"):
        _in_process(capsys, f"--model={path}", f"--output_dir={tmp_path / 'bad'}",
                    "--image_size=abc", str(folder / "frame.png"))
    assert not (tmp_path / "bad").exists()


def test_tool_takes_an_explicit_size(trained, tmp_path, capsys):
    model, path, image, folder = trained
    printed = _in_process(capsys, f"--model={path}", f"--output_dir={tmp_path}",
                          "--image_size=20,30", str(folder / "frame.png"))
    assert "model input 20x30 (--image_size=20,30)" in printed
    assert _is_argmax(_label_map(tmp_path / "frame_labels.png"),
                      _reference(model, image, (20, 30)))


def test_predictor_given_a_model_names_what_it_expects(trained):
    model = trained[0]
    with pytest.raises(TypeError, match=r"^Predictor expects a keras_fcn\.inference\."
                       r"PredictOptions .*Received a Keras model: <.*keras_fcn\.inference\."
                       r"predict\(model, image\)"):
        predictor.Predictor(model)
    with pytest.raises(TypeError, match=r"Received a str: 'm\.keras'"):
        predictor.Predictor("m.keras")


# As tests/test_without_tensorflow_journey.py: TensorFlow made unimportable, KERAS_BACKEND=jax.
_NO_TF = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = sys.argv[1:]; "
          "runpy.run_path(sys.argv[0], run_name='__main__')")


def test_export_help_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = os.path.join(ROOT, "tools", "export.py")
    result = subprocess.run([sys.executable, "-c", _NO_TF, script, "--help"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--input_size" in result.stdout and "--quantizations" in result.stdout
    assert "needs TensorFlow" not in result.stdout + result.stderr
    run = subprocess.run([sys.executable, "-c", _NO_TF, script, "--model=m.keras",
                          f"--output_dir={tmp_path / 'out'}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.strip().startswith("error: tools/export.py")
    assert "needs TensorFlow" in run.stderr and not (tmp_path / "out").exists()


def test_labels_file_is_the_one_the_note_names(trained, tmp_path):
    """The sidecar wins over a run folder's labels.json, as ModelLabels.for_model reads."""
    _, path, _, _ = trained
    assert resolution.labels_file(path) == ModelLabels.sidecar_path(path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.json").write_text(json.dumps(ModelLabels(num_classes=4, image_size=(8, 8))
                                                .to_dict()))
    assert resolution.labels_file(str(run / "model.keras")) == str(run / "labels.json")
