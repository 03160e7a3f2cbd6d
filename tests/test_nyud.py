"""NYUDv2 readers on tiny files written in the real formats."""

import logging
import os
import re

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from keras_fcn.datasets import nyud


def test_bundled_split_is_the_papers_795_654_partition():
    train, val, test = (nyud.nyud_split_ids(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (381, 414, 654)
    assert nyud.nyud_split_ids("trainval") == train + val
    ids = {int(i) for i in train + val + test}
    assert len(ids) == 1449 and ids == set(range(5001, 6450))


def test_bad_split_and_modality_are_named():
    with pytest.raises(ValueError, match="split='valid'"):
        nyud.nyud_split_ids("valid")
    with pytest.raises(ValueError, match="modality='depth'"):
        nyud.input_channels("depth")


def test_void_becomes_255_and_classes_shift_down():
    labels = nyud.to_train_ids(np.array([[0, 1], [2, 40]]))
    assert labels.dtype == np.uint8
    assert labels.tolist() == [[255, 0], [1, 39]]
    with pytest.raises(ValueError, match="0..40"):
        nyud.to_train_ids(np.array([41]))


def test_class_mapping_table(tmp_path):
    path = tmp_path / "classMapping40.mat"
    nyud.write_fake_class_mapping(path)
    table = nyud.read_class_mapping(path)
    assert table.shape == (895,) and table[0] == 0
    assert table[1] == 1 and table[40] == 40 and table[41] == 1
    assert table[1:].min() == 1 and table[1:].max() == 40
    scipy.io.savemat(tmp_path / "bad.mat", {"other": np.zeros(3)})
    with pytest.raises(ValueError, match="mapClass"):
        nyud.read_class_mapping(tmp_path / "bad.mat")


def test_labeled_mat_orientation_with_an_asymmetric_pattern(tmp_path):
    # MATLAB stores (H, W, 3, N) column-major; h5py sees (N, 3, W, H).
    height, width = 5, 7
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[0, width - 1] = (255, 0, 0)  # top-right pixel red
    rgb[height - 1, 0, 2] = 200  # bottom-left pixel blue
    depth = np.arange(height * width, dtype=np.float32).reshape(height, width) / 10 + 1
    raw = np.zeros((height, width), np.uint16)
    raw[0, :3] = 3  # top-left strip
    path = tmp_path / "labeled.mat"
    with h5py.File(path, "w") as f:
        f["images"] = rgb.transpose(2, 1, 0)[None]
        f["depths"] = depth.T[None]
        f["labels"] = raw.T[None]
    (example,) = list(nyud.iter_labeled_mat(path))
    assert example["id"] == "5001"
    assert example["rgb"].shape == (height, width, 3) and example["rgb"].dtype == np.uint8
    assert example["rgb"][0, width - 1].tolist() == [255, 0, 0]
    assert example["rgb"][height - 1, 0].tolist() == [0, 0, 200]
    np.testing.assert_array_equal(example["depth"], depth)
    assert example["depth"].dtype == np.float32
    np.testing.assert_array_equal(example["label"], raw)


def test_labeled_mat_maps_to_40_classes(tmp_path):
    scenes = nyud.write_fake_labeled_mat(tmp_path / "l.mat", num_images=2)
    nyud.write_fake_class_mapping(tmp_path / "m.mat")
    examples = list(nyud.iter_labeled_mat(tmp_path / "l.mat", [1], tmp_path / "m.mat"))
    assert [e["id"] for e in examples] == ["5002"]
    rgb, depth, raw = scenes[1]
    np.testing.assert_array_equal(examples[0]["rgb"], rgb)
    np.testing.assert_array_equal(examples[0]["depth"], depth)
    expected = np.where(raw == 0, 0, (raw - 1) % 40 + 1)
    np.testing.assert_array_equal(examples[0]["label"], expected)
    assert examples[0]["label"].dtype == np.uint8


def test_labeled_mat_errors_name_the_problem(tmp_path):
    with h5py.File(tmp_path / "bad.mat", "w") as f:
        f["images"] = np.zeros((1, 4, 5, 6), np.uint8)
        f["depths"] = np.zeros((1, 5, 6), np.float32)
        f["labels"] = np.zeros((1, 5, 6), np.uint16)
    with pytest.raises(ValueError, match=r"shape=\(1, 4, 5, 6\)"):
        next(nyud.iter_labeled_mat(tmp_path / "bad.mat"))
    nyud.write_fake_labeled_mat(tmp_path / "ok.mat", num_images=1)
    with pytest.raises(IndexError, match="index 3"):
        next(nyud.iter_labeled_mat(tmp_path / "ok.mat", [3]))


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return nyud.write_fake_nyud(tmp_path_factory.mktemp("nyud"), num_images=3)


def test_fcn_layout_files_and_label_values(fake_root):
    for sub in ("data/images", "data/depth", "data/hha", "segmentation"):
        assert len(os.listdir(os.path.join(fake_root, sub))) == 3
    label = nyud.read_label(fake_root, "5001")
    assert label.dtype == np.uint8 and label.shape == (48, 64)
    assert set(np.unique(label)) <= set(range(40)) | {255}
    assert 255 in label and 0 in label  # void border and wall
    raw_segmentation = scipy.io.loadmat(
        os.path.join(fake_root, "segmentation", "img_5001.mat"))["segmentation"]
    assert raw_segmentation.max() <= 40 and 0 in raw_segmentation
    _, depth, _ = nyud.fake_scene(seed=0)
    np.testing.assert_allclose(nyud.read_depth(fake_root, "5001"), depth, atol=1e-3)
    assert nyud.read_hha(fake_root, "5001").shape == (48, 64, 3)


def test_split_files_of_the_folder_take_precedence(fake_root):
    assert nyud.nyud_ids(fake_root, "test") == ["5003"]
    assert nyud.nyud_ids(fake_root, "train") == ["5001", "5002"]
    assert len(nyud.nyud_ids("/nonexistent", "test")) == 654


@pytest.mark.parametrize("modality,channels", [("rgb", 3), ("hha", 3), ("rgbd", 4)])
def test_load_example_channels(fake_root, modality, channels):
    inputs, label = nyud.load_example(fake_root, "5002", modality)
    assert inputs.shape == (48, 64, channels) and inputs.dtype == np.float32
    assert label.shape == (48, 64)


def test_preprocessing_matches_the_reference_means():
    rgb = np.array([[[10, 20, 30]]], np.uint8)
    np.testing.assert_allclose(nyud.preprocess_rgb(rgb)[0, 0],
                               [30 - 116.190, 20 - 97.203, 10 - 92.318], rtol=1e-6)
    depth = np.array([[0.0, 2.0]], np.float32)
    log_depth = nyud.preprocess_depth(depth)
    assert log_depth.shape == (1, 2, 1)
    assert log_depth[0, 0, 0] == 0.0
    assert log_depth[0, 1, 0] == pytest.approx(np.log(2000.0) - 7.844, rel=1e-5)


def test_fusion_dataset(fake_root):
    ds = nyud.make_nyud_dataset(fake_root, "train", modality="fusion", batch_size=2,
                                shuffle=True, seed=0, flip=True)
    inputs, labels = next(iter(ds))
    assert sorted(inputs) == ["hha", "rgb"]
    assert inputs["rgb"].shape == (2, 48, 64, 3) and inputs["hha"].shape == (2, 48, 64, 3)
    assert labels.shape == (2, 48, 64) and labels.dtype.name == "int32"


def _epochs(ds, count):
    return [[(inputs["rgb"].numpy(), inputs["hha"].numpy(), labels.numpy())
             for inputs, labels in ds] for _ in range(count)]


def test_seeded_flips_are_reproducible_and_keep_inputs_aligned(fake_root):
    """The same seed gives the same batches (flips included), run after run."""
    def make(seed):
        return nyud.make_nyud_dataset(fake_root, "train", modality="fusion", shuffle=True,
                                      seed=seed, flip=True)

    first, second = _epochs(make(3), 4), _epochs(make(3), 4)
    for epoch_a, epoch_b in zip(first, second):
        for arrays_a, arrays_b in zip(epoch_a, epoch_b):
            for a, b in zip(arrays_a, arrays_b):
                np.testing.assert_array_equal(a, b)
    # Flips happen, and flip the RGB, the HHA and the label of an example together.
    plain = {}
    for image_id in ("5001", "5002"):
        inputs, label = nyud.load_example(fake_root, image_id, "fusion")
        plain[label.tobytes()] = (inputs["rgb"], inputs["hha"])
    flipped = 0
    for rgb, hha, label in (arrays for epoch in first for arrays in epoch):
        key = label[0].astype(np.uint8)
        if key.tobytes() not in plain:
            key = key[:, ::-1]
            rgb, hha = rgb[:, :, ::-1], hha[:, :, ::-1]
            flipped += 1
        np.testing.assert_array_equal(rgb[0], plain[key.tobytes()][0])
        np.testing.assert_array_equal(hha[0], plain[key.tobytes()][1])
    assert 0 < flipped < 8


# Review of audit 5: the "kept N files" log line counts the HHA files it keeps too.


def test_convert_labeled_mat_counts_every_kept_file(tmp_path, caplog):
    mat, mapping = str(tmp_path / "labeled.mat"), str(tmp_path / "mapping.mat")
    nyud.write_fake_labeled_mat(mat, num_images=2, height=16, width=20)
    nyud.write_fake_class_mapping(mapping)
    out = str(tmp_path / "out")
    nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False)
    with caplog.at_level(logging.INFO, logger="keras_fcn"):
        nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False)
    kept = [r.getMessage() for r in caplog.records if "kept" in r.getMessage()]
    # 2 images x (rgb, depth, hha, label)
    assert kept == [f"NYUDv2: kept 8 files of {out} that existed already (overwrite=True "
                    "replaces them)"]


