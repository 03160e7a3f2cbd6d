"""Tests of keras_fcn.export on tiny models: every TFLite variant runs in the LiteRT
interpreter and matches Keras, SavedModel round trip, op checks, sidecar metadata, CLI gate.

Conversions are slow, so each variant is converted once per module (fixtures).
"""

import json
import os
import stat

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image


import keras_fcn
from keras_fcn import export
from keras_fcn.labels import ModelLabels
from keras_fcn.models import build_two_headed_fcn
from tiny import TINY_FC, TINY_WIDTHS, file_digests, tiny_fcn
from tool_flags import load_script, run_in_process, tool

NUM_CLASSES = 3
SIZE = (32, 48)
# int8 bound for these tiny (16-32 channel) random models on smooth random images: measured
# 94.5-98.6% depending on the seed; tiny random nets have small logit margins.
MIN_INT8_AGREEMENT = 0.90


def _smooth_images(count, size=SIZE, seed=0):
    """Low-frequency random RGB images (uint8), closer to photos than white noise."""
    coarse = np.random.default_rng(seed).integers(0, 256, (count, 4, 6, 3)).astype("float32")
    return tf.cast(tf.image.resize(coarse, size), tf.uint8).numpy()


@pytest.fixture(scope="module")
def model():
    """Tiny VGG16 FCN-8s without preprocessing (export adds it), non-zero score layers; wider
    than tests/tiny.py's so that int8 kernels have 16+ output channels."""
    keras.utils.set_random_seed(0)
    return tiny_fcn("8s", NUM_CLASSES, widths=(16, 16, 32, 32, 32), fc_units=64)


@pytest.fixture(scope="module")
def images():
    return _smooth_images(8, seed=1)


@pytest.fixture(scope="module")
def keras_logits(model, images):
    predict = export.keras_predictor(model)
    return np.stack([predict(image) for image in images])


@pytest.fixture(scope="module")
def tflite(model):
    calibration = tf.data.Dataset.from_tensor_slices(_smooth_images(16, seed=2))
    return {
        q: export.convert_to_tflite(model, input_size=SIZE, quantization=q,
                                    representative_data=calibration, num_calibration_images=16)
        for q in export.QUANTIZATIONS
    }


def _run(flatbuffer, images):
    runner = export.TFLiteRunner(flatbuffer, num_threads=2)
    return np.stack([runner.outputs(image) for image in images])


@pytest.mark.parametrize("quantization, rtol", [("float32", 1e-4), ("float16", 1e-2),
                                                ("dynamic_int8", 5e-2)])
def test_float_variants_match_keras(tflite, keras_logits, images, quantization, rtol):
    out = _run(tflite[quantization], images)
    scale = np.abs(keras_logits).max()
    assert np.abs(out - keras_logits).max() <= rtol * scale
    agreement = (out.argmax(-1) == keras_logits.argmax(-1)).mean()
    assert agreement >= {"float32": 0.9999, "float16": 0.995, "dynamic_int8": 0.97}[quantization]


def test_full_int8_agrees_with_keras(tflite, keras_logits, images):
    runner = export.TFLiteRunner(tflite["int8"])
    info = runner.input_info()
    assert info["dtype"] == "uint8" and runner.output_info()["dtype"] == "uint8"
    # calibrated on images spanning ~0..255: the quantized input is ~the raw pixels
    assert abs(info["quantization"]["scale"] - 1.0) < 0.05
    assert info["quantization"]["zero_point"] == 0
    labels = np.stack([runner.labels(image) for image in images])
    assert (labels == keras_logits.argmax(-1)).mean() >= MIN_INT8_AGREEMENT


def _kernel_scale_counts(flatbuffer):
    """Number of quantization scales of each constant int8 tensor with rank 4 (conv kernels)."""
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    counts = []
    for tensor in root.subgraphs[0].tensors:
        data = root.buffers[tensor.buffer].data
        if tensor.type == schema.TensorType.INT8 and data is not None and len(tensor.shape) == 4:
            counts.append(len(tensor.quantization.scale))
    return counts


def test_int8_per_tensor_has_one_scale_per_kernel(tflite, keras_logits, images):
    per_channel = _kernel_scale_counts(tflite["int8"])
    per_tensor = _kernel_scale_counts(tflite["int8_per_tensor"])
    # same kernels; per channel: one scale per output channel (16..64 here), else exactly one
    assert len(per_channel) == len(per_tensor) >= 18
    assert max(per_channel) >= 16 and set(per_tensor) == {1}
    assert len(tflite["int8_per_tensor"]) < len(tflite["int8"])
    runner = export.TFLiteRunner(tflite["int8_per_tensor"])
    assert runner.input_info()["dtype"] == "uint8"
    labels = np.stack([runner.labels(image) for image in images])
    assert (labels == keras_logits.argmax(-1)).mean() >= MIN_INT8_AGREEMENT


def test_int8_preprocessing_is_exact():
    """Regression: the RGB -> BGR flip of CaffePreprocessing converted to REVERSE_V2, whose int8
    kernel ignores its (different) output scale: full int8 got garbage pixels (trained VGG16
    FCN-8s on CamVid: 41% agreement). CaffePreprocessing now flips with a GATHER."""
    inputs = keras.Input((*SIZE, 3), name="image")
    x = keras_fcn.CaffePreprocessing(name="preprocess")(inputs)
    # 1x1 identity conv: the output is the preprocessed image (BGR minus mean).
    outputs = keras.layers.Conv2D(
        3, 1, kernel_initializer=keras.initializers.Constant(np.eye(3).reshape(1, 1, 3, 3)),
        name="conv")(x)
    net = keras.Model(inputs, outputs)
    images = _smooth_images(4, seed=3)
    flatbuffer = export.convert_to_tflite(net, input_size=SIZE, quantization="int8",
                                          representative_data=list(images))
    assert "REVERSE_V2" not in export.tflite_ops(flatbuffer)
    runner = export.TFLiteRunner(flatbuffer)
    expected = net(images.astype("float32")).numpy()
    out = np.stack([runner.outputs(image) for image in images])
    step = runner.output_info()["quantization"]["scale"]  # ~1.1 for a ~[-123, 151] range
    assert np.abs(out - expected).max() <= 2.5 * step


