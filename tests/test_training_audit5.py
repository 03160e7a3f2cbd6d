"""Reliability audit round 5, the training surface (docs/reliability.md, "Round 5: training").

Each test fails on the code before its fix: a kill after the last epoch retrained the whole run
on --resume (1); a finished run was trained again from epoch 1 by `fit` and by
examples/train_siftflow.py --resume (2); a resume with other optimizer settings silently
restarted the optimizer (3) and one with another validation split was taken (4); `best.keras`
kept the highest loss (5) or was never written for a monitor that is not logged (6); a resume
with fewer epochs than trained ended as a "completed" shorter run (7); --epochs=0 with a
schedule and a warm-up as long as the run failed after reading the data (8); history.json had
no learning rate (9). Tiny models on 32x32 shapes, one step per epoch.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kill_callbacks import Epochs, Killed
from tiny import file_digests, tiny_fcn
from keras_fcn import io
from keras_fcn import metrics as metrics_lib
from keras_fcn import training as train
from keras_fcn.datasets import shapes
from keras_fcn.training import callbacks as callbacks_lib
from keras_fcn.training import optimizers
from keras_fcn.training import recipe
from keras_fcn.training import run_dir as run_dir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data():
    images, masks = shapes.shapes_arrays(4, size=32, seed=0)
    ds = tf.data.Dataset.from_tensor_slices((images.astype("float32"), masks.astype("int32")))
    return ds.batch(2).repeat(), ds.batch(2)


def _model(optimizer="adam", learning_rate=1e-3, **options):
    keras.utils.set_random_seed(0)
    model = tiny_fcn("32s", 4, include_preprocessing=True)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer(optimizer, learning_rate, **options))
    return model


def _fit(model, run_dir, epochs, callbacks=(), **kwargs):
    train_ds, val_ds = _data()
    return train.fit(model, train_ds, val_ds, run_dir=str(run_dir), epochs=epochs,
                     info=shapes.SHAPES_INFO, steps_per_epoch=1, verbose=0,
                     callbacks=list(callbacks), **kwargs)


def _killed_after(run_dir, epochs_done, epochs, **options):
    """A run of `epochs` killed at the start of epoch `epochs_done + 1`."""
    with pytest.raises(Killed):
        _fit(_model(**options), run_dir, epochs, [Epochs(kill_at=epochs_done + 1)])


def _weights(path):
    return [w.numpy() for w in keras.models.load_model(path, compile=False).weights]


# ------------------------------ 1. a kill after the last epoch ----


def test_a_kill_after_the_last_epoch_resumes_without_training_again(tmp_path):
    """The backup was deleted when Keras' fit ended, before the final model, evaluation and
    metrics.json: a kill there (the evaluation takes minutes on VOC) made --resume train every
    epoch again from the initial weights. The averaged (EMA) weights come back too."""

    def killed_evaluation(model, dataset):
        raise Killed()

    epochs_run = Epochs()
    with pytest.raises(Killed):
        _fit(_model(ema_decay=0.9), tmp_path, 2, [epochs_run], evaluate=killed_evaluation)
    assert epochs_run.epochs == [1, 2]
    assert os.path.isdir(tmp_path / "backup")  # kept until the run is complete
    before = _weights(tmp_path / "model.keras")
    resumed = Epochs()
    report = _fit(_model(ema_decay=0.9), tmp_path, 2, [resumed])
    assert resumed.epochs == []  # was [1, 2]: the whole run again
    assert report["status"] == "completed"
    assert [e["epoch"] for e in report["history"]] == [1, 2]
    for got, want in zip(_weights(tmp_path / "model.keras"), before):
        np.testing.assert_array_equal(got, want)  # the same averaged weights, not the raw ones
    assert not os.path.exists(tmp_path / "backup")  # deleted once metrics.json is written


# ------------------------------ 2. a finished run trained again ----


@pytest.mark.parametrize("script", ["train_siftflow.py", "train_nyud.py"])
def test_resume_of_a_finished_run_trains_nothing(tmp_path, script):
    """examples/train_siftflow.py --resume of a finished run trained it again from epoch 1
    (new model.keras and history, the old best.keras kept: two runs mixed), exit 0;
    train_nyud.py was then refused by fit (exit 2) instead of saying it is complete."""
    run = tmp_path / "run"
    run.mkdir()
    tiny_fcn("32s", 4).save(str(run / "model.keras"))
    scores = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in
              metrics_lib.segmentation_metrics(np.array([[3, 1], [0, 4]])).items()}
    final = {"semantic": {"mean_iu": 0.25}} if script == "train_siftflow.py" else scores
    io.write_json(str(run / "metrics.json"), {"status": "completed", "epochs": 2,
                                              "final_val": final})
    config = ({"variant": "16s", "synthetic": True} if script == "train_siftflow.py" else
              {"modality": "rgb", "variant": "32s", "synthetic": True})
    run_dir_lib.write_run_config(str(run), config)
    before = file_digests(run)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), "--synthetic",
         "--resume", f"--output_dir={run}"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Run directory: {run} (complete; nothing to resume)" in proc.stdout
    after = file_digests(run)
    assert {k: after[k] for k in ("model.keras", "metrics.json")} == {
        k: before[k] for k in ("model.keras", "metrics.json")}
    assert sorted(after) == sorted(before)  # no history, best.keras or backup: nothing trained


# ------------------------------ 3, 4, 7, 9. resumes that change the run ----


def test_resumes_that_would_change_the_run_are_refused_and_the_rate_continues(tmp_path):
    """Finding 3: another optimizer state was dropped with a warning (step 0 of the schedule,
    no momentum); finding 7: fewer epochs than trained ended "completed" with "epochs": 1, a
    2-epoch history and epoch 2's weights; finding 9: history.json had no learning rate (the
    HistoryWriter docstring promised it): with it the resumed schedule is seen to continue."""

    def sgd(**options):
        schedule = train.learning_rate_schedule(1e-2, "poly", total_steps=4)
        return _model("sgd", schedule, momentum=0.9, **options)

    _killed_after(tmp_path, 2, 4, optimizer="sgd",
                  learning_rate=train.learning_rate_schedule(1e-2, "poly", total_steps=4),
                  momentum=0.9)
    backup = file_digests(tmp_path / "backup")
    for model in (_model("adam"), sgd(ema_decay=0.99)):
        with pytest.raises(ValueError) as error:
            _fit(model, tmp_path, 4)
        assert str(error.value).startswith(
            f"The backup in '{tmp_path / 'backup'}' holds the state of another optimizer (this "
            "one has ")
        assert "Were --optimizer, --momentum, --ema_decay or --precision" in str(error.value)
    with pytest.raises(ValueError) as error:
        _fit(sgd(), tmp_path, 1)
    assert str(error.value) == (
        f"The backup in '{tmp_path / 'backup'}' has trained 2 epochs, more than the 1 asked "
        "for: the run would end as a 1-epoch run holding 2 epochs. Resume with --epochs=2 or "
        "more, or start a new run. Received: epochs=1")
    assert file_digests(tmp_path / "backup") == backup
    assert not os.path.exists(tmp_path / "metrics.json")
    report = _fit(sgd(), tmp_path, 4)  # the run's own settings
    assert [e["epoch"] for e in report["history"]] == [1, 2, 3, 4]
    rates = [e["learning_rate"] for e in report["history"]]
    want = [1e-2 * (1 - step / 4) ** 0.9 for step in range(4)]  # one step per epoch
    np.testing.assert_allclose(rates, want, rtol=1e-6)


@pytest.mark.parametrize("flag, stored, given", [("holdout", "0006R0", "0001TP"),
                                                 ("val_split", "validation", "test"),
                                                 ("optimizer", "sgd", "adam")])
def test_a_resume_with_another_split_or_optimizer_is_refused(tmp_path, flag, stored, given):
    """Another validation split made best.keras's stored score (and the cached class weights)
    belong to other images; another optimizer cannot take the backup's state."""
    first = train.TrainConfig().replace(**{flag: stored})
    run_dir_lib.write_run_config(str(tmp_path), first.flat())
    with pytest.raises(ValueError) as error:
        run_dir_lib.write_run_config(str(tmp_path), first.replace(**{flag: given}).flat(),
                                     resume=True, compare=recipe.RESUME_FLAGS)
    assert str(error.value).startswith(
        f"The run in '{tmp_path}' was trained with --{flag}={stored}; --resume got "
        f"--{flag}={given}.")


