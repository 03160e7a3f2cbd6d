"""The moving average of the weights (``--ema_decay``) with the library's callbacks, on JAX with
``jit_compile`` (the crash "Array has been deleted" at the first epoch end), PyTorch and
TensorFlow, against an SGD + EMA computed here in numpy.

Keras' JAX trainer donates the weights to its compiled steps. ``finalize_variable_values`` made
each weight share its buffer with the optimizer's average, so the validation with the averages
(``EMAWeights``) deleted the averages, and ``BestCheckpoint`` then read a deleted array.

JAX and PyTorch run in a subprocess (Keras fixes its backend at import; TensorFlow, the
suite's backend, in this process): this file, run as a script, trains a Dense layer for 2
epochs of 4 steps with ``make_callbacks`` and writes what it saw to ``out.npz``.

Example:
    python -m pytest -q -n 0 tests/test_ema_jax.py
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LR, MOMENTUM, DECAY, BIAS_MULT = 0.1, 0.5, 0.6, 2.0
BATCH, EPOCHS, STEPS = 2, 2, 4


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, 3)).astype("float32")
    y = rng.normal(size=(BATCH * STEPS, 2)).astype("float32")
    x_val = rng.normal(size=(4, 3)).astype("float32")
    y_val = rng.normal(size=(4, 2)).astype("float32")
    return x, y, x_val, y_val


def _train(out):
    """Runs in the subprocess: fit with the library's callbacks, then evaluate and save."""
    import keras

    from keras_fcn.training import callbacks, optimizers

    x, y, x_val, y_val = _data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    initial = model.get_weights()
    optimizer = optimizers.make_optimizer("sgd", LR, momentum=MOMENTUM,
                                          bias_lr_multiplier=BIAS_MULT, ema_decay=DECAY)
    # Compiled steps on JAX (donating the weights) and TensorFlow; PyTorch stays eager, as in
    # the library (no torch.compile).
    model.compile(optimizer=optimizer, loss="mse",
                  jit_compile=keras.backend.backend() != "torch")
    guard = callbacks.NaNGuard(steps_per_epoch=STEPS)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              validation_data=(x_val, y_val),
              callbacks=callbacks.make_callbacks(out, nan_guard=guard, monitor="val_loss"))
    after_fit = model.get_weights()
    # A compiled evaluate after fit (donating the weights), then the optimizer is saved.
    model.evaluate(x_val, y_val, batch_size=BATCH, verbose=0)
    model.save(os.path.join(out, "final.keras"))
    best = keras.models.load_model(os.path.join(out, "best.keras"), compile=False)
    final = keras.models.load_model(os.path.join(out, "final.keras"))
    averages = [v.numpy() for v in final.optimizer.variables if "average" in v.path]
    np.savez(os.path.join(out, "out.npz"), *initial, *after_fit, *best.get_weights(),
             *final.get_weights(), *averages)


def _sgd_steps(initial):
    """The weights after each step of SGD with momentum (Keras: m = mu m - lr g; w += m; the
    bias gradient doubled by CaffeSGD) on the mean squared error, in float64."""
    x, y, _, _ = _data()
    weights = [w.astype("float64") for w in initial]
    velocity = [np.zeros_like(w) for w in weights]
    steps = []
    for _ in range(EPOCHS):
        for step in range(STEPS):
            xb, yb = x[step * BATCH:(step + 1) * BATCH], y[step * BATCH:(step + 1) * BATCH]
            error = xb @ weights[0] + weights[1] - yb
            scale = 2.0 / error.size
            grads = [scale * xb.T @ error, BIAS_MULT * scale * error.sum(0)]
            velocity = [MOMENTUM * v - LR * g for v, g in zip(velocity, grads)]
            weights = [w + v for w, v in zip(weights, velocity)]
            steps.append(weights)
    return steps


def _averages_per_epoch(steps):
    """The moving average at each epoch end: the first step copies the weights, then
    a = d a + (1 - d) w (Keras' use_ema)."""
    average, per_epoch = None, []
    for index, weights in enumerate(steps):
        average = [w.copy() for w in weights] if average is None else [
            DECAY * a + (1 - DECAY) * w for a, w in zip(average, weights)]
        if (index + 1) % STEPS == 0:
            per_epoch.append(average)
    return per_epoch


def _run(backend, out):
    """``_train`` on ``backend``: in this process on TensorFlow (the suite's backend), else in a
    subprocess."""
    if backend == "tensorflow":
        _train(str(out))
        return subprocess.CompletedProcess([], 0, "", "")
    environ = dict(os.environ, KERAS_BACKEND=backend,
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    environ.pop("KERAS_FCN_JIT", None)
    return subprocess.run([sys.executable, os.path.abspath(__file__), str(out)], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
def test_ema_weights_validated_and_checkpointed_during_fit(backend, tmp_path):
    pytest.importorskip(backend)
    result = _run(backend, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    saved = np.load(tmp_path / "out.npz")
    arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    assert len(arrays) == 10  # kernel and bias: initial, after fit, best, final, averages
    initial, after_fit, best, final, averages = (arrays[i:i + 2] for i in range(0, 10, 2))
    steps = _sgd_steps(initial)
    per_epoch = _averages_per_epoch(steps)
    # The averages differ from the raw weights enough for the checks to tell them apart.
    assert np.abs(per_epoch[-1][0] - steps[-1][0]).max() > 1e-2
    x_val, y_val = _data()[2:]
    history = json.loads((tmp_path / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == list(range(1, EPOCHS + 1))
    for epoch, entry in enumerate(history):  # validated with the averages of that epoch
        kernel, bias = per_epoch[epoch]
        expected = np.mean((x_val @ kernel + bias - y_val) ** 2)
        assert entry["val_loss"] == pytest.approx(expected, rel=1e-5), epoch
    state = json.loads((tmp_path / "best_state.json").read_text())
    for got, want in zip(best, per_epoch[state["epoch"] - 1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for arrays_ in (after_fit, final, averages):  # fit ends with the averages in the model
        for got, want in zip(arrays_, per_epoch[-1]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    if os.environ.get("KERAS_BACKEND") != "tensorflow":
        sys.modules["tensorflow"] = None  # as on a JAX or PyTorch machine without it
    _train(sys.argv[1])
