"""keras_fcn.training.fit after a walkthrough of training on the JAX and PyTorch backends
(session 21): a DatasetInfo without class names or palette crashed after the whole run had
trained (no metrics.json), and numpy arrays for train_ds got Keras' "pass inputs as a dict"
error after labels.json was written."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import keras_fcn
from keras_fcn import training
from tiny import tiny_fcn


def _pairs(folder, count=4, size=16):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(count):
        image, mask = os.path.join(folder, f"{i}.png"), os.path.join(folder, f"{i}_m.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(image)
        Image.fromarray(rng.integers(0, 3, (size, size), dtype=np.uint8)).save(mask)
        pairs.append((image, mask))
    return pairs


def _compiled():
    model = tiny_fcn()
    training.compile_model(model, num_classes=3, ignore_label=255,
                           optimizer=training.make_optimizer("sgd", 1e-3))
    return model


def test_a_data_set_without_class_names_or_palette_completes_its_run(tmp_path):
    pairs = _pairs(str(tmp_path / "data"))
    info = keras_fcn.DatasetInfo(name="mine", num_classes=3, class_names=None, palette=None)
    report = training.fit(_compiled(), keras_fcn.make_pydataset(pairs, num_classes=3,
                                                                batch_size=2),
                          keras_fcn.make_pydataset(pairs[:2], num_classes=3), epochs=1,
                          run_dir=str(tmp_path / "run"), info=info, verbose=0)
    assert report["status"] == "completed"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["class_names"] is None and metrics["final_val"]["mean_iu"] >= 0


@pytest.mark.parametrize("data", ["tuple", "list", "array"])
def test_arrays_are_refused_by_name_before_the_run_folder_is_written(tmp_path, data):
    x = np.zeros((2, 16, 16, 3), "float32")
    y = np.zeros((2, 16, 16), "int32")
    value = {"tuple": (x, y), "list": [x, y], "array": x}[data]
    info = keras_fcn.DatasetInfo(name="mine", num_classes=3, class_names=None, palette=None)
    kind = {"tuple": "tuple", "list": "list", "array": "ndarray"}[data]
    with pytest.raises(ValueError, match=r"^training\.fit takes `train_ds` as a tf\.data\.Dataset "
                                         r"or a keras\.utils\.PyDataset .* Received: a " + kind):
        training.fit(_compiled(), value, None, run_dir=str(tmp_path / "run"), epochs=1,
                     info=info, verbose=0)
    assert not os.path.exists(tmp_path / "run")
