"""examples/own_trunk.py: Keras' EfficientNetB0 as a trunk of one's own, its offsets derived,
registered, aligned (the fast part, in the suite); the whole script (a short fit, the mean
IU, a save/load round trip) as a slow test."""

import os

import numpy as np
import pytest

import keras_fcn
from tool_flags import script

EXAMPLE = os.path.join("examples", "own_trunk.py")


def test_the_example_trunk_is_derived_registered_and_aligned(registry, capsys):
    with script(EXAMPLE, "own_trunk_example") as example:
        trunk = keras_fcn.register_trunk(example.efficientnet_trunk())
    # padded to a multiple of 32, its stride-2 'same' layers put pixel y of the stride-s map
    # on s * y + s - 1: MobileNetV2's geometry, and so its offsets
    assert trunk.offsets == {"score": {"32s": 0, "16s": 0, "8s": 0}, "upscore2c": 1,
                             "upscore_pool4c": 0}
    assert "crop offsets derived from the trunk's geometry" in capsys.readouterr().out
    model = keras_fcn.build_fcn8s(4, input_shape=(96, 64, 3), weights=None,
                                  backbone="efficientnet_b0")
    for axis in (0, 1):
        assert keras_fcn.coord_maps(model, axis) == [(1.0, -4.5), (1.0, -0.5), (1.0, 3.5)]
    image = np.random.default_rng(0).uniform(0, 255, (1, 37, 50, 3)).astype("float32")
    any_size = keras_fcn.build_fcn8s(4, weights=None, backbone="efficientnet_b0")
    assert any_size(image).shape == (1, 37, 50, 4)


@pytest.mark.slow
def test_the_example_runs(registry, tmp_path, capsys):
    with script(EXAMPLE, "own_trunk_run", "--epochs=1", "--num_train=16", "--num_val=4",
                "--image_size=64", f"--output_dir={tmp_path}") as example:
        example.main([])
    out = capsys.readouterr().out
    assert "validation mean IU: " in out and "reloaded logits differ by 0.0e+00" in out
    assert (tmp_path / "fcn8s_efficientnet_b0.keras").is_file()
    agreement = float(out.split("its labels equal Keras' on ")[1].split("%")[0])
    assert agreement > 99.0 and (tmp_path / "fcn8s_efficientnet_b0_float16.tflite").is_file()


def test_an_offline_imagenet_fetch_is_a_user_error(monkeypatch):
    """Keras raises a bare Exception when the download fails: the example names it as an
    OSError (run_main prints one line and exits 2)."""
    import keras

    def offline(**kwargs):
        raise Exception("URL fetch failure on https://example.invalid/x.h5")  # noqa: TRY002

    with script(EXAMPLE, "own_trunk_offline") as example:
        monkeypatch.setattr(keras.applications, "EfficientNetB0", offline)
        with pytest.raises(OSError, match=r"^Keras' ImageNet EfficientNetB0 could not be "
                                          r"fetched \(offline\?\): URL fetch failure"):
            example.load_efficientnet_weights(None, "imagenet")
        with pytest.raises(ValueError, match="loads weights='imagenet' only"):
            example.load_efficientnet_weights(None, "x.h5")


@pytest.mark.slow
def test_the_example_exports_from_jax_through_a_tensorflow_child(tmp_path):
    """On JAX the example stopped at its export (TensorFlowBackendError), and the advice to
    run tools/export.py failed on the unregistered trunk: the example now exports in a child
    process of itself on TensorFlow, which registers the trunk."""
    import subprocess
    import sys

    pytest.importorskip("jax")
    done = subprocess.run(
        [sys.executable, EXAMPLE, "--epochs=1", "--num_train=16", "--num_val=4",
         "--image_size=64", f"--output_dir={tmp_path}"],
        env=dict(os.environ, KERAS_BACKEND="jax"), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "exporting on TensorFlow in a child process (Keras runs on jax here)" in done.stdout
    agreement = float(done.stdout.split("its labels equal Keras' on ")[1].split("%")[0])
    assert agreement > 99.0 and (tmp_path / "fcn8s_efficientnet_b0_float16.tflite").is_file()
