"""The released models by name, without the network: small .caffemodel files in the real format
(tests/caffe_writer.py), written from tiny random models and served through file:// URLs, go
through the download, size/hash checks, conversion, caching and class names of
keras_fcn.presets."""

import dataclasses
import json
import os

import numpy as np
import pytest

from caffe_writer import write_caffemodel
from preset_files import caffe_layers, serve, tiny_preset
from keras_fcn.labels import VOC_CLASSES, ModelLabels
from keras_fcn.models import build_fcn, has_preprocessing, normalization_of
from keras_fcn.presets import (
    PRESETS,
    from_preset,
    list_presets,
    preset_info,
    preset_labels,
    resolve_model,
)
from keras_fcn import classes
from keras_fcn.presets import fetch
from tiny import TINY_FC, TINY_WIDTHS


def _expected(layers, rename=None):
    """{keras layer name: first array in Keras layout} of the Caffe layers."""
    rename = rename or {}
    return {rename.get(layer.name, layer.name): layer.blobs[0].transpose(2, 3, 1, 0)
            for layer in layers}


def _assert_weights(model, expected):
    for name, kernel in expected.items():
        np.testing.assert_array_equal(model.get_layer(name).get_weights()[0], kernel)


def test_table_lists_every_released_model_with_its_classes():
    assert list_presets() == [
        "voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet",
        "pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s",
        "nyud-fcn32s-color", "nyud-fcn32s-hha", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
        "siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s",
        "coco-fcn-resnet50", "coco-fcn-resnet101"]
    counts = {name: preset_info(name)["num_classes"] for name in list_presets()}
    assert {counts[n] for n in list_presets() if n.startswith("voc")} == {21}
    assert {counts[n] for n in list_presets() if n.startswith("pascalcontext")} == {60}
    assert {counts[n] for n in list_presets() if n.startswith("nyud")} == {40}
    assert {counts[n] for n in list_presets() if n.startswith("siftflow")} == {33}
    for preset in PRESETS.values():
        if preset.name.startswith("coco-fcn-resnet"):  # torchvision's
            assert preset.url.startswith("https://download.pytorch.org/models/fcn_resnet")
            assert preset.url.endswith("_coco-1167a1af.pth" if "50" in preset.name
                                       else "_coco-7ecb50ca.pth")
            continue
        assert preset.url.startswith("http://dl.caffe.berkeleyvision.org/")
        assert preset.url.endswith(".caffemodel")
    assert preset_info("coco-fcn-resnet101")["paper"].startswith("63.7 mean IU, 91.9 pixel")
    assert preset_labels("coco-fcn-resnet50").normalization["type"] == "mean_std"
    assert PRESETS["voc-fcn8s"].filename == "fcn8s-heavy-pascal.caffemodel"
    assert preset_info("voc-fcn32s")["paper"].startswith("63.6 mean IU")
    assert preset_info("voc-fcn-alexnet")["build_kwargs"]["backbone"] == "alexnet"
    context = preset_labels("pascalcontext-fcn8s").class_names
    assert context[:21] == VOC_CLASSES and context[21] == "bag" and context[-1] == "wood"
    assert preset_labels("nyud-fcn32s-hha").class_names[-1] == "otherprop"
    assert preset_info("siftflow-fcn8s")["geometric_class_names"] == [
        "sky", "horizontal", "vertical"]
    assert preset_labels("nyud-fcn32s-color").normalization["mean_bgr"] == list(
        classes.NYUD_MEAN_BGR)
    json.dumps([preset_info(name) for name in list_presets()])  # printable as JSON


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match=r"Received: name='voc-fcn4s'.*") as info:
        from_preset("voc-fcn4s")
    assert "voc-fcn8s" in str(info.value)


