"""An exported .tflite runs in a plain LiteRT app with only its sidecar: no TensorFlow, no keras_fcn."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_fcn import export
from tiny import tiny_fcn

pytest.importorskip("ai_edge_litert")
APP = os.path.join(os.path.dirname(__file__), "..", "examples", "litert_segment.py")
# The app runs with TensorFlow, Keras and keras_fcn made unimportable.
BLOCKED = ("import runpy, sys\n"
           "for name in ('tensorflow', 'keras', 'keras_fcn', 'tf_keras'):\n"
           "    sys.modules[name] = None\n"
           "sys.argv = sys.argv[1:]\n"
           "runpy.run_path(sys.argv[0], run_name='__main__')\n")


# float16 with the argmax inside: the app reads class ids (output_kind "class_ids") as they are.
@pytest.mark.parametrize("quantization, argmax", [("float32", False), ("float16", True)])
def test_litert_app_without_tensorflow_matches_keras(tmp_path, quantization, argmax):
    model = tiny_fcn("8s", 3, scale=0.5, include_preprocessing=True)
    path = str(tmp_path / "model.tflite")
    names, palette = ["sky", "road", "car"], [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    meta = export.export_tflite(model, path, input_size=(32, 40), quantization=quantization,
                                include_argmax=argmax, class_names=names, palette=palette)
    assert meta["output_kind"] == ("class_ids" if argmax else "logits")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 40, 3)).astype("uint8")
    Image.fromarray(image).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    run = subprocess.run([sys.executable, "-c", BLOCKED, APP, path, str(tmp_path / "in.png"),
                          str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    expected_ids = model.predict(image[None].astype("float32"), verbose=0)[0].argmax(-1)
    got = np.asarray(Image.open(out))
    agreement = (got == np.asarray(palette, "uint8")[expected_ids]).all(-1).mean()
    assert agreement > 0.99, agreement
    for class_id in np.unique(expected_ids):
        assert names[class_id] in run.stdout



@pytest.fixture(scope="module")
def small_tflite(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "m.tflite")
    export.export_tflite(tiny_fcn("8s", 2, scale=0.5, include_preprocessing=True), path,
                         input_size=(16, 16))
    return path


def _huge_photo(folder):
    huge = folder / "huge.png"  # 14000 x 14000 grey: 196M pixels, a 0.2 MB file
    Image.new("L", (14000, 14000), 128).save(huge)
    return huge


def test_litert_app_names_a_missing_huge_or_damaged_photo(small_tflite, tmp_path):
    """A photo over PIL's decompression-bomb limit ended in a traceback (exit 1): PIL's
    DecompressionBombError is neither an OSError nor a ValueError. A missing or damaged
    photo is named."""
    from tool_flags import load_script

    app = load_script(APP, "litert_app_photos")
    huge = _huge_photo(tmp_path)
    damaged = tmp_path / "damaged.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    Image.fromarray(noise).save(damaged)
    damaged.write_bytes(damaged.read_bytes()[:2000])  # the header is intact, the pixels cut
    cases = [(huge, ValueError, rf"^The image '{huge}' cannot be read: DecompressionBombError: "
                                r"Image size \(196000000 pixels\) exceeds limit"),
             (tmp_path / "none.png", FileNotFoundError,
              rf"^The image '{tmp_path / 'none.png'}' is missing\.$"),
             (tmp_path, FileNotFoundError, rf"^The image '{tmp_path}' is a folder; expected "),
             (damaged, ValueError, rf"^The image '{damaged}' cannot be read: OSError: ")]
    for photo, kind, message in cases:
        with pytest.raises(kind, match=message):
            app.main(["app", small_tflite, str(photo), str(tmp_path / "out.png")])
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_litert_app_exits_2_on_a_huge_photo(small_tflite, tmp_path):
    run = subprocess.run([sys.executable, "-c", BLOCKED, APP, small_tflite,
                          str(_huge_photo(tmp_path)), str(tmp_path / "out.png")],
                         capture_output=True, text=True, timeout=120)
    errors = [line for line in run.stderr.splitlines() if "XNNPACK" not in line]
    assert run.returncode == 2 and len(errors) == 1, run.stderr[-2000:]
    assert errors[0].startswith("error: The image ") and "DecompressionBombError" in errors[0]
