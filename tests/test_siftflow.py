"""SIFT Flow readers on tiny files written in the real formats."""

import os
import shutil

import numpy as np
import pytest
import scipy.io

from keras_fcn.datasets import siftflow as sf


def test_bundled_test_split():
    ids = sf.siftflow_test_ids()
    assert len(ids) == len(set(ids)) == 200
    assert ids[0] == "coast_natu975" and ids[-1] == "highway_gre141"
    assert not set(sf.UNANNOTATED) & set(ids)


def test_label_conventions():
    assert sf.semantic_to_train_ids(np.array([0, 1, 28, 33])).tolist() == [255, 0, 27, 32]
    assert sf.geometric_to_train_ids(np.array([-1, 0, 1, 2, 3])).tolist() == [255, 255, 0, 1, 2]
    with pytest.raises(ValueError, match="0..33"):
        sf.semantic_to_train_ids(np.array([34]))
    with pytest.raises(ValueError, match="-1..3"):
        sf.geometric_to_train_ids(np.array([-2]))


@pytest.fixture
def fake_root(tmp_path):
    sf.write_fake_siftflow(tmp_path, num_train=3, num_test=1, size=32)
    return str(tmp_path)


def test_reader_shapes_dtypes_and_orientation(fake_root):
    image, labels = sf.load_example(fake_root, "coast_fake0")
    assert image.shape == (32, 32, 3) and image.dtype == np.float32
    rgb, semantic, geometric = sf.fake_scene(32, seed=0)
    np.testing.assert_array_equal(labels["semantic"], sf.semantic_to_train_ids(semantic))
    np.testing.assert_array_equal(labels["geometric"], sf.geometric_to_train_ids(geometric))
    # sky on top, void strip at the bottom: not transposed or flipped
    assert labels["semantic"][0, 5] == sf.SEMANTIC_CLASSES.index("sky")
    assert labels["geometric"][0, 5] == sf.GEOMETRIC_CLASSES.index("sky")
    assert (labels["semantic"][-1] == 255).all() and (labels["geometric"][-1] == 255).all()
    for label in labels.values():
        assert label.dtype == np.uint8
    expected = rgb[..., ::-1].astype(np.float32) - np.float32(sf.SIFTFLOW_MEAN_BGR)
    # BGR order and mean subtraction (channel means: JPEG changes single pixels)
    assert np.abs(image.mean((0, 1)) - expected.mean((0, 1))).max() < 3


def test_splits_from_files_and_the_default_complement(fake_root):
    assert sf.siftflow_ids(fake_root, "test") == ["coast_fake3"]
    assert sf.siftflow_ids(fake_root, "train") == ["coast_fake0", "coast_fake1", "coast_fake2"]
    os.remove(os.path.join(fake_root, "trainval.txt"))
    assert len(sf.siftflow_ids(fake_root, "trainval")) == 4  # none is a standard test id
    with pytest.raises(ValueError, match="split='val'"):
        sf.siftflow_ids(fake_root, "val")


def test_geometric_labels_folder_alias(fake_root):
    shutil.move(os.path.join(fake_root, "GeoLabels"), os.path.join(fake_root, "GeometricLabels"))
    assert sf.read_geometric_label(fake_root, "coast_fake1").shape == (32, 32)


def test_missing_field_is_named(fake_root):
    path = os.path.join(fake_root, "SemanticLabels", sf.SUBDIR, "coast_fake2.mat")
    scipy.io.savemat(path, {"L": np.zeros((32, 32))})
    with pytest.raises(ValueError, match="'S'"):
        sf.read_semantic_label(fake_root, "coast_fake2")


def test_dataset_yields_both_label_maps(fake_root):
    ds = sf.make_siftflow_dataset(fake_root, "trainval", batch_size=3, shuffle=True, seed=0,
                                  flip=True)
    images, labels = next(iter(ds))
    assert images.shape == (3, 32, 32, 3)
    assert labels["semantic"].shape == labels["geometric"].shape == (3, 32, 32)
    assert labels["semantic"].dtype.name == "int32"


def test_eval_confusion_drops_absent_classes():
    confusion = np.arange(33 * 33).reshape(33, 33)
    kept = sf.semantic_eval_confusion(confusion)
    assert kept.shape == (30, 30)
    cow = sf.SEMANTIC_CLASSES.index("cow")
    assert confusion[cow, cow] not in np.diag(kept)
    with pytest.raises(ValueError, match="shape"):
        sf.semantic_eval_confusion(np.zeros((3, 3)))


def test_seeded_flips_are_reproducible(fake_root):
    def batches(seed):
        ds = sf.make_siftflow_dataset(fake_root, "trainval", shuffle=True, seed=seed, flip=True)
        return [(x.numpy(), y["semantic"].numpy(), y["geometric"].numpy())
                for _ in range(3) for x, y in ds]

    first, again, other = batches(5), batches(5), batches(6)
    for arrays_a, arrays_b in zip(first, again):
        for a, b in zip(arrays_a, arrays_b):
            np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))