def test_int8_io_and_argmax_inside(model, keras_logits, images):
    flatbuffer = export.convert_to_tflite(
        model, input_size=SIZE, quantization="int8", int8_io="int8", include_argmax=True,
        representative_data=list(_smooth_images(16, seed=2)), num_calibration_images=16)
    runner = export.TFLiteRunner(flatbuffer)
    assert runner.input_info()["dtype"] == "int8"
    assert runner.input_info()["quantization"]["zero_point"] == -128
    assert runner.output_info()["dtype"] == "uint8"
    assert runner.output_info()["shape"] == [1, *SIZE]
    labels = np.stack([runner.invoke(image) for image in images])
    assert (labels == keras_logits.argmax(-1)).mean() >= MIN_INT8_AGREEMENT
    assert "ARG_MAX" in export.check_tflite_ops(flatbuffer)


def test_fixed_size_vgg_fcn8s_has_no_flex_and_no_shape_ops(tflite):
    for quantization, flatbuffer in tflite.items():
        ops = export.check_tflite_ops(flatbuffer)
        assert not any(op.startswith("Flex") for op in ops), quantization
        assert not set(ops) & {"SHAPE", "PACK", "RANK"}, (quantization, ops)
        assert export.dynamic_tensors(flatbuffer) == []
        assert "TRANSPOSE_CONV" in ops
        assert "REVERSE_V2" not in ops and "GATHER" in ops, (quantization, ops)


def test_sizes_shrink(tflite):
    size = {q: len(b) for q, b in tflite.items()}
    assert size["float16"] < 0.7 * size["float32"]
    assert size["int8"] < 0.5 * size["float32"]