# Audit round 5 leftovers: the conversion keeps a trainval.txt consistent.


def test_conversion_keeps_an_existing_trainval_file_consistent(tmp_path, labeled_mat):
    """nyud_ids reads trainval.txt before train.txt + val.txt: a stale one was left listing
    other images than the split files the conversion wrote."""
    mat, mapping = labeled_mat
    out = tmp_path / "nyud"
    out.mkdir()
    (out / "trainval.txt").write_text("5001\n5002\n5003\n")
    with pytest.raises(FileExistsError, match=re.escape(f"'{out / 'trainval.txt'}' (3 ids")):
        nyud.convert_labeled_mat(mat, mapping, str(out), indices=[0, 1, 2, 3], verbose=False)
    nyud.convert_labeled_mat(mat, mapping, str(out), indices=[0, 1, 2, 3], with_hha=False,
                             verbose=False, overwrite=True)
    assert nyud.nyud_ids(str(out), "trainval") == (nyud.nyud_ids(str(out), "train")
                                                    + nyud.nyud_ids(str(out), "val"))
    # Without a trainval.txt of its own the folder gets none: train + val are read instead.
    fresh = tmp_path / "fresh"
    nyud.convert_labeled_mat(mat, mapping, str(fresh), indices=[0], with_hha=False,
                             verbose=False)
    assert not (fresh / "trainval.txt").exists()


