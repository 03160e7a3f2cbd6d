"""tf.distribute strategies in the recipe: validation batches padded for several replicas, the
TF_CONFIG check and the waiting line of multi_worker, a worker's private folder removed at the
end, the lost-worker message, and the workers' state check without AutoGraph warnings.

Before: ``--strategy=mirrored`` on two replicas stopped at the first validation with a batch
of one image ("Inputs to operation AddN ... must have the same size and shape"); a bad
TF_CONFIG gave json's bare message; multi_worker waited for a missing peer without a word; a
non-chief worker's temporary run folder stayed behind.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from keras_fcn.training import cli, distribute, recipe
from two_cpus import run_on_two_cpus

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TINY = dict(dataset="shapes", num_train=8, shapes_size=32, image_size=(32, 32), batch_size=2,
            epochs=1, widths=(4, 4, 8, 8, 8), fc_units=8, dropout=0.0, weights="none",
            optimizer="adam", learning_rate=1e-2, export=False, seed=1)

MIRRORED_RUN = """
from keras_fcn import training
from keras_fcn.training import inputs

run_dir = os.path.join(TMP, "run")
config = training.TrainConfig().replace(strategy="mirrored", num_val=3, val_batch_size=1,
                                        output_dir=run_dir, **TINY)
training.run(config)
history = json.load(open(os.path.join(run_dir, "metrics.json")))["history"]
# The same model evaluated on one replica (the default strategy), unpadded batches of one.
model = keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False)
val_decoded, info, count = inputs.load_data(config, "val")
_, val_ds, _ = inputs.make_pipelines(config, val_decoded, val_decoded, info)
training.compile_model(model, num_classes=info.num_classes, ignore_label=info.ignore_label,
                       optimizer=keras.optimizers.Adam())
single = model.evaluate(val_ds, return_dict=True, verbose=0)
try:
    training.make_strategy("mirrored", batch_size=3)
    refused = None
except ValueError as error:
    refused = str(error)
# keras_fcn.training.fit of a model compiled under the strategy (the Python API): its
# validation batches of one are padded too, and score as the recipe's did.
strategy = training.make_strategy("mirrored")
with strategy.scope():
    api_model = keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    training.compile_model(api_model, num_classes=info.num_classes,
                           ignore_label=info.ignore_label, optimizer=keras.optimizers.SGD(0.0))
train_decoded, _, _ = inputs.load_data(config, "train")
train_ds, val_ds, _ = inputs.make_pipelines(config, train_decoded, val_decoded, info)
api = training.fit(api_model, train_ds, val_ds, run_dir=os.path.join(TMP, "api"), epochs=1,
                   info=info, verbose=0)
print("RESULT" + json.dumps({"last": history[-1], "single": single, "count": count,
                             "refused": refused, "api": api["history"][-1],
                             "api_images": api["final_val"]["num_images"]}))
"""


def test_mirrored_recipe_validates_batches_of_one_as_one_replica_does(tmp_path):
    body = f"TMP = {str(tmp_path)!r}\nTINY = {TINY!r}\n" + MIRRORED_RUN
    result = run_on_two_cpus(body, timeout=400)
    assert result["count"] == 3
    last, single = result["last"], result["single"]
    for name in ("pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu"):
        assert last["val_" + name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name
    # the API's fit (learning rate 0: the same weights) validated the same three images
    assert result["api_images"] == 3
    for name in ("pixel_accuracy", "mean_iu"):
        assert result["api"]["val_" + name] == pytest.approx(single[name], rel=1e-5, abs=1e-6)
    assert result["refused"] == ("strategy='mirrored' splits each batch across its 2 replicas: "
                                 "batch_size must be a multiple of 2. Received: batch_size=3")


def test_a_bad_tf_config_is_named_before_tensorflow_reads_it(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{cluster: 1}")
    with pytest.raises(ValueError, match=r"TF_CONFIG must be JSON like .*\"worker\", "
                                         r"\"index\": 0.*Received: TF_CONFIG='\{cluster: 1\}'"):
        distribute.make_strategy("multi_worker")


WAIT = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
from keras_fcn.training import distribute
distribute.make_strategy("multi_worker")
"""


def test_multi_worker_says_whom_it_waits_for(tmp_path):
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    addresses = [f"localhost:{port}" for port in ports]
    config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": 1}}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=json.dumps(config),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        worker = subprocess.Popen([sys.executable, "-c", WAIT], env=env, stderr=err,
                                  stdout=subprocess.DEVNULL)  # its peer never comes
    want = (f"Waiting for the 2 workers of TF_CONFIG ({addresses[0]}, {addresses[1]}) to "
            "connect; this worker is worker:1")
    try:
        deadline = time.time() + 60
        while time.time() < deadline and want not in log.read_text() and worker.poll() is None:
            time.sleep(0.5)
    finally:
        worker.kill()
        worker.wait()
    assert want in log.read_text(), log.read_text()[-2000:]


def test_a_non_chief_workers_folder_is_removed_when_its_run_ends(tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    monkeypatch.setattr(recipe, "is_chief", lambda: False)
    output = tmp_path / "chief_run"
    config = recipe.TrainConfig().replace(num_val=2, output_dir=str(output), **TINY)
    result = recipe.run(config)
    assert os.path.basename(result["run_dir"]).startswith("keras_fcn_worker_")
    left = [name for name in os.listdir(temp) if name.startswith("keras_fcn_worker_")]
    assert left == [] and not output.exists()  # (AutoGraph leaves its files there too)


def test_a_lost_worker_is_told_to_rerun_every_worker_with_resume(tmp_path):
    # A MultiWorkerMirroredStrategy object without its cluster (isinstance is all that counts).
    strategy = object.__new__(tf.distribute.MultiWorkerMirroredStrategy)
    folder = tmp_path / "worker"
    folder.mkdir()
    lost = tf.errors.UnavailableError(
        None, None, "Graph execution error:\n\nDetected at node x\nCollective ops is aborted "
        "by: recvmsg:Connection reset by peer\n\t [[{{node x}}]]")
    with pytest.raises(tf.errors.UnavailableError) as raised:
        with distribute.multi_worker_run(strategy, str(folder), chief=False):
            raise lost
    assert cli.error_message(raised.value) == (
        "Collective ops is aborted by: recvmsg:Connection reset by peer; a worker was lost; "
        "rerun every worker with --resume")
    assert not folder.exists()
    other = ValueError("bad")  # anything else, or one worker: unchanged
    with pytest.raises(ValueError) as raised:
        with distribute.multi_worker_run(strategy, str(tmp_path), chief=True):
            raise other
    assert raised.value is other and tmp_path.exists()
    assert distribute.lost_worker_error(lost, distribute.SingleDevice()) is lost


STATE_CHECK = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # one worker: no TF_CONFIG
import keras
from keras_fcn.training import backup
with strategy.scope():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
backup.check_workers_agree(model, "unused")
print("AGREED")
"""


def test_the_workers_state_check_gives_no_autograph_warning():
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(STATE_CHECK)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "AGREED" in done.stdout, done.stderr[-3000:]
    assert "AutoGraph could not transform" not in done.stderr, done.stderr[-3000:]