def _convert_function(fn, spec, select_tf_ops):
    concrete = tf.function(fn, input_signature=[spec]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if select_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    return converter.convert()


def test_op_check_rejects_flex_ops():
    # Cumprod has no TFLite builtin: with select-TF ops allowed it becomes FlexCumprod.
    flatbuffer = _convert_function(lambda x: tf.math.cumprod(x, axis=1) + 1.0,
                                   tf.TensorSpec([1, 4], tf.float32), select_tf_ops=True)
    ops = export.tflite_ops(flatbuffer)
    assert any(op.startswith("Flex") for op in ops), ops
    with pytest.raises(ValueError, match="Flex/custom ops"):
        export.check_tflite_ops(flatbuffer)


def test_op_check_rejects_dynamic_shapes(model):
    net = export.raw_rgb_model(model)
    flatbuffer = _convert_function(lambda x: net(x, training=False),
                                   tf.TensorSpec([1, None, None, 3], tf.float32),
                                   select_tf_ops=False)
    with pytest.raises(ValueError, match="dynamic-shape ops .*SHAPE|unknown shape"):
        export.check_tflite_ops(flatbuffer)
    export.check_tflite_ops(flatbuffer, allow_dynamic_shapes=True)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _plain_modes(folder):
    """Modes of a file written by plain open() and of a folder made by os.makedirs."""
    os.makedirs(folder / "plain_dir")
    (folder / "plain.txt").write_text("x")
    return _mode(folder / "plain.txt"), _mode(folder / "plain_dir")


def test_saved_model_any_size_uint8(model, tmp_path, umask_022):
    path = str(tmp_path / "sm")
    metadata = export.export_saved_model(model, path, class_names=["a", "b", "c"])
    served = tf.saved_model.load(path).signatures["serving_default"]
    predict = export.keras_predictor(model)
    for size in [SIZE, (37, 29)]:
        image = _smooth_images(1, size, seed=3)
        out = served(images=tf.constant(image))
        assert out["class_ids"].dtype == tf.uint8
        np.testing.assert_array_equal(out["class_ids"][0], predict(image[0]).argmax(-1))
        np.testing.assert_allclose(tf.reduce_sum(out["probabilities"], -1), 1.0, atol=1e-5)
    with open(os.path.join(path, export.SAVED_MODEL_METADATA)) as f:
        assert json.load(f) == metadata
    assert metadata["class_names"] == ["a", "b", "c"]
    with pytest.raises(FileExistsError, match="overwrite"):
        export.export_saved_model(model, path)
    # the folder and everything in it have the permissions of the user's other outputs
    file_mode, dir_mode = _plain_modes(tmp_path)
    assert (file_mode, dir_mode) == (0o644, 0o755)
    dir_modes, file_modes = {_mode(path)}, set()
    for root, dirs, files in os.walk(path):
        dir_modes |= {_mode(os.path.join(root, name)) for name in dirs}
        file_modes |= {_mode(os.path.join(root, name)) for name in files}
    assert dir_modes == {dir_mode} and file_modes == {file_mode}
    assert sorted(os.listdir(tmp_path)) == ["plain.txt", "plain_dir", "sm"]  # no temporaries


def test_a_model_trained_in_bfloat16_exports_as_float32(model, keras_logits, images, tmp_path):
    """A .keras file saved under mixed_bfloat16 (the recipes' --precision=bfloat16 on a GPU)
    kept its bfloat16 layers, and the TFLite converter failed on them (Flex GatherV2, Conv2D,
    ...: a traceback from tools/export.py). Exported as its float32 copy, it gives the float
    model's logits; its SavedModel serves float32 probabilities."""
    path = str(tmp_path / "bf16.keras")
    keras_fcn.runtime.with_precision(model, "bfloat16").save(path)
    assert keras.models.load_model(path).get_layer("conv1_1").compute_dtype == "bfloat16"
    flatbuffer = export.convert_to_tflite(path, input_size=SIZE, quantization="float32")
    out = _run(flatbuffer, images)
    assert np.abs(out - keras_logits).max() <= 1e-4 * np.abs(keras_logits).max()
    export.export_saved_model(path, str(tmp_path / "saved"), input_size=SIZE)
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    assert served(images=tf.constant(images[:1]))["probabilities"].dtype == tf.float32


def test_saved_model_fixed_size_without_probabilities(model, tmp_path):
    path = str(tmp_path / "fixed")
    export.export_saved_model(model, path, input_size=SIZE, include_probabilities=False)
    served = tf.saved_model.load(path).signatures["serving_default"]
    assert served.structured_input_signature[1]["images"].shape.as_list() == [None, *SIZE, 3]
    assert set(served(images=tf.zeros((2, *SIZE, 3), tf.uint8))) == {"class_ids"}


def test_export_tflite_writes_model_and_sidecar(model, tmp_path, umask_022):
    path = str(tmp_path / "m_fp16.tflite")
    palette = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
    metadata = export.export_tflite(model, path, input_size=SIZE, quantization="float16",
                                    class_names=["sky", "road", "car"], palette=palette,
                                    ignore_label=11)
    with open(str(tmp_path / "m_fp16.json")) as f:
        sidecar = json.load(f)
    assert sidecar == json.loads(json.dumps(metadata))
    assert sidecar["class_names"] == ["sky", "road", "car"] and sidecar["palette"] == palette
    assert sidecar["labels"] == [0, 1, 2] and sidecar["ignore_label"] == 11
    assert sidecar["quantization"] == "float16" and sidecar["output_kind"] == "logits"
    assert sidecar["normalization"]["type"] == "caffe_bgr_mean"
    assert sidecar["input"]["shape"] == [1, *SIZE, 3] and sidecar["input"]["dtype"] == "uint8"
    assert sidecar["size_bytes"] == os.path.getsize(path) and "CONV_2D" in sidecar["ops"]
    with pytest.raises(FileExistsError):
        export.export_tflite(model, path, input_size=SIZE)
    file_mode, _ = _plain_modes(tmp_path)
    assert _mode(path) == _mode(tmp_path / "m_fp16.json") == file_mode == 0o644
    assert sorted(os.listdir(tmp_path)) == ["m_fp16.json", "m_fp16.tflite", "plain.txt",
                                            "plain_dir"]


def test_labels_reject_a_wrong_class_count(model):
    with pytest.raises(ValueError, match="one entry per class"):
        export.export_labels(model, class_names=["only_one"])
    with pytest.raises(ValueError, match="name 4 classes but model"):
        export.export_labels(model, ModelLabels(num_classes=4))


def test_labels_come_from_the_models_sidecar_or_run_folder(model, tmp_path):
    path = tmp_path / "run" / "best.keras"
    path.parent.mkdir()
    ModelLabels(3, class_names=("sky", "road", "car"), ignore_label=11).write(
        path.parent / "labels.json")
    labels = export.export_labels(model, source=str(path))
    assert labels.class_names == ("sky", "road", "car") and labels.ignore_label == 11
    assert labels.model_name == model.name
    assert labels.normalization["type"] == "caffe_bgr_mean"
    ModelLabels(3, class_names=("a", "b", "c")).write(ModelLabels.sidecar_path(path))
    labels = export.export_labels(model, source=str(path), ignore_label=7)
    assert labels.class_names == ("a", "b", "c") and labels.ignore_label == 7
    # a model object has no file: default names
    assert export.export_labels(model, source=model).class_names == ("class_0", "class_1",
                                                                      "class_2")


def test_median_seconds_times_every_run_after_the_warmup():
    calls = []
    seconds = export.median_seconds(calls.append, 1, runs=5, warmup=2)
    assert calls == [1] * 7 and 0 <= seconds < 0.1


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="quantization='int4'"):
        export.convert_to_tflite(model, input_size=SIZE, quantization="int4")
    with pytest.raises(ValueError, match="representative_data=None"):
        export.convert_to_tflite(model, input_size=SIZE, quantization="int8")
    with pytest.raises(ValueError, match="input_size"):
        export.convert_to_tflite(model, input_size=(None, 32))


