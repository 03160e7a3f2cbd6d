"""`--strategy=data_parallel`: keras.distribution's DataParallel on the JAX backend, the way to
train on several GPUs without TensorFlow. Keras splits every batch across the devices, so a
batch must divide among them: training drops its last incomplete batch and validation batches
(one full-size image each) are padded with void images, which count nowhere. Checked on two
CPU devices (XLA's forced host device count) against one device: the same losses and scores.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fcn.data.arrays import SegmentationPyDataset
from keras_fcn.training import distribute

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _batches():
    rng = np.random.default_rng(0)
    return [(rng.uniform(0, 255, (n, 5, 7, 3)).astype("float32"),
             rng.integers(0, 3, (n, 5, 7)).astype("int32")) for n in (3, 1, 4)]


def _check_padded(batches, originals, multiple, ignore_label):
    for (images, masks), (want_images, want_masks) in zip(batches, originals):
        n = len(want_images)
        assert len(images) == len(masks) == -(-n // multiple) * multiple
        np.testing.assert_array_equal(images[:n], want_images)
        np.testing.assert_array_equal(masks[:n], want_masks)
        assert (np.asarray(images[n:]) == 0).all()
        assert (np.asarray(masks[n:]) == ignore_label).all()
        assert masks.dtype == want_masks.dtype


def test_pad_batches_pads_every_kind_of_data_set_with_void_images():
    originals = _batches()
    _check_padded(distribute.pad_batches(originals, 2, 255), originals, 2, 255)
    data = tf.data.Dataset.from_generator(
        lambda: iter(originals), output_signature=(
            tf.TensorSpec((None, 5, 7, 3), tf.float32), tf.TensorSpec((None, 5, 7), tf.int32)))
    _check_padded([(i.numpy(), m.numpy()) for i, m in distribute.pad_batches(data, 4, 11)],
                  originals, 4, 11)

    class Listed(keras.utils.PyDataset):
        epochs = 0

        def __len__(self):
            return len(originals)

        def __getitem__(self, index):
            return originals[index]

        def on_epoch_end(self):
            Listed.epochs += 1

    padded = distribute.pad_batches(Listed(), 2, 255)
    assert isinstance(padded, keras.utils.PyDataset) and len(padded) == 3
    _check_padded([padded[i] for i in range(3)], originals, 2, 255)
    padded.on_epoch_end()
    assert Listed.epochs == 1  # a new epoch's order reaches the padded set's source
    with pytest.raises(ValueError, match="needs an ignore label.*Received: ignore_label=None"):
        distribute.pad_batches(originals, 2, None)


def test_data_parallel_is_refused_off_jax_and_a_batch_must_divide():
    with pytest.raises(ValueError, match=r"strategy='data_parallel' is keras\.distribution's "
                                         r"DataParallel, on the JAX backend \(now: tensorflow\); "
                                         r"on TensorFlow use strategy='mirrored'"):
        distribute.make_strategy("data_parallel")
    two = distribute.DataParallel(["cpu:0", "cpu:1"])
    with pytest.raises(ValueError, match=r"splits each batch across 2 devices: batch_size must "
                                         r"be a multiple of 2\. Received: batch_size=3"):
        distribute.for_replicas(two, None, [], 3, 255)
    train, val = distribute.for_replicas(two, "train", _batches(), 4, 255)
    assert train == "train" and [len(i) for i, _ in val] == [4, 2, 4]
    assert distribute.for_replicas(distribute.SingleDevice(), "t", "v", 3, 255) == ("t", "v")
    assert isinstance(SegmentationPyDataset, type)  # the recipes' no-TensorFlow data sets


RUNS = textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow"] = None  # the GPU machine: JAX without TensorFlow
    import keras
    from keras_fcn import training
    out = {}
    for strategy in ("data_parallel", "default"):  # default after: keras.distribution unset
        config = training.TrainConfig().replace(
            dataset="shapes", num_train=8, num_val=3, shapes_size=32, widths=(4, 4, 8, 8, 8),
            fc_units=8, batch_size=4, epochs=2, export=False, strategy=strategy,
            output_dir=sys.argv[1] + "/" + strategy)
        result = training.run(config)
        history = json.load(open(result["run_dir"] + "/metrics.json"))["history"]
        out[strategy] = {"loss": [h["loss"] for h in history],
                         "val_mean_iu": [h["val_mean_iu"] for h in history],
                         "final": result["final"]["mean_iu"],
                         "images": result["final"]["num_images"],
                         "distribution": repr(keras.distribution.distribution())}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_the_recipe_trains_alike_on_two_devices_and_on_one(tmp_path):
    pytest.importorskip("jax")
    script = tmp_path / "runs.py"
    script.write_text(RUNS)
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT,
               XLA_FLAGS="--xla_force_host_platform_device_count=2", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout and "1 replica(s)" in result.stdout
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    parallel, single = runs["data_parallel"], runs["default"]
    np.testing.assert_allclose(parallel["loss"], single["loss"], rtol=1e-5)
    np.testing.assert_allclose(parallel["val_mean_iu"], single["val_mean_iu"], rtol=1e-6)
    # 3 validation images in batches of 1, each padded to 2: the padding counted nowhere
    for run in (parallel, single):
        assert run["images"] == 3
        assert run["final"] == pytest.approx(run["val_mean_iu"][-1], abs=1e-6)
    assert single["distribution"] == "None"