def test_download_convert_cache_and_labels(monkeypatch, tmp_path):
    preset = tiny_preset(monkeypatch, "voc-fcn8s")
    layers = caffe_layers(preset.builder(**preset.build_kwargs))
    url, source = serve(tmp_path, layers)
    model = from_preset("voc-fcn8s", cache_dir=str(tmp_path / "cache"), url=url)

    folder = tmp_path / "cache" / "keras_fcn"
    assert sorted(os.listdir(folder)) == [
        "fcn8s-heavy-pascal.caffemodel", "voc-fcn8s.keras", "voc-fcn8s.labels.json"]
    _assert_weights(model, _expected(layers))
    assert has_preprocessing(model) and model.output_shape[-1] == 21
    labels = ModelLabels.for_model(str(folder / "voc-fcn8s.keras"))
    assert labels.class_names == VOC_CLASSES and labels.model_name == "voc-fcn8s"
    sidecar = json.loads((folder / "voc-fcn8s.labels.json").read_text())
    assert sidecar["source_url"] == url and sidecar["paper"].startswith("65.5")

    # Second call: no download (the source is gone), the converted model is loaded.
    os.remove(source)
    os.remove(folder / "fcn8s-heavy-pascal.caffemodel")
    again, again_labels = resolve_model("voc-fcn8s", cache_dir=str(tmp_path / "cache"))
    _assert_weights(again, _expected(layers))
    assert again_labels == preset_labels("voc-fcn8s")
    image = np.random.default_rng(0).integers(0, 256, (1, 37, 45, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(image, verbose=0), model.predict(image, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_resolve_model_reads_a_file_and_its_sidecar(tmp_path):
    model = build_fcn("32s", num_classes=3, weights=None, widths=TINY_WIDTHS, fc_units=TINY_FC)
    path = str(tmp_path / "mine.keras")
    model.save(path)
    ModelLabels(num_classes=3, class_names=("a", "b", "c")).write(ModelLabels.sidecar_path(path))
    loaded, labels = resolve_model(path)
    assert loaded.output_shape[-1] == 3 and labels.class_names == ("a", "b", "c")
    with pytest.raises(ValueError, match=r"one of the presets .*voc-fcn8s.*Received: 'nope'"):
        resolve_model("nope")


def test_offline_fails_at_once_naming_the_url_and_the_place(tmp_path):
    url = "file://" + str(tmp_path / "absent" / "fcn32s-heavy-pascal.caffemodel")
    with pytest.raises(RuntimeError) as info:
        from_preset("voc-fcn32s", cache_dir=str(tmp_path), url=url)
    message = str(info.value)
    assert url in message
    assert str(tmp_path / "keras_fcn" / "fcn32s-heavy-pascal.caffemodel") in message
    assert os.listdir(tmp_path / "keras_fcn") == []


def test_a_file_put_by_hand_is_used_without_download(monkeypatch, tmp_path):
    preset = tiny_preset(monkeypatch, "voc-fcn32s")
    layers = caffe_layers(preset.builder(**preset.build_kwargs))
    (tmp_path / "keras_fcn").mkdir()
    write_caffemodel(layers, str(tmp_path / "keras_fcn" / preset.filename))
    model = from_preset("voc-fcn32s", cache_dir=str(tmp_path), url="file:///nowhere/x")
    _assert_weights(model, _expected(layers))


def test_wrong_size_is_deleted_and_reported(monkeypatch, tmp_path):
    preset = tiny_preset(monkeypatch, "voc-fcn32s")
    url, source = serve(tmp_path, caffe_layers(preset.builder(**preset.build_kwargs)))
    size = os.path.getsize(source)
    monkeypatch.setitem(PRESETS, "voc-fcn32s", dataclasses.replace(preset, size_bytes=size + 1))
    with pytest.raises(ValueError, match=f"has {size} bytes, expected {size + 1}"):
        from_preset("voc-fcn32s", cache_dir=str(tmp_path), url=url)
    assert os.listdir(tmp_path / "keras_fcn") == []


def test_wrong_hash_is_reported(monkeypatch, tmp_path):
    preset = tiny_preset(monkeypatch, "voc-fcn32s")
    url, _ = serve(tmp_path, caffe_layers(preset.builder(**preset.build_kwargs)))
    with pytest.raises(ValueError, match=r"does not match file_hash='0+'"):
        from_preset("voc-fcn32s", cache_dir=str(tmp_path), url=url, file_hash="0" * 64)
    assert not os.path.exists(fetch.converted_path("voc-fcn32s", str(tmp_path)))


def test_missing_layer_and_wrong_shape_are_named(monkeypatch, tmp_path):
    preset = tiny_preset(monkeypatch, "voc-fcn32s")
    model = preset.builder(**preset.build_kwargs)
    url, _ = serve(tmp_path, caffe_layers(model, skip=("fc7",)), "a.caffemodel")
    with pytest.raises(ValueError, match=r"without weights in the file: \['fc7'\]"):
        from_preset("voc-fcn32s", cache_dir=str(tmp_path / "a"), url=url)

    layers = caffe_layers(model)
    layers[0] = layers[0]._replace(blobs=[np.zeros((5, 3, 3, 3), "float32"), np.zeros(5)])
    url, _ = serve(tmp_path, layers, "b.caffemodel")
    with pytest.raises(ValueError, match=r"'voc-fcn32s'.*conv1_1.*\(3, 3, 3, 4\)"):
        from_preset("voc-fcn32s", cache_dir=str(tmp_path / "b"), url=url)


def test_siftflow_two_heads_with_its_own_mean(monkeypatch, tmp_path):
    preset = tiny_preset(monkeypatch, "siftflow-fcn16s")
    layers = caffe_layers(preset.builder(**preset.build_kwargs))
    assert {"score_fr_sem", "upscore16_geo"} <= {layer.name for layer in layers}
    url, _ = serve(tmp_path, layers)
    model = from_preset("siftflow-fcn16s", cache_dir=str(tmp_path), url=url)
    assert sorted(model.output) == ["geometric", "semantic"]
    assert normalization_of(model)["mean_bgr"] == list(classes.SIFTFLOW_MEAN_BGR)
    _assert_weights(model.get_layer("siftflow_fcn16s"), _expected(layers))
    sidecar = ModelLabels.sidecar_path(fetch.converted_path("siftflow-fcn16s", str(tmp_path)))
    assert json.loads(open(sidecar).read())["geometric_class_names"][0] == "sky"


def test_nyud_rgbd_maps_the_reference_conv1_1_bgrd(monkeypatch, tmp_path):
    preset = tiny_preset(monkeypatch, "nyud-fcn32s-color-d")
    layers = caffe_layers(preset.builder(**preset.build_kwargs),
                          rename={"conv1_1": "conv1_1_bgrd"})
    assert layers[0].name == "conv1_1_bgrd" and layers[0].blobs[0].shape[1] == 4
    url, _ = serve(tmp_path, layers)
    model = from_preset("nyud-fcn32s-color-d", cache_dir=str(tmp_path), url=url)
    assert model.input_shape[-1] == 4 and not has_preprocessing(model)
    _assert_weights(model, _expected(layers, preset.rename))


def test_nyud_late_fusion_fills_both_streams(monkeypatch, tmp_path):
    preset = tiny_preset(monkeypatch, "nyud-fcn32s-color-hha")
    built = preset.builder(**preset.build_kwargs)
    rgb = caffe_layers(built.get_layer("rgb_fcn"), suffix="color", skip=("upscore",))
    hha = caffe_layers(built.get_layer("hha_fcn"), suffix="hha")
    url, _ = serve(tmp_path, rgb + hha)
    model = from_preset("nyud-fcn32s-color-hha", cache_dir=str(tmp_path), url=url)
    shared = _expected(hha)["upscore"]
    for stream, layers, suffix in (("rgb_fcn", rgb, "color"), ("hha_fcn", hha, "hha")):
        expected = {name.removesuffix(suffix): kernel
                    for name, kernel in _expected(layers).items()}
        _assert_weights(model.get_layer(stream), {**expected, "upscore": shared})


def test_alexnet_preset_downloads_and_converts_grouped_layers(monkeypatch, tmp_path):
    """The released FCN-AlexNet (conv1..conv5 with groups, fc6 6x6) converts by net surgery."""
    tiny = tiny_preset(monkeypatch, "voc-fcn-alexnet", widths=(8, 8, 8, 8, 8), fc_units=8)
    reference = tiny.builder(**tiny.build_kwargs)
    groups = {"conv2": 2, "conv4": 2, "conv5": 2}
    layers = [layer._replace(group=groups.get(layer.name, 1))
              for layer in caffe_layers(reference)]
    url, _ = serve(tmp_path, layers)
    model = from_preset("voc-fcn-alexnet", cache_dir=str(tmp_path / "cache"), url=url)
    assert model.output_shape[-1] == 21 and has_preprocessing(model)
    for name in ("conv1", "conv2", "fc6", "score_fr"):
        for got, want in zip(model.get_layer(name).get_weights(),
                             reference.get_layer(name).get_weights()):
            assert got.shape == want.shape
    _assert_weights(model, _expected([layer for layer in layers if layer.name != "upscore"]))


def test_tools_take_a_preset_name(monkeypatch, tmp_path):
    """tools/predict.py, evaluate.py and export.py resolve --model through model_file: a preset
    name gives the cached converted model and its labels."""
    from keras_fcn.inference import files, predictor
    from keras_fcn.presets import model_file

    preset = tiny_preset(monkeypatch, "voc-fcn32s")
    url, _ = serve(tmp_path, caffe_layers(preset.builder(**preset.build_kwargs)))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    from_preset("voc-fcn32s", url=url)  # what a first online call does
    path = model_file("voc-fcn32s")
    assert path == str(tmp_path / "keras_home" / "keras_fcn" / "voc-fcn32s.keras")
    image = tmp_path / "in" / "street.png"
    image.parent.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(image)
    opts = predictor.PredictOptions(model="voc-fcn32s", inputs=[str(image)],
                                    output_dir=str(tmp_path / "out"), classes=["person"])
    report = files.run(opts)
    assert report.processed == 1 and not report.failures
    assert (tmp_path / "out" / "street_mask_person.png").exists()
    with pytest.raises(ValueError, match="voc-fcn4s"):
        model_file("voc-fcn4s")


def _torchvision_state_dict(model):
    """A keras_fcn FCN-ResNet's weights as torchvision's state dict (its keys and layouts)."""
    state = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        module = layer.name.replace("_", ".").replace("aux.classifier", "aux_classifier")
        module = module if "classifier" in module else "backbone." + module
        arrays = layer.get_weights()
        if len(arrays) == 4:  # batch norm
            params = ("weight", "bias", "running_mean", "running_var")
            state[f"{module}.num_batches_tracked"] = np.array(7)
        else:
            params = ("weight", "bias")
            arrays[0] = arrays[0].transpose(3, 2, 0, 1)
        state.update({f"{module}.{p}": a for p, a in zip(params, arrays)})
    return state


def test_coco_fcn_resnet_preset_from_a_torchvision_file(monkeypatch, tmp_path):
    """torchvision's released FCN-ResNet50 (here a tiny one in its format, named with its
    sha256 prefix as torchvision names them): downloaded, hash-prefix checked, converted
    (the auxiliary head dropped), cached with its labels; the builders take its name."""
    import hashlib

    torch = pytest.importorskip("torch")
    from keras_fcn.models.resnet import RESNET_TRUNKS, torchvision_preprocess_input
    from keras_fcn.models.trunk import TRUNKS

    for trunk in RESNET_TRUNKS.values():  # until the package registers them itself
        monkeypatch.setitem(TRUNKS, trunk.name, trunk)
    name, widths = "coco-fcn-resnet50", (4, 4, 8, 8)
    preset = PRESETS[name]
    reference = build_fcn("dilated", 21, weights=None, backbone="resnet50", widths=widths,
                          aux=True)
    rng = np.random.default_rng(0)
    for layer in reference.layers:
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
    server = tmp_path / "server"
    server.mkdir()
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in
                _torchvision_state_dict(reference).items()}, server / "scratch.pth")
    prefix = hashlib.sha256((server / "scratch.pth").read_bytes()).hexdigest()[:8]
    served = server / f"fcn_resnet50_coco-{prefix}.pth"
    os.replace(server / "scratch.pth", served)
    monkeypatch.setitem(PRESETS, name, dataclasses.replace(
        preset, url="file://" + str(served),
        build_kwargs={**preset.build_kwargs, "widths": widths}))

    cache = tmp_path / "cache"
    model = from_preset(name, cache_dir=str(cache))
    assert sorted(os.listdir(cache / "keras_fcn")) == [
        "coco-fcn-resnet50.keras", "coco-fcn-resnet50.labels.json", served.name]
    assert has_preprocessing(model) and model.output_shape == (None, None, None, 21)
    raw = rng.integers(0, 256, (1, 37, 29, 3)).astype("float32")
    want = np.asarray(reference(torchvision_preprocess_input(raw))["out"])
    np.testing.assert_allclose(np.asarray(model(raw)), want, rtol=1e-5, atol=1e-5)
    sidecar = json.loads((cache / "keras_fcn" / "coco-fcn-resnet50.labels.json").read_text())
    assert sidecar["normalization"]["std_rgb"] == [0.229, 0.224, 0.225]
    assert sidecar["class_names"] == list(VOC_CLASSES)

    # The builders take the name (from the cache: the served file is gone).
    os.remove(served)
    monkeypatch.setenv("KERAS_HOME", str(cache))
    built = build_fcn("dilated", 21, weights=name, backbone="resnet50", widths=widths)
    np.testing.assert_allclose(np.asarray(built(torchvision_preprocess_input(raw))), want,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"build it with build_fcn_resnet50\(weights="):
        build_fcn("dilated", 5, weights=name, backbone="resnet50", widths=widths)


def test_torchvision_file_with_another_hash_is_deleted(monkeypatch, tmp_path):
    served = tmp_path / "server" / "fcn_resnet101_coco-00000000.pth"
    served.parent.mkdir()
    served.write_bytes(b"an interrupted download")
    monkeypatch.setitem(PRESETS, "coco-fcn-resnet101", dataclasses.replace(
        PRESETS["coco-fcn-resnet101"], url="file://" + str(served)))
    with pytest.raises(ValueError, match=r"'coco-fcn-resnet101'.*does not start with 00000000"):
        from_preset("coco-fcn-resnet101", cache_dir=str(tmp_path / "cache"))
    assert os.listdir(tmp_path / "cache" / "keras_fcn") == []


def test_a_two_headed_preset_is_refused_by_the_tools_before_its_download(tmp_path):
    """tools/predict.py and tools/evaluate.py downloaded siftflow-fcn16s (542 MB) before they
    refused its two heads (walkthrough of 2026-12-06)."""
    from keras_fcn.inference import predictor

    message = ("Preset 'siftflow-fcn16s' has two heads (semantic, geometric); prediction takes "
               "a single-output FCN: build it with keras_fcn.presets.from_preset and keep one "
               "head, e.g. keras.Model(model.inputs, model.output['semantic']). Received: "
               "model='siftflow-fcn16s'")
    with pytest.raises(ValueError) as error:
        fetch.model_file("siftflow-fcn16s", cache_dir=str(tmp_path),
                           single_output="prediction")
    assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        predictor.Predictor(predictor.PredictOptions(model="siftflow-fcn16s", inputs=[],
                                                     output_dir=str(tmp_path / "out")))
    assert str(error.value) == message
    assert os.listdir(tmp_path) == []  # nothing downloaded, nothing written