def _write_pairs(folder, count, size=SIZE):
    from PIL import Image

    os.makedirs(folder / "img")
    os.makedirs(folder / "ann")
    lines = []
    for i, image in enumerate(_smooth_images(count, size, seed=5)):
        Image.fromarray(image).save(folder / "img" / f"{i}.png")
        mask = (image[..., 0] // 86).astype(np.uint8)  # classes 0..2
        Image.fromarray(mask, mode="L").save(folder / "ann" / f"{i}.png")
        lines.append(f"img/{i}.png ann/{i}.png")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return str(folder / "list.txt")


def test_compare_tflite_reports_agreement_and_mean_iu(model, tflite, tmp_path):
    pairs = export.read_list(_write_pairs(tmp_path, 3))
    rows = export.compare_tflite(model, {"float32": tflite["float32"], "int8": tflite["int8"]},
                                 pairs, runs=2, keras_runs=1)
    assert [r["variant"] for r in rows] == ["keras_float", "float32", "int8"]
    assert rows[1]["agreement"] > 99.99 and abs(rows[1]["mean_iu_delta"]) < 1e-6
    assert 0 <= rows[2]["mean_iu"] <= 100
    # (int8 may now agree 100% on these 3 images: test the check with an impossible bound)
    failures = export.check_thresholds([rows[0], rows[2]], min_agreement=100.5)
    assert failures[0].startswith("int8: agreement")
    assert export.check_thresholds(rows, min_agreement=50.0) == []
    assert "| int8 |" in export.rows_to_markdown(rows, "t")
    assert 0 < rows[0]["confident_share"] <= 100 and rows[1]["confident_agreement"] > 99.99
    assert rows[2]["confident_agreement"] >= rows[2]["agreement"] - 1.0
    failures = export.check_thresholds(rows, min_confident_agreement=100.5)
    assert [f.split(":")[0] for f in failures] == ["float32", "int8"]
    assert "agreement where the float model is sure" in failures[0]


def test_agreement_counts_split_by_the_float_models_top2_gap():
    # softmax of (a, b, c): pixel 0 is a near tie (gap ~0.025), pixel 1 is sure (gap ~0.84)
    logits = np.array([[[1.0, 1.05, -5.0], [4.0, 0.0, 0.0]]])
    gap = export.top2_gap(logits)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(gap, [[probs[0, 0, 1] - probs[0, 0, 0],
                                      probs[0, 1, 0] - probs[0, 1, 1]]])
    assert gap[0, 0] < export.CONFIDENT_GAP < gap[0, 1]
    # the near tie flips, the sure pixel agrees: 1 of 2 pixels, 1 of 1 sure pixel
    assert export.agreement_counts(logits, np.array([[0, 0]])) == (1, 2, 1, 1)
    # the sure pixel flips: it counts against the confident agreement
    assert export.agreement_counts(logits, np.array([[1, 2]])) == (1, 2, 0, 1)
    # with no gap threshold every pixel counts as sure
    assert export.agreement_counts(logits, np.array([[1, 2]]), confident_gap=0.0) == (1, 2, 1, 2)
    with pytest.raises(ValueError, match=r"labels shape \(2,\)"):
        export.agreement_counts(logits, np.array([0, 0]))


def test_cli_check_fails_below_threshold(model, tmp_path):
    model_path = str(tmp_path / "tiny.keras")
    model.save(model_path)
    data = _write_pairs(tmp_path / "data", 2)
    out = tmp_path / "out"
    # in this process, as the script runs (tests/test_cli_tools.py runs it in a subprocess)
    result = run_in_process(
        "tools/export.py", f"--model={model_path}", f"--output_dir={out}", "--name=tiny",
        "--input_size=32x48", "--quantizations=float32", "--argmax", "--nosaved_model",
        f"--check={data}", "--runs=2", "--min_agreement=100.01")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "agreement" in result.stderr and "< 100.01%" in result.stderr
    report = json.loads((out / "tiny_check.json").read_text())
    float_row = report["rows"][1]
    assert float_row["variant"] == "float32" and float_row["agreement"] == 100.0  # argmax inside
    assert report["failures"] and (out / "tiny_check.md").exists()
    sidecar = json.loads((out / "tiny_float32.json").read_text())
    assert sidecar["num_classes"] == NUM_CLASSES and sidecar["output_kind"] == "class_ids"
    assert sidecar["output"]["dtype"] == "uint8" and sidecar["output"]["shape"] == [1, *SIZE]


# Eighth session's mends.


def test_the_sure_pixel_gate_fails_when_no_pixel_is_sure():
    """An untrained float model is sure nowhere: --min_confident_agreement passed unchecked."""
    from keras_fcn.export.quality import check_thresholds
    row = {"variant": "int8", "agreement": 99.0, "mean_iu_delta": -0.1, "size_ratio": 0.3,
           "speedup": 4.0}
    rows = [dict(row, variant="keras_float"), dict(row, confident_agreement=None),
            dict(row, variant="float16", confident_agreement=99.5)]
    assert check_thresholds(rows, min_confident_agreement=99.0) == [
        "int8: no pixel where the float model is sure, so the agreement there "
        "(min_confident_agreement=99.0%) cannot be checked"]
    assert check_thresholds(rows, min_agreement=98.0) == []  # other gates as before


# Review 7: argument checks that disagreed between modules.


def test_calibration_images_are_resized_as_training_resizes_them():
    from keras_fcn.data.arrays import resize_image
    from keras_fcn.export.images import calibration_images

    image = np.random.default_rng(0).uniform(0, 255, (40, 48, 3)).astype("float32")
    (got,) = list(calibration_images(image[None], (10, 12), num_images=1))
    want = resize_image(image, (10, 12), antialias=True)
    np.testing.assert_allclose(got[0], want, atol=1e-2)
    assert np.abs(resize_image(image, (10, 12)) - want).max() > 5  # aliased samples differ


# Export audit, round 4: overwrite of a SavedModel folder, int8 calibration (input range pinned,
# non-photo data refused), the mean IU gate, TFLiteRunner input checks, multi-output models,
# tools/export.py flags and the LiteRT example's output size. A tiny FCN-8s with its own
# preprocessing at 32x32 (tiny_model, SQUARE_SIZE).

SQUARE_SIZE = (32, 32)


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return tiny_fcn("8s", 3, include_preprocessing=True)


@pytest.fixture(scope="module")
def model_path(tiny_model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    tiny_model.save(path)
    return path


@pytest.fixture(scope="module")
def float32_tflite(tiny_model):
    return export.convert_to_tflite(tiny_model, input_size=SQUARE_SIZE)


def _images(count, high=256, seed=0):
    return np.random.default_rng(seed).integers(0, high, (count, *SQUARE_SIZE, 3)).astype("uint8")


def _write_images(folder, images, mode="RGB"):
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image if mode == "RGB" else image[..., 0], mode=mode).save(
            os.path.join(folder, f"{i}.png"))
    return str(folder)


def test_saved_model_overwrite_replaces_only_an_earlier_saved_model(tiny_model, model_path,
                                                                   tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "best.keras"
    checkpoint.write_bytes(open(model_path, "rb").read())
    (run / "notes.json").write_text("{}")
    before = file_digests(run)
    for target in (run, checkpoint):  # the run folder, or the checkpoint itself
        with pytest.raises(ValueError, match=(
                rf"^export_dir='{target}' is or holds the model being exported "
                rf"\('{checkpoint}'\); choose another export_dir\.$")):
            export.export_saved_model(str(checkpoint), str(target), overwrite=True)
    assert file_digests(run) == before
    # a folder of other exports (a .tflite beside an earlier SavedModel): named, kept
    out = tmp_path / "export"
    first = export.export_saved_model(tiny_model, str(out), include_probabilities=False)
    assert first["output"] == "class_ids (N, H, W) uint8: the class id of each pixel"
    (out / "m_int8.tflite").write_bytes(b"tflite")
    with pytest.raises(ValueError, match=(
            r"^overwrite=True replaces only an earlier SavedModel folder \(entries "
            r"\['saved_model.pb', 'variables', 'assets', 'fingerprint.pb'\]\), but it holds "
            rf"other entries \['m_int8.tflite'\]; .* Received: export_dir='{out}'$")):
        export.export_saved_model(tiny_model, str(out), overwrite=True)
    assert (out / "m_int8.tflite").read_bytes() == b"tflite"
    (tmp_path / "half" / "variables").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"but it has no saved_model.pb; .* Received: "
                                         rf"export_dir='{tmp_path / 'half'}'"):
        export.export_saved_model(tiny_model, str(tmp_path / "half"), overwrite=True)
    with pytest.raises(ValueError, match=r"but it holds other entries \['best.keras', "
                                         r"'notes.json'\]"):
        export.export_saved_model(tiny_model, str(run), overwrite=True)
    with pytest.raises(ValueError, match=rf"but export_dir='{run / 'notes.json'}' is not a "
                                         "folder; choose another export_dir"):
        export.export_saved_model(tiny_model, str(run / "notes.json"), overwrite=True)
    assert file_digests(run) == before
    # an earlier SavedModel alone is replaced; the sidecar describes the signature (finding 7)
    os.remove(out / "m_int8.tflite")
    meta = export.export_saved_model(tiny_model, str(out), input_size=SQUARE_SIZE, overwrite=True)
    assert meta["input"]["shape"] == [None, *SQUARE_SIZE, 3]
    assert meta["output"] == ("class_ids (N, H, W) uint8: the class id of each pixel; "
                              "probabilities (N, H, W, num_classes) float32: the softmax of "
                              "the logits")
    on_disk = json.loads((out / export.SAVED_MODEL_METADATA).read_text())
    assert on_disk["output"] == meta["output"]
    assert set(on_disk["outputs"]) == {"class_ids", "probabilities"}


def test_cli_overwrite_refuses_a_foreign_saved_model_folder(model_path, tmp_path):
    out = tmp_path / "out"
    (out / "tiny_saved_model").mkdir(parents=True)
    (out / "tiny_saved_model" / "results.csv").write_text("1,2\n")
    with tool("export", f"--model={model_path}", f"--output_dir={out}", "--name=tiny",
              "--quantizations=", "--overwrite") as t:
        with pytest.raises(ValueError, match=r"it holds other entries \['results.csv'\]"):
            t.main(["prog"])
    assert os.listdir(out / "tiny_saved_model") == ["results.csv"]


def test_pin_input_range_sets_one_black_and_one_white_pixel():
    image = np.full((1, 2, 3, 3), 40.0, np.float32)
    pinned = export.pin_input_range(image)
    assert pinned[0, 0, 0].tolist() == [0.0] * 3 and pinned[0, -1, -1].tolist() == [255.0] * 3
    assert (pinned == 40.0).sum() == 3 * 6 - 6 and (image == 40.0).all()  # a copy


@pytest.mark.parametrize("int8_io, zero_point", [("uint8", 0), ("int8", -128)])
def test_int8_input_scale_is_one_after_calibrating_on_dark_images(tiny_model, int8_io,
                                                                  zero_point):
    dark = _images(4, high=60)  # max 59: the calibration range alone gives a scale ~0.23
    flatbuffer = export.convert_to_tflite(tiny_model, input_size=SQUARE_SIZE, quantization="int8",
                                          int8_io=int8_io, representative_data=list(dark))
    quantization = export.TFLiteRunner(flatbuffer).input_info()["quantization"]
    assert abs(quantization["scale"] - 1.0) < 1e-6
    assert quantization["zero_point"] == zero_point


@pytest.mark.parametrize("data, message", [
    (_images(2).astype("float32") / 255,
     r"^representative_data must be RGB photos with raw pixel values 0\.\.255, as the exported "
     r"model takes them \(not normalized or preprocessed\)\. Received: representative_data "
     r"item 0 of dtype float32 with values in \[0, 1\]$"),
    (_images(2).astype("float32") / 127.5 - 1,
     r"Received: representative_data item 0 of dtype float32 with values in \[-1, 1\]$"),
    (_images(2).astype("int32") + 300,
     r"Received: representative_data item 0 of dtype int32 with values in \[300, 555\]$"),
])
def test_calibration_refuses_data_that_is_not_rgb_0_255(tiny_model, data, message):
    with pytest.raises(ValueError, match=message):
        export.convert_to_tflite(tiny_model, input_size=SQUARE_SIZE, quantization="int8",
                                 representative_data=data)


def test_calibration_refuses_mask_files_and_the_cli_decodes_them_first(tiny_model, tmp_path):
    masks = _write_images(tmp_path / "annot", _images(2, high=11), mode="L")
    with pytest.raises(ValueError, match=(
            rf"^image file '{masks}/0.png' is a single-channel \(mode 'L'\) image, like a "
            r"label mask: 11 distinct value\(s\), .*representative_data must be RGB photos "
            r"with raw pixel values 0\.\.255.*save it as RGB\)\.$")):
        export.convert_to_tflite(tiny_model, input_size=SQUARE_SIZE, quantization="int8",
                                 representative_data=masks)
    out = tmp_path / "out"
    # the model does not exist: the calibration data is refused before it is loaded
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}",
              "--input_size=32x32", "--quantizations=int8", f"--calibration_data={masks}") as t:
        with pytest.raises(ValueError, match=rf"^--calibration_data='{masks}': image file "
                                             r"'.*0\.png' is a single-channel \(mode 'L'\)"):
            t.main(["prog"])
    assert not out.exists()