# ------------------------------ 5-6. best.keras ----


def test_best_checkpoint_minimizes_a_loss_and_checks_its_mode(tmp_path):
    """fit(monitor="val_loss") kept the epoch of the highest loss (mode was always "max");
    any mode but "max" (a typo too) meant "min"."""
    best = callbacks_lib.BestCheckpoint(str(tmp_path / "best.keras"), callbacks_lib.NaNGuard(),
                                        monitor="val_loss")
    best.set_model(tiny_fcn("32s", 4))
    for epoch, value in enumerate((1.47, 1.40, 1.45)):
        best.on_epoch_end(epoch, {"val_loss": value, "val_mean_iu": 0.1})
    assert (best.best, best.best_epoch) == (1.40, 2)  # was (1.47, 1)
    assert json.load(open(tmp_path / "best_state.json")) == {
        "monitor": "val_loss", "value": 1.40, "epoch": 2}
    with pytest.raises(ValueError, match="Received: mode='maximum'"):
        callbacks_lib.BestCheckpoint(str(tmp_path / "b.keras"), callbacks_lib.NaNGuard(),
                                     mode="maximum")
    # A resume that monitors another value would compare it with val_loss's best.
    with pytest.raises(ValueError) as error:
        callbacks_lib.BestCheckpoint(str(tmp_path / "best.keras"), callbacks_lib.NaNGuard(),
                                     monitor="val_mean_iu")
    assert str(error.value) == (
        f"'{tmp_path / 'best.keras'}' was chosen by val_loss; this run monitors val_mean_iu, "
        "so a worse model could replace it. Resume with monitor='val_loss', or start a new "
        "run. Received: monitor='val_mean_iu'")