# Data / datasets / weights audit, round 4: each test failed on the code before its fix.


@pytest.mark.parametrize("modality, kind, size", [("hha", "hha", (30, 22)),
                                                  ("fusion", "rgb", (34, 26)),
                                                  ("rgbd", "depth", (34, 26))])
def test_nyud_load_example_checks_sizes(tmp_path, modality, kind, size):
    from keras_fcn.datasets import nyud

    root = str(tmp_path / "nyud")
    nyud.write_fake_nyud(root, num_images=2, height=24, width=32)
    image_id = nyud.nyud_ids(root, "train")[0]
    folder = {"rgb": "images", "hha": "hha", "depth": "depth"}[kind]
    path = os.path.join(root, "data", folder, f"img_{image_id}.png")
    Image.open(path).resize(size).save(path)
    expected = re.escape(f"NYUDv2 {kind} of '{image_id}' is ({size[1]}, {size[0]}) but its "
                         "label is (24, 32)")
    with pytest.raises(ValueError, match=expected):
        nyud.load_example(root, image_id, modality)
    with pytest.raises(Exception, match=expected):
        next(iter(nyud.make_nyud_dataset(root, "train", modality=modality)))
    inputs, label = nyud.load_example(root, image_id, "rgb" if kind != "rgb" else "hha")
    assert label.shape == (24, 32) and inputs.shape == (24, 32, 3)


