"""Seeded, time-bounded fuzz tests of the readers, loaders and CLIs (issue 8).

Every case must end in a correct result or a clear exception (ValueError / OSError subclasses
or the module's own error) whose message names the file or the bad value; never a hang, an
interpreter crash or a partial output file. Native decoders on corrupt bytes (TF image
decoding, the LiteRT interpreter) run in a subprocess (tests/fuzz_cases.py). Known failures of
modules owned elsewhere are strict xfails; docs/reliability.md lists them.

    python -m pytest tests/test_fuzz.py -q        # the case counts are printed at the end
    KERAS_FCN_FUZZ_COUNTS=counts.json python -m pytest tests/test_fuzz.py   # and saved as JSON
"""

import collections
import io
import json
import os
import random
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from tiny import saved_raw_rgb_fcn
from PIL import Image

import fuzz_cases as fc

SEED = fc.SEED
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
H, W = 16, 20  # size of every generated image and mask
NUM_CLASSES = 3
COUNTS = fc.COUNTS  # cases tried per target, printed by conftest's terminal summary
CASE_SECONDS = 20  # per-case limit of the in-process cases (SIGALRM)
WORKER_SECONDS = 240  # limit of the native-decoder subprocess
CLEAR_ERRORS = (ValueError, OSError)


def _names(message, *paths):
    return any(os.fspath(p) in message for p in paths)


def _rng(label):
    return random.Random(f"{SEED}:{label}")


def _leftovers(folder):
    """Temporary, hidden or empty files under `folder` (a failed write leaves these)."""
    found = []
    for directory, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(directory, name)
            if name.startswith(".") or name.endswith(".tmp") or os.path.getsize(path) == 0:
                found.append(path)
    return found


# --------------------------------------------------------------------------------------------
# The corpus: one folder of good and bad images and masks, shared by the tests
# --------------------------------------------------------------------------------------------


def _image_cases(rng):
    """{label: (bytes, extension)} of damaged, odd and non-image files with image names."""
    rgb = fc.random_rgb(rng, H, W)
    png, jpeg = fc.encode(rgb), fc.encode(rgb, "JPEG", quality=90)
    cases = {}
    for fmt, data, ext in (("png", png, ".png"), ("jpeg", jpeg, ".jpg")):
        for label, corrupt in (fc.truncations(data, rng, 6) + fc.byte_flips(data, rng, 6)
                               + fc.insertions(data, rng, 3)):
            cases[f"{fmt}_{label}"] = (corrupt, ext)
    for label, data in fc.non_images().items():
        cases[f"nonimage_{label}_png"] = (data, ".png")
    cases["nonimage_text_jpg"] = (fc.NON_IMAGES["text"], ".jpg")
    cases["nonimage_html_jpg"] = (fc.NON_IMAGES["html"], ".jpg")
    cases["bomb_rgb"] = (fc.bomb_png(color_type=2), ".png")
    cases["bomb_gray_40000"] = (fc.bomb_png(40_000, 40_000), ".png")
    cases.update(fc.odd_mode_images(rng, H, W))
    return cases


