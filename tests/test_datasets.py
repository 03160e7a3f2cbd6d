"""Tests of keras_fcn.datasets and keras_fcn.synthetic on tiny fake trees (never downloads)."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fcn import data, datasets
from keras_fcn.datasets import shapes as synthetic
from keras_fcn.datasets.pairs import folder_info


def _save_palette_png(path, indices):
    mask = Image.fromarray(np.asarray(indices, np.uint8), mode="P")
    mask.putpalette([c for colour in datasets.voc_palette() for c in colour])
    mask.save(path)


def _fake_voc(root, ids_by_split, size=(20, 24)):
    """Writes VOCdevkit/VOC2012 with JPEG images and palette masks (label = index % 21)."""
    voc = os.path.join(root, "VOCdevkit", "VOC2012")
    for sub in ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation")):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    for split, ids in ids_by_split.items():
        with open(os.path.join(voc, "ImageSets", "Segmentation", f"{split}.txt"), "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
        for n, image_id in enumerate(ids):
            Image.fromarray(np.full(size + (3,), 40 * n % 256, np.uint8)).save(
                os.path.join(voc, "JPEGImages", f"{image_id}.jpg"))
            mask = np.full(size, n % 21, np.uint8)
            mask[0] = 255
            _save_palette_png(os.path.join(voc, "SegmentationClass", f"{image_id}.png"), mask)
    return voc


def test_voc_palette_and_classes():
    palette = datasets.voc_palette()
    assert len(palette) == 256 and len(datasets.VOC_CLASSES) == 21
    assert palette[1] == (128, 0, 0) and palette[15] == (192, 128, 128)  # aeroplane, person
    assert palette[20] == (0, 64, 128) and palette[255] == (224, 224, 192)  # tv, void
    assert len(set(palette)) == 256


def test_seg11valid_ids():
    ids = datasets.seg11valid_ids()
    assert len(ids) == 736 and len(set(ids)) == 736 and ids == sorted(ids)
    assert ids[0] == "2007_000033" and ids[-1] == "2011_003271"


def test_voc_reader_and_pipeline(tmp_path):
    _fake_voc(tmp_path, {"train": ["2007_000001", "2007_000002"], "val": ["2007_000033"]})
    for root in (tmp_path, tmp_path / "VOCdevkit", tmp_path / "VOCdevkit" / "VOC2012"):
        pairs, info = datasets.voc_pairs(root, "train")
        assert [os.path.basename(p[1]) for p in pairs] == ["2007_000001.png", "2007_000002.png"]
    assert info.num_classes == 21 and info.ignore_label == 255
    ds = data.make_dataset(pairs, **info.dataset_kwargs())
    masks = [m.numpy()[0] for _, m in ds]
    assert masks[1][1:].tolist() == np.ones((19, 24)).tolist() and (masks[1][0] == 255).all()
    with pytest.raises(ValueError, match="Received: split='test'"):
        datasets.voc_pairs(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="No VOC2012 layout"):
        datasets.voc_pairs(tmp_path / "nowhere")


def test_seg11valid_pairs(tmp_path):
    _fake_voc(tmp_path, {"val": ["2007_000033"]})
    pairs, _ = datasets.seg11valid_pairs(tmp_path)
    assert len(pairs) == 736
    assert pairs[0][0].endswith(os.path.join("VOC2012", "JPEGImages", "2007_000033.jpg"))
    assert os.path.isfile(pairs[0][1])


def test_sbd_reader_reads_mat_masks(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    root = tmp_path / "benchmark_RELEASE" / "dataset"
    for sub in ("img", "cls"):
        (root / sub).mkdir(parents=True)
    labels = np.arange(6 * 8, dtype=np.uint8).reshape(6, 8) % 21
    labels[2, 3] = 255
    (root / "train.txt").write_text("2008_000002\n")
    (root / "val.txt").write_text("")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "img" / "2008_000002.jpg")
    scipy_io.savemat(root / "cls" / "2008_000002.mat", {"GTcls": {"Segmentation": labels}})
    pairs, info = datasets.sbd_pairs(tmp_path, "train")
    assert info.mask_format == "sbd_mat" and len(pairs) == 1
    (_, mask), = data.make_dataset(pairs, **info.dataset_kwargs())
    np.testing.assert_array_equal(mask.numpy()[0], labels)


def test_folder_pairs_reports_unpaired(tmp_path, caplog):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in ("a", "b", "lonely_image"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / f"{stem}.jpg")
    for stem in ("a", "b", "lonely_mask"):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(masks / f"{stem}.png")
    with pytest.raises(ValueError, match=r"2 unpaired.*lonely_image\.jpg.*lonely_mask\.png"):
        datasets.folder_pairs(images, masks)
    pairs = datasets.folder_pairs(images, masks, on_unpaired="warn")
    assert [os.path.basename(p) for pair in pairs for p in pair] == ["a.jpg", "a.png", "b.jpg",
                                                                      "b.png"]
    assert "lonely_image.jpg" in caplog.text


def test_list_file_with_unpaired_line(tmp_path):
    (tmp_path / "train.txt").write_text("a.png a_mask.png\nb.png\n")
    with pytest.raises(ValueError, match=r"Line 2 of '.*train\.txt'.*Received: 'b\.png'"):
        datasets.list_file_pairs(tmp_path, "train.txt")


def test_camvid_reader_on_real_data(camvid_dir):
    train, info = datasets.camvid_pairs(camvid_dir, "train")
    val, _ = datasets.camvid_pairs(camvid_dir, "val")
    assert len(train) == 367 and len(val) == 101
    assert info.num_classes == 11 and info.ignore_label == 11 and len(info.class_names) == 11
    assert all(os.path.isfile(p) for pair in train[:5] + val[:5] for p in pair)
    ds = data.make_dataset(val[:8], **info.dataset_kwargs(), batch_size=4, crop_size=(360, 480),
                           flip=True, scale_range=(0.75, 1.25), seed=0)
    image, mask = next(iter(ds))
    assert image.shape == (4, 360, 480, 3) and image.dtype == tf.float32
    assert mask.shape == (4, 360, 480) and mask.dtype == tf.int32
    assert 0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 255
    values = set(np.unique(mask.numpy()))
    assert values <= set(range(12)) and len(values) > 5


def test_from_tfds_adapter_with_remap():
    features = {
        "image": np.zeros((2, 5, 6, 3), np.uint8),
        "segmentation_mask": np.array([[[1], [2], [3]] * 10] * 2, np.uint8).reshape(2, 5, 6, 1),
        "file_name": np.array([b"a", b"b"]),
    }
    pets = tf.data.Dataset.from_tensor_slices(features)
    ds = datasets.from_tfds(pets, label_remap=datasets.OXFORD_PET_REMAP)
    image, mask = next(iter(ds))
    assert image.shape == (5, 6, 3) and mask.shape == (5, 6) and mask.dtype == tf.int32
    expected = np.vectorize({1: 1, 2: 0, 3: 255}.get)(features["segmentation_mask"][0, ..., 0])
    np.testing.assert_array_equal(mask.numpy(), expected)
    batches = data.prepare_dataset(ds, batch_size=2, crop_size=4, flip=True, seed=0)
    image, mask = next(iter(batches))
    assert image.shape == (2, 4, 4, 3) and set(np.unique(mask.numpy())) <= {0, 1, 255}


def test_voc_tfds_builder_on_fake_tree(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    _fake_voc(tmp_path / "manual", {"train": ["2007_000001", "2007_000002"],
                                    "val": ["2007_000033", "2007_000042"]})
    builder = datasets.voc_tfds_builder("voc2012", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / "manual")))
    assert builder.info.splits["train"].num_examples == 2
    assert builder.info.splits["seg11valid"].num_examples == 2  # the ids present in the tree
    elements = list(datasets.from_tfds(builder.as_dataset(split="val")))
    masks = sorted((m.numpy() for _, m in elements), key=lambda m: m[1, 0])
    assert [int(m[1, 0]) for m in masks] == [0, 1]  # palette indices, not colours
    assert all((m[0] == 255).all() for m in masks)


def test_shapes_dataset_is_deterministic_and_readable(tmp_path):
    # its speed (goal: under 5 s) is benchmarks/data_prep.py's, not a timed assertion here
    info = synthetic.make_shapes_dataset(tmp_path / "shapes", num_train=240, num_val=60, size=64)
    train, _ = synthetic.shapes_pairs(tmp_path / "shapes", "train")
    val, _ = synthetic.shapes_pairs(tmp_path / "shapes", "val")
    assert len(train) == 240 and len(val) == 60 and info.num_classes == 4
    report = data.validate_pairs(train + val, num_classes=4)
    assert report.num_bad == 0
    masks = np.stack([data.read_mask(m) for _, m in train])
    assert set(np.unique(masks)) == {0, 1, 2, 3, 255}
    assert 0.01 < (masks == 255).mean() < 0.2  # void only along borders
    image, mask = synthetic.shapes_example(3, seed=0)
    np.testing.assert_array_equal(np.asarray(Image.open(train[3][0])), image)
    np.testing.assert_array_equal(np.asarray(Image.open(train[3][1])), mask)
    other_image, _ = synthetic.shapes_example(3, seed=1)
    assert not np.array_equal(image, other_image)


def test_shapes_classes_are_separable_by_colour():
    images, masks = synthetic.shapes_arrays(40, size=32, seed=0)
    means = [images[masks == label].mean(axis=0) for label in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.abs(means[a] - means[b]).max() > 40, (a, b)


def test_shapes_in_memory_dataset():
    ds = synthetic.shapes_tf_dataset(10, size=32, batch_size=4, flip=True, shuffle=True)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [x.shape for x, _ in batches] == [(4, 32, 32, 3), (4, 32, 32, 3), (2, 32, 32, 3)]
    assert batches[0][1].dtype == np.int32
    again = [(x.numpy(), y.numpy()) for x, y in synthetic.shapes_tf_dataset(
        10, size=32, batch_size=4, flip=True, shuffle=True)]
    np.testing.assert_array_equal(batches[0][1], again[0][1])


def _values(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_load_split_shapes_in_memory_and_on_disk_agree(tmp_path):
    decoded, info, count = datasets.load_split("shapes", "val", shapes_count=3, shapes_size=32)
    assert count == 3 and info == synthetic.SHAPES_INFO
    images, masks = synthetic.shapes_arrays(3, 32, 0, synthetic.VAL_OFFSET)
    in_memory = _values(decoded)
    np.testing.assert_array_equal(np.stack([x for x, _ in in_memory]), images)
    np.testing.assert_array_equal(np.stack([y for _, y in in_memory]), masks)
    synthetic.make_shapes_dataset(tmp_path, num_train=2, num_val=3, size=32)
    on_disk, _, count = datasets.load_split("shapes", "val", data_dir=tmp_path)
    assert count == 3
    for (x, y), (image, mask) in zip(_values(on_disk), in_memory):
        np.testing.assert_array_equal(x, image)
        np.testing.assert_array_equal(y, mask)
    assert datasets.load_split("shapes", "train")[2] == 300  # the training default


def test_load_split_folder_layout_and_errors(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / "val" / sub).mkdir(parents=True)
    mask = np.array([[0, 1, 2], [2, 255, 0]], np.uint8)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "val" / "images" / "a.png")
    Image.fromarray(mask).save(tmp_path / "val" / "masks" / "a.png")
    decoded, info, count = datasets.load_split("folder", "val", data_dir=tmp_path,
                                               num_classes=3)
    assert count == 1 and info.class_names == ("0", "1", "2") and len(info.palette) == 3
    np.testing.assert_array_equal(_values(decoded)[0][1], mask)
    with pytest.raises(ValueError, match="needs --num_classes. Received: num_classes=None"):
        datasets.load_split("folder", "val", data_dir=tmp_path)
    with pytest.raises(ValueError, match="needs --data_dir. Received: data_dir=None"):
        datasets.load_split("camvid", "train")
    with pytest.raises(ValueError, match=r"Expected one of \('shapes'.*dataset='cityscapes'"):
        datasets.load_split("cityscapes", "train", data_dir=tmp_path)


def test_check_counts_and_names_bad_files(tmp_path, capsys):
    synthetic.make_shapes_dataset(tmp_path, num_train=3, num_val=2, size=32)
    bad_mask = tmp_path / "val" / "masks" / "val_00001.png"
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(bad_mask)
    reports = datasets.check("shapes", tmp_path)
    assert reports["train"].num_bad == 0 and len(reports["train"].good) == 3
    assert reports["val"].num_bad == 1 and "val_00001.png' has value 9" in reports["val"].bad[0][1]
    out = capsys.readouterr().out
    assert "shapes train: 3 examples, all good" in out and "shapes val: 2 examples, 1 bad" in out
    nyud_root = datasets.nyud.write_fake_nyud(tmp_path / "nyud", num_images=2, height=24,
                                              width=32)
    os.remove(os.path.join(nyud_root, "data", "hha", "img_5002.png"))
    reports = datasets.check("nyud", nyud_root, ["train", "test"])
    assert reports["train"].good == ["5001"] and reports["train"].num_bad == 0
    assert reports["test"].good == [] and "hha/img_5002.png" in reports["test"].bad[0][1]
    datasets.siftflow.write_fake_siftflow(tmp_path / "sf", num_train=2, num_test=1, size=16)
    reports = datasets.check("siftflow", tmp_path / "sf")
    assert [len(r.good) for r in reports.values()] == [2, 1]
    with pytest.raises(ValueError, match="name='kitti'"):
        datasets.check("kitti", tmp_path)


# Review 7: argument checks that disagreed between modules.


def test_siftflow_and_nyud_images_are_read_as_the_training_pipelines_read_them(tmp_path):
    from PIL import Image

    from keras_fcn.datasets.common import read_image_file

    path = str(tmp_path / "grey16.png")
    Image.fromarray(np.full((3, 4), 40000, np.uint16)).save(path)
    np.testing.assert_array_equal(read_image_file(path, "RGB"), np.full((3, 4, 3), 156))
    (tmp_path / "bad.png").write_bytes(b"xx")
    with pytest.raises(ValueError, match="bad.png"):
        read_image_file(str(tmp_path / "bad.png"), "RGB")


# Data / datasets / weights audit, round 4: each test failed on the code before its fix.


def _image(path, shape=(8, 8)):
    Image.fromarray(np.zeros(shape + (3,), np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("on_unpaired", ["error", "warn"])
def test_folder_pairs_refuses_two_files_with_one_stem(tmp_path, on_unpaired):
    from keras_fcn.datasets import folder_pairs

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _image(tmp_path / "images" / "a.jpg")
    mask = np.zeros((8, 8), np.uint8)
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    Image.fromarray(mask + 1).save(tmp_path / "masks" / "a.bmp")
    bmp, png = tmp_path / "masks" / "a.bmp", tmp_path / "masks" / "a.png"
    with pytest.raises(ValueError, match=f"'{bmp}' and '{png}' have the same stem 'a'"):
        folder_pairs(tmp_path / "images", tmp_path / "masks", on_unpaired=on_unpaired)
    bmp.unlink()
    assert folder_pairs(tmp_path / "images", tmp_path / "masks") == [
        (os.path.join(tmp_path / "images", "a.jpg"), os.path.join(tmp_path / "masks", "a.png"))]


def test_voc_tfds_builder_refuses_a_missing_listed_image(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_fcn.datasets import voc_tfds_builder

    voc = tmp_path / "manual" / "VOCdevkit" / "VOC2012"
    ids = ["2007_000032", "2007_000033", "2007_000039"]
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    for image_id in ids:
        _image(voc / "JPEGImages" / f"{image_id}.jpg")
        mask = Image.fromarray(np.ones((8, 8), np.uint8), "P")
        mask.putpalette([0] * 768)
        mask.save(voc / "SegmentationClass" / f"{image_id}.png")
    for split in ("train", "val"):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (voc / "JPEGImages" / f"{ids[2]}.jpg").unlink()
    builder = voc_tfds_builder("voc2012", data_dir=str(tmp_path / "tfds"))
    missing = voc / "JPEGImages" / f"{ids[2]}.jpg"
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"Image '{missing}' (mask '{voc / 'SegmentationClass' / ids[2]}.png') is listed in "
            "the voc2012 'train' split but does not exist")):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(tmp_path / "manual")))


def test_remap_labels_refuses_negative_ids():
    from keras_fcn.datasets.tfds import OXFORD_PET_REMAP, remap_labels

    got = remap_labels(tf.constant([[0, 1, 2, 3, 7]]), OXFORD_PET_REMAP).numpy().tolist()
    assert got == [[0, 1, 0, 255, 7]]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="remap_labels: the mask has negative values"):
        remap_labels(tf.constant([[-1, 1, 2, 3]]), OXFORD_PET_REMAP)


def _own_folder(root, masks, *, colours=None, ext=".png"):
    """`root/{train,val}/{images,masks}`: one 6x8 image per mask (of class ids, or painted with
    `colours`, a class id -> (r, g, b) table)."""
    for split in ("train", "val"):
        os.makedirs(root / split / "images")
        os.makedirs(root / split / "masks")
        for n, mask in enumerate(masks):
            mask = np.asarray(mask, np.uint8)
            Image.fromarray(np.zeros(mask.shape + (3,), np.uint8)).save(
                root / split / "images" / f"im{n}.png")
            pixels = mask if colours is None else np.array(colours, np.uint8)[mask]
            Image.fromarray(pixels).save(root / split / "masks" / f"im{n}{ext}")


def test_folder_of_rgb_colour_masks_with_classes_json(tmp_path):
    """Colour masks (as CamVid's originals) had no way through --dataset=folder: a
    classes.json in the folder gives the names, the colours and the void colour."""
    import json

    masks = np.array([[0, 1, 2, 3], [3, 2, 1, 0]] * 3)  # 3: void
    _own_folder(tmp_path, [masks, masks[::-1]],
                colours=[(128, 128, 128), (128, 0, 0), (192, 192, 128), (0, 0, 0)])
    (tmp_path / "classes.json").write_text(json.dumps({
        "classes": ["Sky", "Building", "Pole"], "mask_format": "rgb", "void_color": [0, 0, 0],
        "palette": [[128, 128, 128], [128, 0, 0], [192, 192, 128]]}))
    decoded, info, count = datasets.load_split("folder", "train", data_dir=str(tmp_path))
    assert (info.class_names, info.num_classes, info.ignore_label) == (
        ("Sky", "Building", "Pole"), 3, 3)
    got = [m.numpy() for _, m in decoded]
    np.testing.assert_array_equal(got, [masks, masks[::-1]])
    pairs, _ = datasets.file_pairs("folder", "val", str(tmp_path))
    np.testing.assert_array_equal(data.make_pydataset(pairs, **info.dataset_kwargs())[0][1][0],
                                  masks)
    assert datasets.check("folder", str(tmp_path))["val"].num_bad == 0
    with pytest.raises(ValueError, match=r"num_classes=4 but '.*classes\.json' names 3 classes"):
        datasets.load_split("folder", "train", data_dir=str(tmp_path), num_classes=4)
    # without its void colour, the black pixels are named, with the way to map them to void
    (tmp_path / "classes.json").write_text(json.dumps({
        "classes": ["Sky", "Building", "Pole"], "mask_format": "rgb",
        "palette": [[128, 128, 128], [128, 0, 0], [192, 192, 128]]}))
    report = datasets.check("folder", str(tmp_path))["train"]
    assert report.num_bad == 2
    assert re.search(r"has colour \(0, 0, 0\) at \(0, 3\) that is not in the palette; add it to "
                     r"the palette, or map it to the ignore label: \"void_color\": \[0, 0, 0\] "
                     r"in a folder data set's classes\.json", report.bad[0][1])


@pytest.mark.parametrize("spec, message", [
    ({"classes": ["a", "b"], "colours": []}, r"unknown key\(s\) \['colours'\]"),
    ({"classes": "ab"}, r"\"classes\" must be a non-empty list of class names"),
    ({"classes": ["a", "b"], "mask_format": "rgb"}, r"colour masks .* need a \"palette\""),
    ({"classes": ["a", "b"], "palette": [[0, 0, 0]]}, r"one \[r, g, b\] per class \(2\)"),
    ({"classes": ["a", "b"], "palette": [[0, 0, 0], [0, 0, 300]]}, r"palette\[1\] must be"),
    ({"classes": ["a", "b"], "void_color": [0, 0, 0]}, r"\"void_color\" is for colour masks"),
])
def test_bad_classes_json_is_named(tmp_path, spec, message):
    import json

    (tmp_path / "classes.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message):
        folder_info(str(tmp_path))


def test_classes_json_names_index_mask_classes(tmp_path):
    import json

    _own_folder(tmp_path, [np.array([[0, 1], [255, 1]])])
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["ground", "tree"]}))
    _, info, _ = datasets.load_split("folder", "val", data_dir=str(tmp_path))
    assert (info.class_names, info.ignore_label, info.mask_format) == (("ground", "tree"), 255,
                                                                      "index")


def test_wrong_path_in_a_list_file_is_named_before_decoding(tmp_path):
    _own_folder(tmp_path, [np.zeros((2, 2))])
    (tmp_path / "train.txt").write_text("train/images/im0.png train/masks/im1.png\n")
    expected = (r"mask file '.*train/masks/im1\.png' \(paired with image '.*im0\.png'\) does "
                r"not exist; the paths of a list file are relative to data_dir='.*'")
    with pytest.raises(FileNotFoundError, match=expected):
        datasets.load_split("folder", "train", data_dir=str(tmp_path), num_classes=2)


def test_unpaired_image_names_its_jpeg_mask(tmp_path):
    _own_folder(tmp_path, [np.zeros((2, 2))])
    os.rename(tmp_path / "train" / "masks" / "im0.png", tmp_path / "train" / "masks" / "im0.jpg")
    with pytest.raises(ValueError, match=r"1 unpaired file.*im0\.png'\. Not read as masks "
                                         r"\(masks must be \.png, \.bmp, \.mat files; JPEG is "
                                         r"lossy.*\): '.*masks/im0\.jpg'"):
        datasets.split_pairs(str(tmp_path), "train")


def test_a_folder_without_classes_json_shows_its_classes_in_the_voc_colours(tmp_path):
    """The classes of a data set without metadata had random colours (some near each other);
    the VOC colours are distinct and those of VOC-style palette masks (labelme's too)."""
    from keras_fcn.labels import voc_palette

    info = folder_info(str(tmp_path), num_classes=4)
    assert info.palette == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert info.palette == tuple(tuple(c) for c in voc_palette(4))
    assert info.class_names == ("0", "1", "2", "3") and info.ignore_label == 255
