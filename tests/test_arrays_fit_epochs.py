"""Which (epoch, batch index) each batch that `fit` of a `keras_fcn.FCN` trains on came from,
for `SegmentationPyDataset` with worker threads and processes, on each installed backend.

Keras 3 alone (a plain `keras.Model`), on JAX and torch with workers > 1, shifts every fit epoch
by one batch: its model build reads batch 0 through the worker queue, whose prefetched batches are
kept and trained on first. `FCN.fit` builds from `ds[0]` first (`build_before_fit`); these tests
fail if Keras changes what that relies on. The plain-model case shows the shift is still Keras'.
"""
import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r'''
import json, sys
import numpy as np, keras
from PIL import Image
from keras_fcn.data.arrays import make_pydataset
from keras_fcn.models import FCN
folder = sys.argv[1]
rng = np.random.default_rng(0)
pairs = []
for i in range(6):
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(f"{folder}/i{i}.png")
    Image.fromarray(rng.integers(0, 3, (8, 8)).astype(np.uint8), mode="L").save(f"{folder}/m{i}.png")
    pairs.append((f"{folder}/i{i}.png", f"{folder}/m{i}.png"))
options = dict(num_classes=3, batch_size=1, flip=True, scale_range=(0.5, 2.0), crop_size=8,
               shuffle=True, seed=5)
reference = make_pydataset(pairs, **options)
signature = {}
for epoch in range(6):
    reference.epoch = epoch
    for index in range(len(reference)):
        signature.setdefault(np.asarray(reference[index][0]).tobytes(), []).append((epoch, index))
seen = []
class Record(keras.layers.Layer):
    def call(self, x):
        try:
            seen.append(signature.get(np.asarray(keras.ops.convert_to_numpy(x)).tobytes(), []))
        except Exception:
            pass  # symbolic build
        return x
class Boundary(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        seen.append("|")
results = {}
for workers, mp, kind in json.loads(sys.argv[2]):
    seen.clear()
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(3, 1)(Record()(inputs))
    model = (FCN if kind == "fcn" else keras.Model)(inputs, outputs)
    model.compile("sgd", lambda y, p: keras.ops.mean(p * p), run_eagerly=True)
    ds = make_pydataset(pairs, workers=workers, use_multiprocessing=mp, **options)
    model.fit(ds, epochs=3, shuffle=False, verbose=0, callbacks=[Boundary()])
    epochs, current = [], None
    for item in seen:
        if item == "|":
            current = []; epochs.append(current)
        elif current is not None:
            current.append(item)
    results[f"{workers} {mp} {kind}"] = epochs
print("RESULT " + json.dumps(results))
'''


def _fit_epochs(tmp_path, backend, runs):
    """Fits each (workers, use_multiprocessing, "fcn" or "plain") of `runs` in one process of
    `backend`; returns, per run, each batch as the (epoch, index) pairs whose batch equals it
    (augmentations can coincide)."""
    script = tmp_path / "fit_epochs.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, str(script), str(tmp_path), json.dumps(runs)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
    results = json.loads(line[len("RESULT "):])
    return [[[{tuple(c) for c in batch} for batch in epoch] for epoch in results[key]]
            for key in (f"{workers} {mp} {kind}" for workers, mp, kind in runs)]


_RUNS = [(1, False, "fcn"), (2, False, "fcn"), (2, True, "fcn")]  # workers, processes, model


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_each_fit_epoch_trains_on_exactly_one_epochs_batches(tmp_path, backend):
    """One worker; two threads; two processes. On JAX also a plain keras.Model: Keras'
    own behaviour, which FCN.fit works around (when Keras fixes it, this fails, and
    build_before_fit can go)."""
    pytest.importorskip(backend)
    plain = [(2, False, "plain")] if backend == "jax" else []
    results = _fit_epochs(tmp_path, backend, _RUNS + plain)
    for run, epochs in zip(_RUNS, results):
        _assert_whole_epochs(epochs, run)
    if plain:
        with pytest.raises(AssertionError):
            _assert_whole_epochs(results[-1], plain[0])


def _assert_whole_epochs(epochs, run):
    assert len(epochs) == 3, run
    whole = []  # per fit epoch: the data set epochs whose 6 batches it trained on, in some order
    for batches in epochs:
        assert len(batches) == 6, (run, batches)
        whole.append({e for e in range(6)
                      if sorted(i for b in batches for (ce, i) in b if ce == e) == list(range(6))
                      and all(any(ce == e for ce, _ in b) for b in batches)})
    assert any(e in whole[0] and e + 1 in whole[1] and e + 2 in whole[2]
               for e in range(4)), (run, whole, epochs)  # consecutive whole epochs