def test_fit_keeps_the_lowest_loss_and_refuses_to_train_a_completed_run_again(tmp_path):
    """Finding 5 through fit; and finding 2: fit on the folder of a completed run trained it
    again from epoch 1, replacing its model, history and metrics."""
    report = _fit(_model(learning_rate=1e-2), tmp_path, 3, monitor="val_loss")
    losses = [e["val_loss"] for e in report["history"]]
    assert len(set(losses)) == 3
    assert report["best"] == {"monitor": "val_loss", "value": min(losses),
                              "epoch": 1 + losses.index(min(losses))}
    before = file_digests(tmp_path)
    with pytest.raises(FileExistsError) as error:
        _fit(_model(), tmp_path, 3, monitor="val_loss")
    assert str(error.value) == (
        f"The run in '{tmp_path}' is complete (metrics.json, model.keras): training again "
        "would start from epoch 1 and replace its model and history. Choose another run "
        "directory, or delete this one (--overwrite) to train it again.")
    assert file_digests(tmp_path) == before


def test_a_monitor_that_is_never_logged_is_an_error(tmp_path):
    """A typo left no best.keras and `best: None`, exit 0."""
    best = callbacks_lib.BestCheckpoint(str(tmp_path / "best.keras"), callbacks_lib.NaNGuard(),
                                        monitor="val_mean_IU")
    best.set_model(tiny_fcn("32s", 4))
    with pytest.raises(ValueError) as error:
        best.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.2, "val_mean_iu": 0.3})
    assert str(error.value) == (
        "monitor='val_mean_IU' is not among the logged values (loss, val_loss, val_mean_iu): "
        "best.keras would never be written. Pass one of them, e.g. monitor='val_mean_iu'.")
    # Without validation data there is no best checkpoint, as before, and no error.
    best.on_epoch_end(0, {"loss": 1.0})
    assert not os.path.exists(tmp_path / "best.keras")


