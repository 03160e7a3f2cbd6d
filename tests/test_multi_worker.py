"""Training with `MultiWorkerMirroredStrategy` on two local workers: the same model as one
worker, and a run killed and resumed.

A resume was silently wrong: only the chief restored its backup; the other worker, in a fresh
temporary folder, started again at epoch 1 from its initial weights, so the chief trained on
with weights that differed between the workers and returned other losses without a word, while
the other worker died when the chief ended. Now the recipe's non-chief workers resume from a
copy of the chief's run folder (`run_dir.worker_run_dir`), and workers that would start from
different states stop at once, all of them, naming the states (`backup.check_workers_agree`).
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from keras_fcn.training import run_dir as run_dir_lib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORKER = textwrap.dedent("""
    import json, sys, tempfile
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras, numpy as np
    from kill_callbacks import Epochs, Killed
    from tiny import TINY_FC, TINY_WIDTHS
    from keras_fcn import training as train
    from keras_fcn.datasets import shapes
    from keras_fcn.training.distribute import is_chief
    from keras_fcn.training.run_dir import worker_run_dir

    chief_dir, kill_at, copy = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "copy"
    run_dir = (chief_dir if is_chief() else worker_run_dir(chief_dir, resume=True) if copy
               else tempfile.mkdtemp())
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = train.build_model(train.TrainConfig(widths=TINY_WIDTHS, fc_units=TINY_FC,
                                                    dropout=0.0), "8s", 4, None)
        train.compile_model(model, num_classes=4, ignore_label=255,
                            optimizer=train.make_optimizer("sgd", 0.05, momentum=0.9))
        train.patch_multi_worker_build(model, strategy)
    images, masks = shapes.shapes_arrays(8, size=32, seed=0)
    ds = tf.data.Dataset.from_tensor_slices((images.astype("float32"),
                                             masks.astype("int32"))).batch(4)
    try:
        report = train.fit(model, ds, None, run_dir=run_dir, epochs=3, info=shapes.SHAPES_INFO,
                           verbose=0, callbacks=[Epochs(kill_at or None)])
    except Killed:
        print(json.dumps({"killed": True}))
    else:
        print(json.dumps({"loss": [e["loss"] for e in report["history"]],
                          "replicas": strategy.num_replicas_in_sync,
                          "checksum": float(sum(np.abs(w).sum() for w in model.get_weights()))}))
""")


def _two_workers(script, chief_dir, kill_at=0, copy=True, alone=None):
    """Runs ``script`` as two local workers (and, with ``alone``, at the same time as one
    worker without TF_CONFIG writing there); returns [(returncode, last stdout line as JSON,
    stderr)] of each."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
                   PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]),
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(
            [sys.executable, str(script), str(chief_dir), str(kill_at),
             "copy" if copy else "none"], env=env, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE))
    if alone is not None:
        env = {k: v for k, v in env.items() if k != "TF_CONFIG"}
        workers.append(subprocess.Popen([sys.executable, str(script), str(alone), "0", "none"],
                                        env=env, text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE))
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        lines = out.strip().splitlines()
        results.append((worker.returncode, json.loads(lines[-1]) if worker.returncode == 0
                        else None, err))
    return results


def test_a_worker_copies_the_chiefs_run_folder_only_to_resume(tmp_path, capsys):
    chief = tmp_path / "run"
    (chief / "backup").mkdir(parents=True)
    (chief / "backup" / "latest.weights.h5").write_bytes(b"weights")
    (chief / "fcn32s").mkdir()
    (chief / "fcn32s" / "metrics.json").write_text("{}")
    (chief / ".keras_fcn.lock").write_text("pid 1")
    (chief / "logs").mkdir()
    copied = run_dir_lib.worker_run_dir(str(chief), resume=True)
    names = sorted(os.path.relpath(os.path.join(d, f), copied)
                   for d, _, files in os.walk(copied) for f in files)
    assert names == ["backup/latest.weights.h5", "fcn32s/metrics.json"]
    assert open(os.path.join(copied, "backup", "latest.weights.h5"), "rb").read() == b"weights"
    assert os.listdir(run_dir_lib.worker_run_dir(str(chief), resume=False)) == []
    unseen = run_dir_lib.worker_run_dir(str(tmp_path / "elsewhere"), resume=True)
    assert os.listdir(unseen) == []
    assert "This worker cannot see the run folder" in capsys.readouterr().out


@pytest.mark.slow
def test_two_workers_train_one_workers_model_and_resume_as_uninterrupted_or_stop(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    *whole, alone = _two_workers(script, tmp_path / "whole", alone=tmp_path / "alone")
    for code, result, err in (*whole, alone):
        assert code == 0, err[-3000:]
    assert [r[1]["replicas"] for r in whole] == [2, 2] and alone[1]["replicas"] == 1
    # the two workers train the one worker's model: the same losses, the same weights
    losses = whole[0][1]["loss"]
    assert whole[1][1]["loss"] == losses and len(losses) == 3
    assert losses == pytest.approx(alone[1]["loss"], rel=1e-5)
    for _, result, _ in whole:
        assert result["checksum"] == pytest.approx(alone[1]["checksum"], rel=1e-6)
    # killed at the start of epoch 2, then resumed: the other worker from the chief's copy
    assert [r[1] for r in _two_workers(script, tmp_path / "a", kill_at=2)] == [
        {"killed": True}] * 2
    resumed = _two_workers(script, tmp_path / "a")
    for code, result, err in resumed:
        assert code == 0, err[-3000:]
        assert result["loss"] == pytest.approx(losses, rel=1e-5)
    # the same without the copy (a folder the other worker cannot see): both stop, named
    assert [r[1] for r in _two_workers(script, tmp_path / "b", kill_at=2)] == [
        {"killed": True}] * 2
    stopped = _two_workers(script, tmp_path / "b", copy=False)
    for code, result, err in stopped:
        assert code != 0 and result is None
        assert ("RuntimeError: The workers would train from different states (replica 0: "
                "epoch 1, weights checksum") in err
        assert "replica 1: epoch 0, weights checksum" in err