def _fake_mat(tmp_path, num_images=5):
    from keras_fcn.datasets import nyud

    mat, mapping = str(tmp_path / "labeled.mat"), str(tmp_path / "mapping.mat")
    nyud.write_fake_labeled_mat(mat, num_images=num_images, height=16, width=20)
    nyud.write_fake_class_mapping(mapping)
    return mat, mapping


def test_convert_labeled_mat_keeps_the_users_split_files(tmp_path):
    from keras_fcn.datasets import nyud

    mat, mapping = _fake_mat(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.txt").write_text("5001\n5002\n")
    with pytest.raises(FileExistsError, match=re.escape(
            f"NYUDv2 split file(s) already exist with other ids: '{out / 'train.txt'}' (2 ids, "
            "would be 1). Pass overwrite=True")):
        nyud.convert_labeled_mat(mat, mapping, str(out), indices=[0, 3], verbose=False)
    assert (out / "train.txt").read_text() == "5001\n5002\n"
    assert not (out / "segmentation").exists()  # refused before converting
    assert nyud.convert_labeled_mat(mat, mapping, str(out), indices=[0, 3], verbose=False,
                                    overwrite=True) == 2
    assert (out / "train.txt").read_text() == "5004\n"


def test_convert_labeled_mat_with_indices_lists_only_converted_ids(tmp_path):
    from keras_fcn.datasets import nyud

    mat, mapping = _fake_mat(tmp_path)
    out = str(tmp_path / "out")
    nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 2], with_hha=False, verbose=False)
    listed = {s: nyud.nyud_ids(out, s) for s in ("train", "val", "test")}
    assert listed == {"train": ["5003"], "val": [], "test": ["5001"]}
    labels = [y.numpy().shape for _, y in nyud.make_nyud_dataset(out, "train")]
    assert labels == [(1, 16, 20)]
    # A later call adds its ids to those already converted; the same call again is a no-op.
    nyud.convert_labeled_mat(mat, mapping, out, indices=[3], with_hha=False, verbose=False,
                             overwrite=True)
    assert nyud.nyud_ids(out, "train") == ["5003", "5004"]
    nyud.convert_labeled_mat(mat, mapping, out, indices=[3], with_hha=False, verbose=False)


def test_convert_labeled_mat_keeps_existing_files_unless_overwrite(tmp_path):
    """The authors' HHA and cropped images in the folder are not replaced by this package's;
    the same call again writes nothing; overwrite=True replaces them."""
    from keras_fcn.datasets import nyud
    from keras_fcn.datasets.nyud.layout import example_paths

    mat, mapping = _fake_mat(tmp_path)
    out = str(tmp_path / "out")
    nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False)
    paths = example_paths(out, "5001")
    theirs = np.full((16, 20, 3), 7, np.uint8)
    for kind in ("hha", "rgb"):
        Image.fromarray(theirs).save(paths[kind])
    computed = np.asarray(Image.open(example_paths(out, "5002")["hha"]))
    assert nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False) == 2
    for kind in ("hha", "rgb"):
        np.testing.assert_array_equal(np.asarray(Image.open(paths[kind])), theirs)
    np.testing.assert_array_equal(np.asarray(Image.open(example_paths(out, "5002")["hha"])),
                                  computed)
    nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False, overwrite=True)
    assert not (np.asarray(Image.open(paths["hha"])) == 7).all()
    assert not (np.asarray(Image.open(paths["rgb"])) == 7).all()