def _pairs(folder, masked):
    """A list file of one image per entry of ``masked``, with a mask where True."""
    lines = []
    for i, (image, has_mask) in enumerate(zip(_images(len(masked), seed=3), masked)):
        _write_images(folder / "img" / str(i), [image])
        line = f"img/{i}/0.png"
        if has_mask:
            _write_images(folder / "ann" / str(i), [np.zeros(image.shape, np.uint8)], mode="L")
            line += f" ann/{i}/0.png"
        lines.append(line)
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return str(folder / "list.txt")


def test_mean_iu_gate_refuses_images_without_masks(tiny_model, float32_tflite, tmp_path):
    mixed = export.read_list(_pairs(tmp_path / "mixed", [True, False, True]))
    with pytest.raises(ValueError, match=(
            r"^1 of 3 images have no mask, so mean IU cannot be measured: give a mask on every "
            rf"line or on none\. Images without a mask: \['{tmp_path}/mixed/img/1/0\.png'\]$")):
        export.compare_tflite(tiny_model, {"float32": float32_tflite}, mixed, runs=1, keras_runs=1)
    unmasked = export.read_list(_pairs(tmp_path / "none", [False, False]))
    rows = export.compare_tflite(tiny_model, {"float32": float32_tflite}, unmasked, runs=1,
                                 keras_runs=1)
    assert rows[1]["mean_iu_delta"] is None
    with pytest.raises(ValueError, match=r"^max_miou_drop=0\.5 needs the mean IU of each "
                                         r"variant, which compare_tflite measures only when "
                                         r"every image has a mask; these rows have none\.$"):
        export.check_thresholds(rows, max_miou_drop=0.5)
    assert export.check_thresholds(rows, min_agreement=99.0) == []


