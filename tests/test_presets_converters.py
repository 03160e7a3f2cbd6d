"""Each preset names its converter (keras_fcn.presets.converters): a preset of a new kind of
weights file needs no change in keras_fcn.presets.fetch. Offline: files are served through
file:// URLs."""

import dataclasses

import numpy as np
import pytest

from keras_fcn.presets import PRESETS, from_preset
from keras_fcn.presets import converters
from keras_fcn.weights import load_npz, save_npz, set_weights_by_name
from tiny import TINY_FC, TINY_WIDTHS


def test_each_kind_of_file_has_its_converter():
    kinds = {name: preset.converter for name, preset in PRESETS.items()}
    assert kinds["voc-fcn-alexnet"] is converters.convert_alexnet
    assert kinds["nyud-fcn32s-color-hha"] is converters.convert_late_fusion
    assert kinds["coco-fcn-resnet50"] is kinds["coco-fcn-resnet101"] \
        is converters.convert_torchvision
    others = set(PRESETS) - {"voc-fcn-alexnet", "nyud-fcn32s-color-hha", "coco-fcn-resnet50",
                             "coco-fcn-resnet101"}
    assert {kinds[name] for name in others} == {converters.convert_caffe}
    assert all(PRESETS[name].url.endswith(".caffemodel") for name in others)


def _npz_converter(calls):
    """A converter of a kind fetch.py does not know: a .npz of weights by layer name."""
    def convert(preset, path, model):
        calls.append((preset.name, path))
        weights = load_npz(path)
        done = set_weights_by_name(model, weights)
        with_weights = {layer.name for layer in model.layers if layer.weights}
        return {"set": done, "missing": sorted(with_weights - set(done)),
                "unused": sorted(set(weights) - set(done))}
    return convert


def _npz_preset(monkeypatch, tmp_path, calls, skip=()):
    base = PRESETS["voc-fcn32s"]
    preset = dataclasses.replace(
        base, name="test-npz-fcn32s", url=(tmp_path / "served" / "w.npz").as_uri(),
        build_kwargs={**base.build_kwargs, "widths": TINY_WIDTHS, "fc_units": TINY_FC},
        converter=_npz_converter(calls), paper=None)
    monkeypatch.setitem(PRESETS, preset.name, preset)
    model = preset.builder(**preset.build_kwargs)
    rng = np.random.default_rng(3)
    weights = {layer.name: [rng.normal(size=w.shape).astype("float32")
                            for w in layer.get_weights()]
               for layer in model.layers if layer.weights and layer.name not in skip}
    (tmp_path / "served").mkdir()
    save_npz(weights, str(tmp_path / "served" / "w.npz"))
    return preset, weights


def test_a_preset_of_a_new_kind_converts_with_its_own_converter(monkeypatch, tmp_path):
    calls = []
    preset, weights = _npz_preset(monkeypatch, tmp_path, calls)
    model = from_preset(preset.name, cache_dir=str(tmp_path / "cache"))
    assert [name for name, _ in calls] == [preset.name]
    assert calls[0][1].endswith("w.npz")
    for name, arrays in weights.items():
        for got, want in zip(model.get_layer(name).get_weights(), arrays):
            np.testing.assert_array_equal(got, want)


def test_a_new_converter_s_report_is_checked(monkeypatch, tmp_path):
    preset, _ = _npz_preset(monkeypatch, tmp_path, [], skip=("fc7",))
    with pytest.raises(ValueError, match=r"'test-npz-fcn32s'.*without weights in the file: "
                                         r"\['fc7'\]"):
        from_preset(preset.name, cache_dir=str(tmp_path / "cache"))


def test_a_converter_s_value_error_is_named_by_the_preset(monkeypatch, tmp_path):
    def refuse(preset, path, model):
        raise ValueError("layer conv1_1 has shape (1,), expected (3, 3, 3, 4)")

    preset, _ = _npz_preset(monkeypatch, tmp_path, [])
    monkeypatch.setitem(PRESETS, preset.name, dataclasses.replace(preset, converter=refuse))
    with pytest.raises(ValueError, match=r"^Preset 'test-npz-fcn32s': layer conv1_1 has shape"):
        from_preset(preset.name, cache_dir=str(tmp_path / "cache"))
