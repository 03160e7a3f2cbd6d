"""Progress where no bar can be drawn (logs, pipes, CI): a line at most every minute."""

import io

import keras
import numpy as np

from keras_fcn.training import evaluation
from keras_fcn.training.callbacks import Heartbeat, ProgressLog
from tests.tiny import tiny_fcn


class FakeClock:
    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_heartbeat_prints_only_when_the_interval_has_passed():
    out = io.StringIO()
    beat = Heartbeat(60, clock=FakeClock(25), stream=out)  # created at t=25
    ticks = [beat.tick(lambda i=i: f"line {i}") for i in range(6)]  # t = 50, 75, ... 175
    assert ticks == [False, False, True, False, False, True]
    assert out.getvalue().splitlines() == ["line 2", "line 5"]


def test_progress_log_names_epoch_step_and_loss_during_fit_and_validation():
    out = io.StringIO()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, validation_data=(x[:4], y[:4]),
              callbacks=[ProgressLog(60, clock=FakeClock(61), stream=out)])
    lines = out.getvalue().splitlines()
    train = [line for line in lines if " train: " in line]
    assert train[0].startswith("epoch 1/2 train: step 1/4 (loss ") and len(train) == 8
    assert train[-1].startswith("epoch 2/2 train: step 4/4")
    assert [line for line in lines if "validation: step 2 " in line]


def test_evaluate_model_logs_a_line_a_minute_with_verbose_2(monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "Heartbeat",
                        lambda seconds: Heartbeat(seconds, clock=FakeClock(61)))
    batch = (np.zeros((1, 32, 32, 3), "float32"), np.zeros((1, 32, 32), "int32"))
    evaluation.evaluate_model(tiny_fcn("32s"), [batch] * 3, num_classes=3, ignore_label=255,
                              verbose=2)
    lines = capsys.readouterr().out.splitlines()[-3:]
    assert [line.split(" (")[0] for line in lines] == [
        "evaluating: batch 1/3", "evaluating: batch 2/3", "evaluating: batch 3/3"]
    assert all(line.endswith(" s/batch)") for line in lines)


def test_evaluate_model_logs_the_first_batch_at_once_then_every_log_seconds(capsys):
    """The CamVid walkthrough: 101 images x 6 TTA passes ran 31 s with nothing printed to a
    log (a line a minute only). The first batch is logged at once, then one every 10 s."""
    assert evaluation.LOG_SECONDS == 10
    batch = (np.zeros((1, 32, 32, 3), "float32"), np.zeros((1, 32, 32), "int32"))
    evaluation.evaluate_model(tiny_fcn("32s"), [batch] * 3, num_classes=3, ignore_label=255,
                              verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("evaluating: batch 1/3 ("), lines