@pytest.mark.parametrize("masked, flag, message", [
    ([True, False], None, r"^--check='.*list\.txt': 1 of 2 images have no mask"),
    ([False, False], "--max_miou_drop=0.5",
     r"^--max_miou_drop needs a mask on every --check line \(mean IU\); 2 of 2 images have "
     r"none: \['.*img/0/0\.png', '.*img/1/0\.png'\]\. Received: --check='.*list\.txt'$"),
])
def test_cli_check_without_masks_is_a_usage_error(tmp_path, masked, flag, message):
    data = _pairs(tmp_path, masked)
    out = tmp_path / "out"
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}",
              "--input_size=32x32", "--quantizations=float32", f"--check={data}",
              *([flag] if flag else [])) as t:
        with pytest.raises(ValueError, match=message):
            t.main(["prog"])
    assert not out.exists()


def test_tflite_runner_refuses_normalized_or_out_of_range_images(float32_tflite, tiny_model):
    runner = export.TFLiteRunner(float32_tflite)
    image = _images(1, seed=4)[0]
    base = runner.labels(image)
    np.testing.assert_array_equal(runner.labels(image.astype("float32")), base)
    np.testing.assert_array_equal(runner.labels(image.astype("int64")), base)
    scaled = image.astype("float32") / 255
    for bad, received in [
            (scaled, rf"dtype=float32 with values in \[0, {scaled.max():g}\]"),
            (image.astype("int64") + 300, r"dtype=int64 with values in \[300, 555\]"),
            (image / 127.5 - 1, r"dtype=float64 with values in \[-1, 1\]")]:
        with pytest.raises(ValueError, match=r"^image must be RGB with raw values 0\.\.255 "
                                             rf"\(uint8\), not normalized\. Received: {received}$"):
            runner.labels(bad)
    with pytest.raises(ValueError, match=r"^image must be RGB with values 0\.\.255 \(uint8\)\. "
                                         r"Received: dtype=bool"):
        runner.invoke(image > 100)
    with pytest.raises(ValueError, match=r"dtype=float32 with values in \[1, 1\]"):
        export.keras_predictor(tiny_model)(np.ones(image.shape, np.float32))


def test_cli_refuses_a_truncated_calibration_image_before_writing(tmp_path):
    folder = _write_images(tmp_path / "calib", _images(3, seed=5))
    data = open(os.path.join(folder, "1.png"), "rb").read()
    with open(os.path.join(folder, "1.png"), "wb") as f:  # the header is intact
        f.write(data[: len(data) // 2])
    out = tmp_path / "out"
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}",
              "--input_size=32x32", "--quantizations=float32,int8",
              f"--calibration_data={folder}") as t:
        with pytest.raises(ValueError, match=rf"^--calibration_data='{folder}': image file "
                                             rf"'{folder}/1\.png' is unreadable: .*truncated"):
            t.main(["prog"])
    assert not out.exists()


@pytest.mark.parametrize("count", [0, -3, 1.5])
def test_num_calibration_images_must_be_at_least_one(tiny_model, count):
    with pytest.raises(ValueError, match=r"^`num_calibration_images` must be a positive "
                                         rf"integer\. Received: num_calibration_images={count}$"):
        export.convert_to_tflite(tiny_model, input_size=SQUARE_SIZE, quantization="int8",
                                 representative_data=list(_images(2)),
                                 num_calibration_images=count)


