"""Walkthrough 22 of weight conversion: files that converted into the wrong model with exit
status 0 (an at-once FCN-8s .caffemodel into the plain FCN-8s or the reverse, a --rename onto a
name the file has or from one it has not), a failed conversion that left the model half
overwritten, and messages in Keras' terms where the user needs the build argument or the flag.
Each test failed before its fix."""

import numpy as np
import pytest

from caffe_writer import write_caffemodel
from keras_fcn import weights
from keras_fcn.models import build_fcn
from keras_fcn.weights import CaffeLayer
from preset_files import caffe_layers
from test_convert import _convert_in_process
from tiny import TINY_FC, TINY_WIDTHS

TINY_FLAGS = ("--num_classes=3", f"--widths={','.join(map(str, TINY_WIDTHS))}",
              f"--fc_units={TINY_FC}")
SCALES = [CaffeLayer("scale_pool4", "Scale", [np.full(1, 0.01, "float32")]),
          CaffeLayer("scale_pool3", "Scale", [np.full(1, 0.0001, "float32")])]


def _tiny(variant="8s", num_classes=3, fc_units=TINY_FC):
    return build_fcn(variant, num_classes, weights=None, widths=TINY_WIDTHS, fc_units=fc_units,
                     name=f"fcn{variant}")


def _caffemodel(path, at_once):
    """A tiny FCN-8s .caffemodel: the at-once one has the Scale layers of the reference."""
    layers = caffe_layers(_tiny("8s"))
    return write_caffemodel(layers + (SCALES if at_once else []), str(path))


def _assert_unchanged(model, before):
    for name, arrays in weights.read_weights(model).items():
        for got, want in zip(arrays, before[name]):
            np.testing.assert_array_equal(got, want)


def test_an_at_once_caffemodel_and_a_plain_model_are_refused_both_ways(tmp_path):
    at_once = _caffemodel(tmp_path / "atonce.caffemodel", at_once=True)
    plain = _caffemodel(tmp_path / "plain.caffemodel", at_once=False)
    model = _tiny("8s")
    before = weights.read_weights(model)
    with pytest.raises(ValueError, match=r"atonce\.caffemodel is an at-once FCN-8s \(it has Scale "
                                         r"layers scale_pool4, scale_pool3\) but the model "
                                         r"'fcn8s'.*Use --model=fcn8s_at_once"):
        weights.convert_to_keras_model(at_once, model)
    _assert_unchanged(model, before)
    with pytest.raises(ValueError, match=r"plain\.caffemodel is not an at-once FCN-8s.*"
                                         r"'fcn8s_at_once' is one.*Use --model=fcn8s "):
        weights.convert_to_keras_model(plain, _tiny("8s_at_once"))
    # the matching pairs convert whole
    assert weights.convert_to_keras_model(at_once, _tiny("8s_at_once"))["missing"] == []
    assert weights.convert_to_keras_model(plain, _tiny("8s"))["missing"] == []


def test_rename_onto_a_layer_the_file_has_is_refused_naming_both():
    sd = {"score_fr.weight": np.ones((3, 8, 1, 1), "f4"),
          "score_pool4.weight": np.zeros((3, 8, 1, 1), "f4")}
    with pytest.raises(ValueError, match=r"state dict: two of its layers would load into the one "
                                         r"layer 'score_fr': 'score_fr' and 'score_pool4' "
                                         r"\(rename=\{'score_pool4': 'score_fr'\}\)"):
        weights.convert_torch_state_dict(sd, rename={"score_pool4": "score_fr"})
    layers = [CaffeLayer(name.split(".")[0], "Convolution", [value])
              for name, value in sd.items()]
    with pytest.raises(ValueError, match=r"'score_fr' and 'score_pool4'"):
        weights.convert_caffe_layers(layers, rename={"score_pool4": "score_fr"})
    swapped = weights.convert_torch_state_dict(
        sd, rename={"score_pool4": "score_fr", "score_fr": "score_pool4"})  # a swap is fine
    assert swapped["score_fr"][0].sum() == 0 and swapped["score_pool4"][0].sum() == 24


