"""keras_fcn.training.array_inputs.EpochStream: `--steps_per_epoch` without TensorFlow. The
stream's epochs against the dataset's own batches, under Keras' fit, and on a resume."""

import keras
import numpy as np
import pytest

from keras_fcn.data.arrays import make_pydataset
from keras_fcn.datasets.shapes import make_shapes_dataset
from keras_fcn.training import TrainConfig, array_inputs
from keras_fcn.training.array_inputs import EpochStream
from keras_fcn.training.data_order import ResumeDataOrder, advance_data


class _Recorder(keras.utils.PyDataset):
    """Three one-row batches whose value is 100 * epoch + batch; records every read."""

    def __init__(self, batches=3):
        super().__init__()
        self.batches, self.epoch, self.reads = batches, 0, []

    def __len__(self):
        return self.batches

    def on_epoch_end(self):
        self.epoch += 1

    def batch(self, index, epoch):
        self.reads.append((epoch, index))
        return np.full((1, 2), 100 * epoch + index, "float32"), np.zeros((1, 1), "float32")

    def __getitem__(self, index):
        return self.batch(index, self.epoch)


@pytest.fixture(scope="module")
def shapes_pairs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("shapes"))
    make_shapes_dataset(folder, num_train=5, num_val=2, size=16, seed=0)
    config = TrainConfig(dataset="shapes", data_dir=folder)
    return (folder, *array_inputs.split_pairs(config, "train", folder))


def _dataset(shapes_pairs, **options):
    _, pairs, info = shapes_pairs
    return make_pydataset(pairs, num_classes=info.num_classes, ignore_label=info.ignore_label,
                          batch_size=2, crop_size=12, flip=True, shuffle=True, seed=3, **options)


def test_steps_equal_to_the_batches_read_what_the_dataset_reads(shapes_pairs):
    dataset, reference = _dataset(shapes_pairs), _dataset(shapes_pairs)
    stream = EpochStream(dataset, len(dataset))
    for epoch in range(3):
        for index in range(len(reference)):
            for got, want in zip(stream[index], reference[index]):
                np.testing.assert_array_equal(got, want)
        stream.on_epoch_end()
        reference.on_epoch_end()


def test_epochs_cut_the_stream_of_the_data_epochs(shapes_pairs):
    """5 steps over 3 batches an epoch: epoch 1 reads data epoch 1's batches 2, then epoch 2's
    0, 1, 2, then epoch 3's 0 (the shuffled order and draws of each data epoch)."""
    dataset, reference = _dataset(shapes_pairs), _dataset(shapes_pairs)
    stream = EpochStream(dataset, 5)
    stream.epoch = 1
    assert stream.epoch_order() == [(1, 2), (2, 0), (2, 1), (2, 2), (3, 0)]
    for step, (data_epoch, index) in enumerate(stream.epoch_order()):
        reference.epoch = data_epoch
        for got, want in zip(stream[step], reference[index]):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError, match="Step 5 is out of range: an epoch has 5 steps"):
        stream[5]


def test_fit_reads_every_epoch_whole_and_in_stream_order():
    """Keras alone keeps one iterator of a PyDataset across epochs and cuts an epoch short when
    it runs out (2 of 5 steps here in its second epoch); the stream gives every epoch its 5."""
    recorder = _Recorder()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(EpochStream(recorder, 5), epochs=3, steps_per_epoch=5, verbose=0,
                        shuffle=False)
    assert len(history.history["loss"]) == 3
    trained = recorder.reads[-15:]  # before them, the batch that builds the model
    steps = [epoch * 3 + index for epoch, index in trained]
    assert steps == list(range(5, 20))


def test_a_resume_moves_the_stream_on_by_its_epochs(shapes_pairs, capsys):
    dataset = _dataset(shapes_pairs)
    stream = EpochStream(dataset, 4)
    assert advance_data(stream, 2) and stream.epoch == 2
    assert stream.epoch_order()[0] == divmod(8, len(dataset))

    class Model:  # what ResumeDataOrder reads of the model: the epoch a backup restored
        _initial_epoch = 3

    moved = EpochStream(_dataset(shapes_pairs), 4)
    order = ResumeDataOrder(moved, steps_per_epoch=4)
    order.set_model(Model())
    order.on_train_begin()
    assert moved.epoch == 3 and "starts again" not in capsys.readouterr().out


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, "3"])
def test_bad_steps_per_epoch_is_named(shapes_pairs, steps):
    with pytest.raises(ValueError, match=f"steps_per_epoch={steps!r}"):
        EpochStream(_dataset(shapes_pairs), steps)


def test_recipe_data_with_steps_per_epoch_is_a_stream(shapes_pairs):
    folder, _, _ = shapes_pairs
    config = TrainConfig(dataset="shapes", data_dir=folder, batch_size=2, image_size=(12, 12),
                         steps_per_epoch=7)
    train, val, *_ = array_inputs.load_pipelines(config)
    assert isinstance(train, EpochStream) and len(train) == 7 and len(train.dataset) == 3
    assert not isinstance(val, EpochStream)
    assert train.workers == train.dataset.workers == val.workers == array_inputs.data_workers()
    images, masks = train[6]
    assert images.shape == (2, 12, 12, 3) and masks.shape == (2, 12, 12)


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 2), (32, array_inputs.MAX_WORKERS)])
def test_a_run_reads_with_a_thread_per_core_up_to_the_cap(monkeypatch, cores, workers):
    monkeypatch.setattr(array_inputs.os, "sched_getaffinity", lambda pid: set(range(cores)),
                        raising=False)
    assert array_inputs.data_workers() == workers