# ------------------------------ 8. epochs=0 and the warm-up ----


def test_zero_epochs_need_no_schedule_and_the_warmup_is_checked_first(tmp_path):
    """examples/train_camvid.py --epochs=0 (poly by default) failed after reading the data
    with "total_steps=0"; a warm-up as long as the run failed there too, naming no flag."""
    config = train.TrainConfig().replace(epochs=0, lr_schedule="poly", warmup_epochs=1.0)
    assert recipe.run_schedule(config, 1e-3, train_ds=None) == 1e-3
    optimizers.check_warmup(1.0, epochs=0)
    bad = train.TrainConfig().replace(epochs=3, warmup_epochs=3.0, lr_schedule="poly",
                                      output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError) as error:
        train.run(bad)
    assert str(error.value) == (
        "--warmup_epochs must be a number >= 0 and below --epochs (the warm-up must end before "
        "the run does). Received: warmup_epochs=3.0, epochs=3")
    assert not os.path.exists(tmp_path / "run")  # before the run folder and the data


# ------------------------------ the JAX path: PyDataset input ----

_JAX_SCRIPT = r'''
import json, os, sys
import keras, numpy as np
from keras_fcn import training as train
from keras_fcn.data.arrays import make_pydataset
from keras_fcn.datasets import shapes
from keras_fcn.datasets.pairs import file_pairs
from keras_fcn.models import build_fcn
folder, run_dir = sys.argv[1], sys.argv[2]
shapes.make_shapes_dataset(folder, num_train=4, num_val=2, size=32, seed=0)
(train_pairs, info), (val_pairs, _) = (file_pairs("shapes", s, folder) for s in ("train", "val"))
class Killed(BaseException):
    pass
def fit(epochs, evaluate=None):
    keras.utils.set_random_seed(0)
    model = build_fcn("32s", num_classes=4, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8,
                      dropout=0.0, include_preprocessing=True)
    schedule = train.learning_rate_schedule(1e-2, "poly", total_steps=4)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", schedule, ema_decay=0.9))
    data = make_pydataset(train_pairs, num_classes=4, batch_size=2, shuffle=True, seed=0)
    val = make_pydataset(val_pairs, num_classes=4)
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e + 1))
    report = train.fit(model, data, val, run_dir=run_dir, epochs=epochs, info=info, verbose=0,
                       callbacks=[record], evaluate=evaluate)
    return seen, report
def killed(model, dataset):
    raise Killed()
try:
    fit(2, killed)
except Killed:
    pass
seen, report = fit(2)
print("RESULT " + json.dumps({"seen": seen, "backup": os.path.exists(run_dir + "/backup"),
                              "rates": [e["learning_rate"] for e in report["history"]]}))
'''


@pytest.mark.slow
def test_the_jax_pydataset_path_resumes_a_kill_after_the_last_epoch(tmp_path):
    """Finding 1 and 9 on KERAS_BACKEND=jax with keras_fcn.data.arrays' PyDataset (two steps an
    epoch): the resume trains no epoch, and the history holds the schedule's rates."""
    pytest.importorskip("jax")
    script = tmp_path / "jax_case.py"
    script.write_text(_JAX_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "data"),
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["seen"] == [] and not result["backup"]
    np.testing.assert_allclose(result["rates"], [1e-2 * (1 - s / 4) ** 0.9 for s in (1, 3)],
                               rtol=1e-6)