@pytest.mark.parametrize("data, message", [
    (_images(1)[0], r"^representative_data must be a batch of images \(N, H, W, 3\) or an "
                    r"iterable of \(H, W, 3\) images; for one image pass \[image\]\. Received: "
                    r"representative_data of shape \(32, 32, 3\)$"),
    ([_images(1)[0, ..., 0]], r"^representative_data item 0 has shape \(32, 32\); expected an "
                              r"RGB image \(H, W, 3\) or a batch \(N, H, W, 3\)\.$"),
    (tf.data.Dataset.from_tensor_slices({"image": _images(2)}),
     r"^representative_data yields dicts \(keys \['image'\]\); expected images or \(image, "
     r"mask\) tuples: map a dataset of dicts to its images, e\.g\. "
     r"dataset\.map\(lambda d: d\['image'\]\)\.$"),
])
def test_calibration_data_of_the_wrong_structure_is_named(tiny_model, data, message):
    with pytest.raises(ValueError, match=message):
        export.convert_to_tflite(tiny_model, input_size=SQUARE_SIZE, quantization="int8",
                                 representative_data=data)


def test_multi_output_models_are_refused(tmp_path):
    two = build_two_headed_fcn(num_semantic=5, num_geometric=3, weights=None,
                               widths=TINY_WIDTHS, fc_units=TINY_FC)
    names = list(two.output)
    with pytest.raises(ValueError, match=r"has 2 outputs .*Received: outputs=\["):
        export.convert_to_tflite(two, input_size=SQUARE_SIZE)
    with pytest.raises(ValueError) as error:
        export.export_saved_model(two, str(tmp_path / "sm"))
    assert str(error.value) == (
        f"Model {two.name!r} has 2 outputs {names}; export takes a single-output FCN (logits "
        "(N, H, W, C)): export one head, "
        f"e.g. keras.Model(model.inputs, model.output[{names[0]!r}]). Received: "
        f"outputs={names}")  # aux=False is for an auxiliary head (walkthrough, 2026-12-06)
    assert not (tmp_path / "sm").exists()
    with pytest.raises(ValueError, match=r"has 2 outputs"):
        export.export_tflite(two, str(tmp_path / "m.tflite"), input_size=SQUARE_SIZE)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv, message", [
    (["--saved_model_any_size=false", "--quantizations="],
     r"^--saved_model_any_size=false needs --input_size, the fixed size of the SavedModel "
     r"\(e\.g\. 360x480\)\. Received: --input_size=None$"),
    (["--saved_model=false", "--quantizations="],
     r"^Nothing to export: --saved_model=false and --quantizations is empty\. Received: "
     r"--saved_model=false, --quantizations=''$"),
])
def test_cli_flags_that_would_do_nothing_are_errors(tmp_path, argv, message):
    out = tmp_path / "out"
    with tool("export", f"--model={tmp_path / 'none.keras'}", f"--output_dir={out}", *argv) as t:
        with pytest.raises(ValueError, match=message):
            t.main(["prog"])
    assert not out.exists()