def _mask_cases(rng):
    """{label: (bytes, extension, expected)}; expected: "good", "bad" or None (either)."""
    ok = np.random.default_rng(0).integers(0, NUM_CLASSES, (H, W)).astype(np.uint8)
    png = fc.mask_png(ok)
    palette = Image.fromarray(ok, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    cases = {
        "valid": (png, ".png", "good"),
        "palette_indices": (buffer.getvalue(), ".png", "good"),
        "all_ignore": (fc.mask_png(np.full((H, W), 255, np.uint8)), ".png", "good"),
        "i16_in_range": (fc.mask_png(ok.astype(np.uint16)), ".png", "good"),
        "class_out_of_range": (fc.mask_png(np.where(ok == 1, 7, ok).astype(np.uint8)), ".png",
                               "value 7"),
        "i16_300": (fc.mask_png(np.full((H, W), 300, np.uint16)), ".png", "value 300"),
        "negative_int32_tiff": (fc.signed_mask_tiff(np.where(ok == 2, -1, ok.astype(np.int32))), ".tif",
                                "value -1"),
        "rgb_mask": (fc.encode(np.stack([ok] * 3, -1)), ".png", "mode 'RGB'"),
        "rgba_mask": (fc.encode(np.stack([ok] * 3, -1), mode="RGBA"), ".png", "mode 'RGBA'"),
        "la_mask": (fc.encode(ok, mode="LA"), ".png", "mode 'LA'"),
        "one_bit_mask": (fc.encode(ok.astype(bool)), ".png", None),
        "size_mismatch": (fc.mask_png(np.zeros((H, W + 1), np.uint8)), ".png", "is 16x20"),
        "bomb": (fc.bomb_png(), ".png", "bad"),
    }
    for label, data in fc.truncations(png, rng, 6) + fc.byte_flips(png, rng, 6):
        cases[f"png_{label}"] = (data, ".png", None)
    for label, data in fc.non_images().items():
        cases[f"nonimage_{label}"] = (data, ".png", "bad")
    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Writes the files; returns a dict of paths and the expectations of each case."""
    folder = tmp_path_factory.mktemp("fuzz corpus ü")
    rng = _rng("corpus")
    good_rgb = fc.random_rgb(rng, H, W)
    good_mask = np.random.default_rng(1).integers(0, NUM_CLASSES, (H, W)).astype(np.uint8)
    corpus = {
        "folder": str(folder),
        "good_image": fc.write(folder / "good.png", fc.encode(good_rgb)),
        "good_jpeg": fc.write(folder / "good.jpg", fc.encode(good_rgb, "JPEG")),
        "good_mask": fc.write(folder / "good_mask.png", fc.mask_png(good_mask)),
        "images": {}, "masks": {}, "mask_expect": {},
    }
    for i, (label, (data, ext)) in enumerate(sorted(_image_cases(rng).items())):
        corpus["images"][label] = fc.write(folder / "images" / f"{i:03d}_{label}{ext}", data)
    for i, (label, (data, ext, expect)) in enumerate(sorted(_mask_cases(rng).items())):
        corpus["masks"][label] = fc.write(folder / "masks" / f"{i:03d}_{label}{ext}", data)
        corpus["mask_expect"][label] = expect
    # Missing files and folders named like files.
    corpus["images"]["missing"] = str(folder / "images" / "missing.png")
    corpus["masks"]["missing"] = str(folder / "masks" / "missing.png")
    corpus["mask_expect"]["missing"] = "does not exist"
    for kind in ("images", "masks"):
        directory = folder / kind / "folder_named.png"
        directory.mkdir()
        corpus[kind]["folder_named_like_file"] = str(directory)
    corpus["mask_expect"]["folder_named_like_file"] = "does not exist"
    return corpus


def _fully_decodes(path):
    with Image.open(path) as image:
        image.load()
        return image.size[::-1]


# --------------------------------------------------------------------------------------------
# data.validate_pairs / data.read_mask (PIL, in process)
# --------------------------------------------------------------------------------------------


def test_validate_pairs_names_every_bad_image(corpus):
    from keras_fcn import data

    pairs = [(path, corpus["good_mask"]) for path in corpus["images"].values()]
    with fc.time_limit(CASE_SECONDS * 2, "validate_pairs(images)"):
        report = data.validate_pairs(pairs, num_classes=NUM_CLASSES, skip_bad=True)
    COUNTS["data.validate_pairs"] += len(pairs)
    assert len(report.good) + len(report.bad) == len(pairs)
    for (image, _), message in report.bad:
        assert _names(message, image), message
    for image, _ in report.good:  # accepted: the header at least is right (full decode: below)
        with Image.open(image) as opened:
            assert opened.size == (W, H), image
    bad = {pair[0] for pair, _ in report.bad}
    for label in ("bomb_rgb", "bomb_gray_40000", "missing", "folder_named_like_file",
                  "nonimage_zero_bytes_png", "nonimage_npy_png", "nonimage_html_jpg",
                  "png_cut@0"):
        if label in corpus["images"]:
            assert corpus["images"][label] in bad, label
    for label in ("rgba_png", "palette_png", "cmyk_jpeg", "i16_png", "one_bit_png", "la_png"):
        assert corpus["images"][label] not in bad, label  # odd modes are converted to RGB
    # A JPEG cut anywhere before its end marker is rejected (TF would fail mid-epoch).
    for label, path in corpus["images"].items():
        if label.startswith("jpeg_cut@"):
            assert path in bad, label


def test_validate_pairs_accepts_only_decodable_images(corpus):
    from keras_fcn import data

    pairs = [(path, corpus["good_mask"]) for path in corpus["images"].values()]
    report = data.validate_pairs(pairs, num_classes=NUM_CLASSES, skip_bad=True)
    undecodable = []
    for image, _ in report.good:
        try:
            _fully_decodes(image)
        except OSError as error:
            undecodable.append((os.path.basename(image), str(error)))
    assert not undecodable, undecodable


def test_validate_pairs_names_every_bad_mask(corpus):
    from keras_fcn import data

    labels = sorted(corpus["masks"])
    pairs = [(corpus["good_image"], corpus["masks"][label]) for label in labels]
    with fc.time_limit(CASE_SECONDS * 2, "validate_pairs(masks)"):
        report = data.validate_pairs(pairs, num_classes=NUM_CLASSES, skip_bad=True)
    COUNTS["data.validate_pairs"] += len(pairs)
    messages = {pair[1]: message for pair, message in report.bad}
    for label in labels:
        path, expect = corpus["masks"][label], corpus["mask_expect"][label]
        if path not in messages:
            mask = data.read_mask(path)
            assert mask.shape == (H, W), label
            assert np.all(((mask >= 0) & (mask < NUM_CLASSES)) | (mask == 255)), label
        if expect == "good":
            assert path not in messages, (label, messages.get(path))
        elif expect is not None:
            assert path in messages, label
            assert expect == "bad" or expect in messages[path], (label, messages[path])


def test_validate_pairs_mask_messages_name_the_file(corpus):
    from keras_fcn import data

    pairs = [(corpus["good_image"], path) for path in corpus["masks"].values()]
    report = data.validate_pairs(pairs, num_classes=NUM_CLASSES, skip_bad=True)
    unnamed = [(os.path.basename(mask), message) for (_, mask), message in report.bad
               if not _names(message, mask)]
    assert not unnamed, unnamed


def test_validate_pairs_raises_naming_the_first_bad_file(corpus):
    from keras_fcn import data

    bad = corpus["masks"]["class_out_of_range"]
    with pytest.raises(ValueError, match="value 7") as error:
        data.validate_pairs([(corpus["good_image"], corpus["good_mask"]),
                             (corpus["good_image"], bad)], num_classes=NUM_CLASSES)
    COUNTS["data.validate_pairs"] += 1
    assert bad in str(error.value)


def _read_mask_outcomes(corpus):
    from keras_fcn import data

    outcomes = {}
    for label, path in sorted(corpus["masks"].items()):
        with fc.time_limit(CASE_SECONDS, f"read_mask({label})"):
            try:
                outcomes[label] = data.read_mask(path)
            except Exception as error:  # judged by the callers
                outcomes[label] = error
    return outcomes


def test_read_mask_gives_ids_or_an_error(corpus):
    outcomes = _read_mask_outcomes(corpus)
    COUNTS["data.read_mask"] += len(outcomes)
    for label, outcome in outcomes.items():
        if isinstance(outcome, Exception):
            assert isinstance(outcome, CLEAR_ERRORS), (label, outcome)
        else:
            assert outcome.dtype == np.int32 and outcome.ndim == 2, label
    assert outcomes["negative_int32_tiff"].min() == -1  # read as is; validation rejects it
    assert outcomes["all_ignore"].max() == 255


def test_read_mask_errors_name_the_file(corpus):
    outcomes = _read_mask_outcomes(corpus)
    unnamed = {label: f"{type(o).__name__}: {o}" for label, o in outcomes.items()
               if isinstance(o, Exception) and not (isinstance(o, CLEAR_ERRORS)
                                                    and _names(str(o), corpus["masks"][label]))}
    assert not unnamed, unnamed


# --------------------------------------------------------------------------------------------
# Unicode and spaces in paths, and the dataset readers
# --------------------------------------------------------------------------------------------


def test_unicode_and_spaces_in_paths(tmp_path, corpus):
    from keras_fcn import data, datasets

    folder = tmp_path / "ünï cödé"
    image = fc.write(folder / "ima ge 1.png", open(corpus["good_image"], "rb").read())
    mask = fc.write(folder / "ma sk 1.png", open(corpus["good_mask"], "rb").read())
    assert data.validate_pairs([(image, mask)], num_classes=NUM_CLASSES).good == [(image, mask)]
    batches = list(data.make_dataset([(image, mask)], num_classes=NUM_CLASSES))
    assert batches[0][0].shape == (1, H, W, 3) and batches[0][1].shape == (1, H, W)
    np.testing.assert_array_equal(batches[0][1][0], data.read_mask(mask))
    # A missing file with such a name is named exactly in the error.
    with pytest.raises(ValueError, match="does not exist") as error:
        data.validate_pairs([(image, str(folder / "ma sk 2.png"))], num_classes=NUM_CLASSES)
    assert str(folder / "ma sk 2.png") in str(error.value)
    # Folders matched by stem.
    (folder / "imgs ü").mkdir()
    (folder / "msks ü").mkdir()
    fc.write(folder / "imgs ü" / "é 1.png", open(image, "rb").read())
    fc.write(folder / "msks ü" / "é 1.png", open(mask, "rb").read())
    assert datasets.folder_pairs(folder / "imgs ü", folder / "msks ü") == [
        (str(folder / "imgs ü" / "é 1.png"), str(folder / "msks ü" / "é 1.png"))]
    COUNTS["unicode/space paths"] += 4


def _camvid_tree(root, corpus, lines):
    for split in ("train", "trainannot"):
        (root / split).mkdir(parents=True, exist_ok=True)
    fc.write(root / "train" / "a.png", open(corpus["good_image"], "rb").read())
    fc.write(root / "trainannot" / "a.png", open(corpus["good_mask"], "rb").read())
    fc.write(root / "train" / "trunc.png", open(corpus["good_image"], "rb").read()[:60])
    fc.write(root / "train.txt", lines)


def test_list_file_readers_on_broken_lines(tmp_path, corpus):
    from keras_fcn import data, datasets

    broken = {
        "one_field": b"train/a.png\n",
        "three_fields": b"train/a.png trainannot/a.png extra\n",
        "space_in_name": b"train/a 1.png trainannot/a.png\n",
        "comment_and_one_field": b"train/a.png trainannot/a.png\n#only-one\n",
    }
    fine = {
        "blank_lines_crlf_tabs": b"\n\r\ntrain/a.png\ttrainannot/a.png\r\n\n",
        "no_final_newline": b"train/a.png trainannot/a.png",
    }
    for i, (label, lines) in enumerate({**broken, **fine}.items()):
        root = tmp_path / f"camvid{i}"
        _camvid_tree(root, corpus, lines)
        if label in broken:
            with pytest.raises(ValueError, match="Line [0-9]+ of") as error:
                datasets.camvid_pairs(root, "train")
            assert str(root / "train.txt") in str(error.value), label
        else:
            pairs, info = datasets.camvid_pairs(root, "train")
            assert pairs == [(str(root / "train" / "a.png"), str(root / "trainannot" / "a.png"))]
            assert info.ignore_label == 11
    # Bytes that are not UTF-8 text, a missing list, a folder named like the list.
    root = tmp_path / "camvid_binary"
    _camvid_tree(root, corpus, b"\xff\xfe\x00garbage\x89PNG\n")
    with pytest.raises(ValueError, match="not UTF-8") as error:
        datasets.camvid_pairs(root, "train")
    assert str(root / "train.txt") in str(error.value)
    with pytest.raises(FileNotFoundError, match="val.txt"):
        datasets.camvid_pairs(root, "val")
    (root / "listdir.txt").mkdir()
    with pytest.raises(FileNotFoundError, match="listdir.txt"):
        datasets.list_file_pairs(root, "listdir.txt")
    # Lines naming missing and corrupt files read fine; validation names those files.
    root = tmp_path / "camvid_refs"
    _camvid_tree(root, corpus, b"train/a.png trainannot/a.png\n"
                              b"train/trunc.png trainannot/a.png\n"
                              b"train/gone.png trainannot/a.png\n"
                              b"train/a.png trainannot/gone.png\n")
    pairs, info = datasets.camvid_pairs(root, "train")
    report = data.validate_pairs(pairs, num_classes=info.num_classes,
                                 ignore_label=info.ignore_label, skip_bad=True)
    assert report.good == [pairs[0]]
    for (image, mask), message in report.bad:
        assert _names(message, image, mask) and ("gone.png" in message or "trunc" in message)
    COUNTS["datasets.list_file_pairs/camvid_pairs"] += len(broken) + len(fine) + 4


def test_folder_pairs_on_odd_folders(tmp_path, corpus):
    from keras_fcn import datasets

    images, masks = tmp_path / "images", tmp_path / "masks"
    for name in ("a.png", "b.jpg", "c.png"):
        fc.write(images / name, open(corpus["good_image"], "rb").read())
    for name in ("a.png", "b.png", "orphan.png"):
        fc.write(masks / name, open(corpus["good_mask"], "rb").read())
    (images / "d.png").mkdir()  # folders named like images are not images
    (masks / "d.png").mkdir()
    (masks / "c.png").mkdir()
    fc.write(images / "notes.txt", b"not an image")
    with pytest.raises(ValueError, match="unpaired") as error:
        datasets.folder_pairs(images, masks)
    assert str(images / "c.png") in str(error.value)
    assert str(masks / "orphan.png") in str(error.value)
    assert "d.png" not in str(error.value)
    pairs = datasets.folder_pairs(images, masks, on_unpaired="warn")
    assert pairs == [(str(images / "a.png"), str(masks / "a.png")),
                     (str(images / "b.jpg"), str(masks / "b.png"))]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.folder_pairs(tmp_path / "nowhere", masks)
    with pytest.raises(FileNotFoundError, match="a.png"):
        datasets.folder_pairs(images / "a.png", masks)  # a file where a folder is expected
    COUNTS["datasets.folder_pairs"] += 4


def test_nyud_and_siftflow_readers_on_damaged_files(tmp_path, corpus):
    from keras_fcn.datasets import nyud
    from keras_fcn.datasets import siftflow

    root = tmp_path / "siftflow"
    ids = siftflow.write_fake_siftflow(str(root), num_train=3, num_test=0, size=16)["trainval"]
    image = root / "Images" / siftflow.SUBDIR / f"{ids[0]}.jpg"
    fc.write(image, open(image, "rb").read()[:200])  # truncated JPEG
    label = root / "SemanticLabels" / siftflow.SUBDIR / f"{ids[1]}.mat"
    fc.write(label, b"MATLAB 5.0 MAT-file, truncated")
    fc.write(root / "GeoLabels" / siftflow.SUBDIR / f"{ids[2]}.mat", b"")
    cases = [(lambda: siftflow.read_image(str(root), ids[0]), image),
             (lambda: siftflow.read_semantic_label(str(root), ids[1]), label),
             (lambda: siftflow.read_geometric_label(str(root), ids[2]), f"{ids[2]}.mat")]
    # NYUDv2 files in the FCN layout, written directly (no HHA needed).
    nyud_root = tmp_path / "nyud"
    rgb = nyud_root / "data" / "images" / "img_5001.png"
    fc.write(rgb, fc.encode(fc.random_rgb(_rng("nyud"), H, W), mode="L"))  # grey, not RGB
    assert nyud.read_rgb(str(nyud_root), "5001").shape == (H, W, 3)
    fc.write(nyud_root / "data" / "images" / "img_5002.png", fc.bomb_png())
    fc.write(nyud_root / "data" / "hha" / "img_5001.png", b"")
    fc.write(nyud_root / "segmentation" / "img_5001.mat", fc.NON_IMAGES["html"])
    cases += [(lambda: nyud.read_rgb(str(nyud_root), "5002"), "img_5002.png"),
              (lambda: nyud.read_hha(str(nyud_root), "5001"), "img_5001.png"),
              (lambda: nyud.read_label(str(nyud_root), "5001"), "img_5001.mat"),
              (lambda: nyud.read_class_mapping(str(nyud_root / "segmentation" /
                                                   "img_5001.mat")), "img_5001.mat")]
    for read, name in cases:
        with fc.time_limit(CASE_SECONDS, str(name)), pytest.raises(ValueError) as error:
            read()
        assert os.fspath(name) in str(error.value)
    COUNTS["nyud/siftflow readers"] += len(cases) + 1


# --------------------------------------------------------------------------------------------
# Weight files
# --------------------------------------------------------------------------------------------


def test_caffemodel_reader_on_corrupt_bytes(tmp_path):
    from caffe_writer import write_caffemodel

    from keras_fcn import weights as convert

    rng = _rng("caffe")
    arrays = np.random.default_rng(0)
    layers = [("conv1_1", "Convolution", [arrays.normal(size=(4, 3, 3, 3)), arrays.normal(size=4)]),
              ("upscore2", "Deconvolution", [arrays.normal(size=(2, 2, 4, 4))], 1)]
    good = [open(write_caffemodel(layers, str(tmp_path / f"g{v}.caffemodel"), v1=v,
                                  legacy_shape=v), "rb").read() for v in (False, True)]
    cases = []
    for data in good:
        cases += fc.truncations(data, rng, 40) + fc.byte_flips(data, rng, 80, keep_header=0)
        cases += fc.insertions(data, rng, 30)
    cases += [(f"random{i}", bytes(rng.randrange(256) for _ in range(rng.randrange(300))))
              for i in range(50)]
    cases += list(fc.non_images().items())
    outcomes = collections.Counter()
    path = str(tmp_path / "ünï cödé.caffemodel")
    for label, data in cases:
        fc.write(path, data)
        with fc.time_limit(CASE_SECONDS, label):
            try:
                blobs = convert.read_caffemodel(path)
                assert all(isinstance(b, np.ndarray) for v in blobs.values() for b in v), label
                weights = convert.convert_caffemodel(path)
                assert all(a.dtype == np.float32 for v in weights.values() for a in v), label
                outcomes["ok"] += 1
            except convert.CaffeModelError as error:
                assert path in str(error), (label, str(error))
                outcomes["CaffeModelError"] += 1
            except ValueError as error:  # a layer that cannot be mapped: the layer is named
                assert "layer" in str(error) or "shape" in str(error), (label, str(error))
                outcomes["ValueError (names the layer/shape)"] += 1
    COUNTS["weights.read_caffemodel/convert_caffemodel"] += len(cases)
    assert outcomes["CaffeModelError"] > len(cases) // 2, outcomes


def test_torch_state_dict_reader_on_corrupt_bytes(tmp_path):
    torch = pytest.importorskip("torch")
    from keras_fcn import weights as convert

    buffer = io.BytesIO()
    torch.save({"score_fr.weight": torch.zeros(3, 4, 1, 1), "score_fr.bias": torch.zeros(3)},
               buffer)
    good = buffer.getvalue()
    rng = _rng("torch")
    cases = fc.truncations(good, rng, 8) + fc.byte_flips(good, rng, 8, keep_header=0)
    cases += list(fc.non_images().items())
    # A pickle that would run code on load: weights_only refuses it.
    cases.append(("pickle_exec", b"cos\nsystem\n(S'echo pwned'\ntR."))
    path = str(tmp_path / "bad weights.pth")
    for label, data in cases:
        fc.write(path, data)
        with fc.time_limit(CASE_SECONDS, label):
            try:
                weights = convert.convert_torch_state_dict(path)
                assert weights["score_fr"][0].shape == (1, 1, 4, 3), label
            except ValueError as error:
                assert path in str(error) or "layer" in str(error), (label, str(error))
    COUNTS["weights.convert_torch_state_dict"] += len(cases)


def _legacy_h5(path, layers):
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        for name, arrays in layers.items():
            group = f.create_group(name)
            if arrays is None:
                continue
            group.attrs["weight_names"] = [f"{name}/{i}".encode() for i in range(len(arrays))]
            for i, array in enumerate(arrays):
                group[f"{name}/{i}"] = array
    return str(path)


def test_read_weights_on_corrupt_files(tmp_path):
    import h5py
    import keras

    from keras_fcn import weights

    rng = _rng("weights")
    paths = {}
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(3, 1, name="score_fr")(inputs)).save(
        tmp_path / "ok.keras")
    good = {
        ".keras": open(tmp_path / "ok.keras", "rb").read(),
        ".h5": open(_legacy_h5(tmp_path / "ok.h5", {"fc7": [np.zeros((4, 4))]}), "rb").read(),
        ".npz": open(weights.save_npz({"fc7": [np.zeros((1, 1, 4, 4))]}, str(tmp_path / "ok.npz")),
                     "rb").read(),
    }
    for ext, data in good.items():
        for label, corrupt in fc.truncations(data, rng, 6) + fc.byte_flips(data, rng, 4):
            paths[f"{ext}_{label}"] = fc.write(tmp_path / "cases" / f"{len(paths)}{ext}", corrupt)
        for label, payload in fc.non_images().items():
            paths[f"{ext}_{label}"] = fc.write(tmp_path / "cases" / f"{len(paths)}{ext}", payload)
    # Well-formed containers with the wrong content.
    paths["h5_missing_group"] = _legacy_h5(tmp_path / "mg.h5", {})
    with h5py.File(paths["h5_missing_group"], "a") as f:
        f.attrs["layer_names"] = [b"fc7"]
    paths["h5_no_weight_names"] = _legacy_h5(tmp_path / "nw.h5", {"fc7": None})
    with h5py.File(tmp_path / "int.h5", "w") as f:
        f.attrs["layer_names"] = 5
    paths["h5_layer_names_int"] = str(tmp_path / "int.h5")
    with zipfile.ZipFile(tmp_path / "noconfig.keras", "w") as z:
        z.writestr("junk.txt", "x")
    paths["keras_zip_without_config"] = str(tmp_path / "noconfig.keras")
    with zipfile.ZipFile(tmp_path / "badjson.keras", "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("metadata.json", "{}")
    paths["keras_bad_json"] = str(tmp_path / "badjson.keras")
    paths["folder_named_like_file"] = str(tmp_path / "folder.h5")
    os.mkdir(paths["folder_named_like_file"])
    paths["missing"] = str(tmp_path / "missing.npz")
    for label, path in paths.items():
        with fc.time_limit(CASE_SECONDS, label):
            try:
                result = weights.read_weights(path)
                assert isinstance(result, dict), label
            except CLEAR_ERRORS as error:
                assert path in str(error), (label, f"{type(error).__name__}: {error}")
    COUNTS["weights.read_weights"] += len(paths)


# --------------------------------------------------------------------------------------------
# Inference on odd arrays
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    _, path = saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), NUM_CLASSES, 3,
                                widths=(4, 4, 4, 4, 4))
    return path


def test_predict_on_odd_arrays(tiny_model_path):
    import keras

    from keras_fcn import inference

    model = keras.models.load_model(tiny_model_path, compile=False)
    cases = fc.odd_arrays()
    for label, (array, ok) in cases.items():
        with fc.time_limit(CASE_SECONDS * 2, label):
            if ok:
                labels, probs = inference.predict(model, array)
                assert labels.shape == array.shape[:2], label
                assert np.isfinite(probs).all(), label
                np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
            else:
                with pytest.raises(ValueError, match="Image 0|images must be") as error:
                    inference.predict(model, array)
                message = str(error.value)
                assert any(word in message for word in ("shape", "dtype", "NaN",
                                                        "outside [0, 255]", "bool array")), message
    # The same checks inside a list name the image.
    with pytest.raises(ValueError, match="Image 1 has .* NaN"):
        inference.predict(model, [np.zeros((8, 8, 3)), np.full((8, 8, 3), np.nan)])
    COUNTS["inference.predict"] += len(cases) + 1


# --------------------------------------------------------------------------------------------
# tools/predict.py on a folder mixing good and bad files; --overwrite
# --------------------------------------------------------------------------------------------


def test_predict_tool_on_a_mixed_folder(tmp_path, corpus, tiny_model_path):
    from keras_fcn.inference import files, predictor
    frames = tmp_path / "frames ü"
    frames.mkdir()
    good, bad = [], []
    for i in range(2):
        good.append(fc.write(frames / f"good {i}.png", open(corpus["good_image"], "rb").read()))
    good.append(fc.write(frames / "good ü.jpg", open(corpus["good_jpeg"], "rb").read()))
    for label in ("rgba_png", "la_png", "one_bit_png", "palette_png", "i16_png", "cmyk_jpeg"):
        good.append(fc.write(frames / os.path.basename(corpus["images"][label]),
                             open(corpus["images"][label], "rb").read()))
    for label in ("bomb_rgb", "nonimage_zero_bytes_png", "nonimage_text_png", "nonimage_npy_png",
                  "nonimage_html_jpg", "png_cut@0"):
        if label in corpus["images"]:
            bad.append(fc.write(frames / os.path.basename(corpus["images"][label]),
                                open(corpus["images"][label], "rb").read()))
    truncated = [p for label, p in corpus["images"].items()
                 if label.startswith("png_cut@") and os.path.getsize(p) > 100][0]
    bad.append(fc.write(frames / "truncated.png", open(truncated, "rb").read()))
    (frames / "folder.png").mkdir()
    bad.append(str(frames / "folder.png"))
    out = tmp_path / "out"
    opts = predictor.PredictOptions(model=tiny_model_path, inputs=[str(frames)],
                                    output_dir=str(out), classes=["1"], uncertainty=["entropy"])
    with fc.time_limit(120, "predict tool"):
        report = files.run(opts)
    failed = dict(report.failures)
    assert sorted(failed) == sorted(bad), failed
    assert report.processed == len(good)
    stream = io.StringIO()
    files.print_report(report, stream)
    for path in bad:
        assert path in stream.getvalue()
    written = sorted(os.listdir(out / "frames ü"))
    for path in good:
        stem = os.path.splitext(os.path.basename(path))[0]
        assert f"{stem}_labels.png" in written and f"{stem}_entropy.npy" in written
        with Image.open(out / "frames ü" / f"{stem}_labels.png") as labels:
            assert labels.size == (W, H)
    for path in bad:
        stem = os.path.splitext(os.path.basename(path))[0]
        assert not [n for n in written if n.startswith(stem + "_")], stem
    assert not _leftovers(out)
    COUNTS["inference.files.run (tools/predict.py)"] += len(good) + len(bad)


def test_cli_outputs_are_not_overwritten_without_overwrite(tmp_path, corpus, tiny_model_path):
    from keras_fcn import io as fcn_io
    from keras_fcn.inference import files
    from keras_fcn.inference.predictor import PredictOptions

    out = tmp_path / "out"
    image = fc.write(tmp_path / "in" / "a.png", open(corpus["good_image"], "rb").read())
    sentinel = b"user data, do not touch"
    fc.write(out / "a_labels.png", sentinel)
    report = files.run(PredictOptions(model=tiny_model_path, inputs=[image], output_dir=str(out)))
    assert open(out / "a_labels.png", "rb").read() == sentinel
    # not this image's label map: the image fails, naming it (it counted as a kept output)
    assert report.skipped == 0 and report.written == 0
    assert report.failures == [(image, f"its output {str(out / 'a_labels.png')!r} exists but "
                                "is not an image, not a PNG: it is not this image's label map. "
                                "It was kept; move it, or pass --overwrite to replace it")]
    report = files.run(PredictOptions(model=tiny_model_path, inputs=[image],
                                      output_dir=str(out), overwrite=True))
    with Image.open(out / "a_labels.png") as labels:
        assert labels.size == (W, H)
    assert not _leftovers(out)

    # With --overwrite, an output path taken by a folder fails that image, naming it (it
    # stopped the whole run), and leaves no temp.
    os.remove(out / "a_overlay.png")
    (out / "a_overlay.png").mkdir()
    report = files.run(PredictOptions(model=tiny_model_path, inputs=[image], output_dir=str(out),
                                      overwrite=True))
    assert report.failures == [(image, f"its output {str(out / 'a_overlay.png')!r} is a folder; "
                                "move it or choose another --output_dir")]
    assert not _leftovers(out)

    # A writer that fails half-way leaves the old file intact and no temporary file.
    fc.write(out / "keep.npy", sentinel)

    def half_write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full (simulated)")

    for writer in (lambda p: fcn_io.atomic_write(p, half_write),
                   lambda p: fcn_io.write_bytes(p, object(), overwrite=True)):
        with pytest.raises((OSError, TypeError)):
            writer(str(out / "keep.npy"))
        assert open(out / "keep.npy", "rb").read() == sentinel
        assert not _leftovers(out)
    with pytest.raises(FileExistsError, match="keep.npy"):
        fcn_io.save_npy(str(out / "keep.npy"), np.zeros(2), overwrite=False)
    with pytest.raises(FileExistsError, match="keep.npy"):
        fcn_io.write_bytes(str(out / "keep.npy"), b"new", overwrite=False)
    assert open(out / "keep.npy", "rb").read() == sentinel
    COUNTS["CLI --overwrite / atomic writes"] += 7


def test_weight_conversion_keeps_existing_output_and_writes_nothing_on_bad_input(tmp_path):
    """What tools/convert_weights.py does: refuse an existing output before reading, and write
    nothing when the source is bad."""
    from keras_fcn import io as fcn_io
    from keras_fcn import weights
    from keras_fcn.models import build_fcn

    sentinel = b"existing weights"
    existing = fc.write(tmp_path / "out" / "fcn.npz", sentinel)
    source = fc.write(tmp_path / "in.caffemodel", b"\x0a\xff\xff\xff\x0f")
    with pytest.raises(FileExistsError, match="fcn.npz"):
        fcn_io.check_writable(existing, overwrite=False)
    model = build_fcn("32s", num_classes=NUM_CLASSES, weights=None, widths=(4,) * 5, fc_units=8)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="in.caffemodel"):
            weights.convert_to_keras_model(source, model)
        with pytest.raises(FileExistsError, match="fcn.npz"):
            weights.save_weights_file(model, existing, overwrite=False)
    assert open(existing, "rb").read() == sentinel
    fresh = tmp_path / "out" / "fresh.npz"
    assert not fresh.exists()
    weights.save_weights_file(model, str(fresh))
    assert sorted(weights.load_npz(str(fresh))) == sorted(weights.read_weights(model))
    assert not _leftovers(tmp_path / "out")
    COUNTS["CLI --overwrite / atomic writes"] += 3


def test_export_refuses_to_overwrite_before_converting(tmp_path, tiny_model_path):
    from keras_fcn import export

    sentinel = b"old model"
    target = fc.write(tmp_path / "m.tflite", sentinel)
    with pytest.raises(FileExistsError, match="m.tflite"):
        export.export_tflite(tiny_model_path, target, input_size=(32, 32))
    assert open(target, "rb").read() == sentinel
    saved = tmp_path / "saved"
    saved.mkdir()
    fc.write(saved / "keep.txt", sentinel)
    with pytest.raises(FileExistsError):
        export.export_saved_model(tiny_model_path, str(saved), overwrite=False)
    assert open(saved / "keep.txt", "rb").read() == sentinel
    assert not _leftovers(tmp_path)
    COUNTS["CLI --overwrite / atomic writes"] += 2


def test_export_load_model_on_corrupt_keras_files(tmp_path):
    from keras_fcn import export

    with zipfile.ZipFile(tmp_path / "noconfig.keras", "w") as z:
        z.writestr("junk.txt", "x")
    with zipfile.ZipFile(tmp_path / "badjson.keras", "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("metadata.json", "{}")
    for name in ("noconfig.keras", "badjson.keras"):
        path = str(tmp_path / name)
        with pytest.raises(CLEAR_ERRORS) as error:
            export.load_model(path)
        assert path in str(error.value)


# --------------------------------------------------------------------------------------------
# Native decoders in a subprocess: TF image decoding (make_dataset) and LiteRT
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_results(corpus, tmp_path_factory):
    """Runs tests/fuzz_cases.py on the corpus; returns (results by id, crashed case, stderr)."""
    cases = []
    for label, path in sorted(corpus["images"].items()):
        if label.startswith("bomb"):
            continue  # PIL rejects these in validation; validate=False is a separate case
        for validate in (True, False):
            cases.append({"id": f"dataset:{validate}:{label}", "kind": "dataset",
                          "pair": [path, corpus["good_mask"]], "validate": validate})
    cases.append({"id": "dataset:False:bomb_rgb", "kind": "dataset",
                  "pair": [corpus["images"]["bomb_rgb"], corpus["good_mask"]], "validate": False})
    for label in ("png_cut@0", "png_flip", "nonimage_text", "size_mismatch", "bomb"):
        matches = [k for k in corpus["masks"] if k.startswith(label)]
        for key in matches[:2]:
            cases.append({"id": f"dataset:False:mask_{key}", "kind": "dataset",
                          "pair": [corpus["good_image"], corpus["masks"][key]], "validate": False})
    folder = tmp_path_factory.mktemp("worker")
    spec = {"cases": cases, "seed": SEED, "tflite_dir": str(folder / "tflite"),
            "tflite_count": 8}
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    # Limit the worker's address space: a decoder trusting a 100000x100000 header must fail,
    # not take the machine's memory.
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30)); "
    command = [sys.executable, "-c",
               limit + "import runpy, sys; sys.argv = sys.argv[1:]; "
                       "runpy.run_path(sys.argv[0], run_name='__main__')",
               os.path.join(HERE, "fuzz_cases.py"), str(spec_path)]
    try:
        process = subprocess.run(command, capture_output=True, text=True, env=env,
                                 timeout=WORKER_SECONDS)
        stdout, stderr, code = process.stdout, process.stderr, process.returncode
    except subprocess.TimeoutExpired as expired:
        stdout = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout
        stderr, code = "timeout", "timeout"
    results, last = {}, None
    for line in (stdout or "").splitlines():
        if line.startswith("START "):
            last = line[6:]
        elif line.startswith("RESULT "):
            result = json.loads(line[7:])
            results[result["id"]] = result
            last = None
    crashed = None if code == 0 and "DONE" in stdout else (last, code)
    return results, crashed, stderr[-3000:]


def test_native_decoders_never_crash_or_hang(worker_results):
    results, crashed, stderr = worker_results
    assert crashed is None, f"worker died in case {crashed}: {stderr}"
    for case, result in results.items():
        if result["outcome"] == "error":
            assert result["type"] != "AssertionError", (case, result["message"])
    COUNTS["subprocess: make_dataset (TF decode)"] += sum(k.startswith("dataset") for k in results)
    COUNTS["subprocess: export.TFLiteRunner"] += sum(k.startswith("tflite:") for k in results)
    COUNTS["subprocess: export.tflite_ops"] += sum(k.startswith("tflite_ops:") for k in results)


def test_make_dataset_validated_files_decode_in_tf(worker_results):
    """What validate_pairs accepts, TF decodes; what it rejects is named before training."""
    results, crashed, _ = worker_results
    assert crashed is None
    for case, result in results.items():
        if case.startswith("dataset:True:") and result["outcome"] == "error":
            assert result["type"] == "ValueError", (case, result)
            assert result["pair"][0] in result["message"], (case, result["message"])


def test_tflite_runner_rejects_corrupt_models_with_a_value_error(worker_results):
    results, crashed, _ = worker_results
    assert crashed is None
    assert results["tflite:valid"]["outcome"] == "ok"
    for case, result in results.items():
        if case.startswith("tflite:") and result["outcome"] == "error":
            assert "ValueError" in result["mro"] or "OSError" in result["mro"], (case, result)


@pytest.mark.xfail(strict=True, reason=(
    "keras_fcn/data.py make_dataset(validate=False): a corrupt or truncated image/mask stops "
    "iteration with tf.errors.InvalidArgumentError ('Invalid PNG data', 'jpeg::Uncompress', "
    "'Input is empty') that does not name the file."))
def test_make_dataset_without_validation_names_the_bad_file(worker_results):
    results, _, _ = worker_results
    unnamed = {case: f"{r['type']}: {r['message'][-120:]}" for case, r in results.items()
               if case.startswith("dataset:False:") and r["outcome"] == "error"
               and not any(os.path.basename(p) in r["message"] for p in r["pair"])}
    assert not unnamed, unnamed


def test_tflite_runner_errors_name_the_file(worker_results):
    results, _, _ = worker_results
    unnamed = {case: r["message"][:100] for case, r in results.items()
               if case.startswith("tflite:") and r["outcome"] == "error"
               and r["path"] not in r["message"]}
    assert not unnamed, unnamed


def test_tflite_ops_on_corrupt_models_raise_value_errors(worker_results):
    results, _, _ = worker_results
    bad = {case: f"{r['type']}: {r['message'][:80]}" for case, r in results.items()
           if case.startswith("tflite_ops:") and r["outcome"] == "error"
           and not ("ValueError" in r["mro"] and r["path"] in r["message"])}
    assert not bad, bad