def test_rename_of_a_layer_the_file_has_not_is_refused_listing_its_layers(tmp_path):
    source = weights.save_npz(weights.read_weights(_tiny("8s")), str(tmp_path / "w.npz"))
    with pytest.raises(ValueError, match=r"w\.npz: rename=\{'nope': 'score_fr'\} names the layer "
                                         r"'nope', which the file does not have; its layers "
                                         r"with weights are conv1_1, conv1_2, .*\(21 in all\)"):
        weights.convert_to_keras_model(source, _tiny("8s"), rename={"nope": "score_fr"})
    with pytest.raises(ValueError, match=r"rename=\{'nope': 'fc7'\} names the layer 'nope'"):
        weights.convert_torch_state_dict({"fc7.weight": np.ones((2, 2, 1, 1), "f4")},
                                         rename={"nope": "fc7"})


def test_a_shape_mismatch_leaves_the_model_as_it_was(tmp_path):
    source = weights.read_weights(_tiny("8s"))
    source["conv5_3"] = [np.ones((3, 3, 8, 5), "f4"), np.ones(5, "f4")]  # a later layer misfits
    path = weights.save_npz(source, str(tmp_path / "w.npz"))
    model = _tiny("8s")
    before = weights.read_weights(model)
    with pytest.raises(ValueError, match=r"conv5_3.*\(3, 3, 8, 5\)"):
        weights.convert_to_keras_model(path, model)
    _assert_unchanged(model, before)
    with pytest.raises(ValueError, match="conv5_3"):
        weights.set_weights_by_name(model, source)
    _assert_unchanged(model, before)


def test_classes_and_fc_units_are_named_in_the_build_arguments(tmp_path):
    path = weights.save_npz(weights.read_weights(_tiny("8s")), str(tmp_path / "w.npz"))
    with pytest.raises(ValueError, match=r"w\.npz does not fit the model 'fcn8s': score_fr: the "
                                         r"file has 3 classes, the model 21: build it with "
                                         r"num_classes=3\."):
        weights.convert_to_keras_model(path, _tiny("8s", num_classes=21))
    with pytest.raises(ValueError, match=r"fc6: the file has 8 units, the model 16: build it "
                                         r"with fc_units=8\."):
        weights.convert_to_keras_model(path, _tiny("8s", fc_units=16))


def test_a_text_prototxt_given_as_the_caffemodel_is_named(tmp_path):
    path = tmp_path / "fcn8s.caffemodel"
    path.write_text('name: "FCN8s"\nlayer {\n  name: "data"\n  type: "Input"\n}\n')
    with pytest.raises(ValueError, match=r"fcn8s\.caffemodel: this is a text prototxt \(it starts "
                                         r"with 'name: \"FCN8s\"'\).*needs the binary "
                                         r"\.caffemodel weights"):
        weights.read_caffemodel(path)


def test_the_tool_gives_its_flags_and_refuses_an_output_under_a_file(tmp_path, capsys):
    source = weights.save_npz(weights.read_weights(_tiny("8s")), str(tmp_path / "w.npz"))
    output = tmp_path / "out.npz"
    status, err = _convert_in_process(capsys, "--model=fcn8s", *TINY_FLAGS, f"--input={source}",
                                      f"--output={output}", "--rename=score_pool4=score_fr")
    assert status == 2 and "'score_fr' and 'score_pool4' (--rename=score_pool4=score_fr)" in err
    status, err = _convert_in_process(capsys, "--model=fcn8s", "--num_classes=21",
                                      *TINY_FLAGS[1:], f"--input={source}", f"--output={output}")
    assert status == 2 and "the model 21: pass --num_classes=3." in err, err
    assert "Traceback" not in err and not output.exists()
    (tmp_path / "x.npy").write_bytes(b"a file")
    status, err = _convert_in_process(capsys, "--model=fcn8s", *TINY_FLAGS, f"--input={source}",
                                      f"--output={tmp_path / 'x.npy' / 'out.npz'}")
    assert status == 2 and f"'{tmp_path / 'x.npy'}' is a file, not a folder" in err, err