def test_litert_example_writes_the_label_map_at_the_photos_size(tiny_model, tmp_path):
    pytest.importorskip("ai_edge_litert")
    app = load_script(os.path.join("examples", "litert_segment.py"), "audit4_litert_segment")
    path = str(tmp_path / "m.tflite")
    palette = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    export.export_tflite(tiny_model, path, input_size=SQUARE_SIZE, palette=palette)
    photo = np.random.default_rng(6).integers(0, 256, (45, 70, 3)).astype("uint8")
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert app.main(["prog", path, str(tmp_path / "photo.png"), str(tmp_path / "out.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (45, 70, 3)
    runner = export.TFLiteRunner(path)
    small = runner.labels(np.asarray(Image.fromarray(photo).resize((32, 32), Image.BILINEAR)))
    expected = np.asarray(Image.fromarray(small).resize((70, 45), Image.NEAREST))
    np.testing.assert_array_equal(out, np.asarray(palette, np.uint8)[expected])


def test_calibration_and_check_images_read_16_bit_grey_as_training_does(tmp_path):
    """export's load_image clipped a 16-bit grey photo to white (PIL's convert("RGB")); it now
    reads it as the training pipelines do (the high byte)."""
    from keras_fcn.export.images import load_image

    grey = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    got = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(got, np.repeat((grey >> 8).astype(np.uint8)[..., None], 3, -1))


# Round 8 (ship it to a phone): reproducers of an unclear error and a silently wrong export.


def test_tflite_runner_names_the_input_size_in_plain_numbers(float32_tflite):
    """The size came out as (np.int32(32), np.int32(32), np.int32(3)) under NumPy 2."""
    runner = export.TFLiteRunner(float32_tflite)
    with pytest.raises(ValueError, match=r"^Image shape must be \(32, 32, 3\) \(the model's "
                                         r"fixed input size\)\. Received: shape=\(16, 24, 3\)$"):
        runner.labels(np.zeros((16, 24, 3), np.uint8))


def test_export_refuses_a_palette_on_the_0_to_1_scale(tiny_model, model_path, tmp_path):
    """A float palette with every value in [0, 1] (matplotlib's scale) was written to the
    sidecar as near-black colours ([1, 0, 0], ...), though the overlays refuse it."""
    unit = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    message = r"every value in \[0, 1\] \(max=1\.0\): a palette on the 0\.\.1 scale\?"
    with pytest.raises(ValueError, match=message):
        export.export_labels(tiny_model, palette=unit)
    palette_file = tmp_path / "palette.json"
    palette_file.write_text(json.dumps(unit))
    out = tmp_path / "out"
    with tool("export", f"--model={model_path}", f"--output_dir={out}", "--quantizations=",
              f"--palette={palette_file}") as t:
        with pytest.raises(ValueError, match=message):
            t.main(["prog"])
    assert not out.exists()
    # the same colours on the 0..255 scale, and a dark integer palette, are fine
    assert export.export_labels(tiny_model, palette=[[255, 0, 0], [0, 255, 0], [0, 0, 255]]
                                ).palette[0] == (255, 0, 0)
    assert export.export_labels(tiny_model, palette=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]
                                ).palette[2] == (0, 0, 1)


# Mutation audit, round 8 (export quality gate): each test fails on a mutant of
# keras_fcn/export/quality.py that the suite let pass.


def test_check_thresholds_fails_each_gate_past_its_bound_and_passes_at_it():
    """A mean IU gain is no drop; each gate names the variant, its value and the bound."""
    from keras_fcn.export.quality import check_thresholds
    base = {"variant": "keras_float", "agreement": 100.0, "confident_agreement": 100.0,
            "mean_iu_delta": 0.0, "size_ratio": 1.0, "speedup": 1.0}
    rows = [base,
            dict(base, variant="int8", agreement=97.5, mean_iu_delta=-1.5, size_ratio=0.25,
                 speedup=3.0),
            dict(base, variant="float16", agreement=99.5, mean_iu_delta=2.0, size_ratio=0.5,
                 speedup=1.5)]
    assert check_thresholds(rows, min_agreement=98.0, max_miou_drop=1.0, max_size_ratio=0.4,
                            min_speedup=2.0) == [
        "int8: agreement 97.50% < 98.0%",
        "int8: mean IU drop 1.50 points > 1.0",
        "float16: size ratio 0.500 > 0.4",
        "float16: speed-up 1.50x < 2.0x"]
    assert check_thresholds(rows, min_agreement=97.5, max_miou_drop=1.5, max_size_ratio=0.5,
                            min_speedup=1.5) == []
    assert check_thresholds(rows[:2], max_miou_drop=2.0) == []  # one variant, with mean IU



class _AllZeroRunner:
    """Stands in for a TFLite variant that predicts class 0 everywhere, in 4 ms."""

    def __init__(self, flatbuffer, num_threads=None):
        self.input_size = SQUARE_SIZE

    def labels(self, image):
        return np.zeros(image.shape[:2], np.int64)

    def latency(self, image, runs):
        return 0.004


def _numpy_mean_iu(masks, predictions, num_classes, ignore_label):
    """Mean IU (%) over the classes with a non-empty union, void pixels left out."""
    masks, predictions = np.asarray(masks), np.asarray(predictions)
    valid = masks != ignore_label
    ious = []
    for c in range(num_classes):
        inter = ((masks == c) & (predictions == c) & valid).sum()
        union = (((masks == c) | (predictions == c)) & valid).sum()
        if union:
            ious.append(inter / union)
    return 100.0 * float(np.mean(ious))


def test_compare_tflite_figures_are_numpys_and_skip_void(tiny_model, tmp_path, monkeypatch):
    """Masks with void (255) pixels and a variant that predicts class 0 everywhere: each mean
    IU is numpy's over the non-void pixels, the delta is the variant's minus Keras', the
    agreement the share of Keras' class-0 pixels, the size ratio the flatbuffer's bytes over
    the float32 weights' bytes, the speed-up Keras' latency over the variant's."""
    from keras_fcn.export import quality
    monkeypatch.setattr(quality, "TFLiteRunner", _AllZeroRunner)
    images = _images(2, seed=7)
    predict = export.keras_predictor(tiny_model)
    predictions = np.stack([np.argmax(predict(image), -1) for image in images])
    masks = np.random.default_rng(8).integers(0, 3, predictions.shape).astype(np.uint8)
    masks[:, 20:] = predictions[:, 20:]  # Keras right on these rows: its IU is the higher
    masks[:, :8] = 255  # a void band
    lines = []
    for i, (image, mask) in enumerate(zip(images, masks)):
        _write_images(tmp_path / "img" / str(i), [image])
        _write_images(tmp_path / "ann" / str(i), [mask[..., None]], mode="L")
        lines.append(f"img/{i}/0.png ann/{i}/0.png")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    flatbuffer = b"\0" * 5000
    rows = export.compare_tflite(tiny_model, {"zeros": flatbuffer},
                                 export.read_list(str(tmp_path / "list.txt")), runs=1,
                                 keras_runs=1, ignore_label=255)
    keras_iu = _numpy_mean_iu(masks, predictions, 3, 255)
    zeros_iu = _numpy_mean_iu(masks, np.zeros_like(predictions), 3, 255)
    assert keras_iu > zeros_iu
    assert rows[0]["mean_iu"] == pytest.approx(keras_iu, abs=1e-9)
    assert rows[1]["mean_iu"] == pytest.approx(zeros_iu, abs=1e-9)
    assert rows[1]["mean_iu_delta"] == pytest.approx(zeros_iu - keras_iu, abs=1e-9)
    assert rows[1]["agreement"] == pytest.approx(100.0 * np.mean(predictions == 0))
    keras_bytes = sum(int(np.prod(w.shape)) * 4 for w in tiny_model.weights)
    assert rows[1]["size_ratio"] == pytest.approx(5000 / keras_bytes)
    assert rows[1]["speedup"] == pytest.approx(rows[0]["latency_ms"] / 4.0)


def test_a_tie_is_sure_at_a_zero_gap():
    """Sure means a top-2 gap of at least confident_gap: at 0 every pixel, a tie too."""
    tie = np.array([[0.0, 0.0]])
    assert export.agreement_counts(tie, np.array([0]), confident_gap=0.0) == (1, 1, 1, 1)
    assert export.agreement_counts(tie, np.array([0])) == (1, 1, 0, 0)
