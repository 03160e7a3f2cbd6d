"""Tests of keras_fcn.labels: class colours and palettes, the ignore label."""

import numpy as np
import pytest

from keras_fcn.data.masks import palette_to_table
from keras_fcn import labels as labels_lib
from keras_fcn.labels import ModelLabels, check_colour, check_ignore_label


# Review 7: argument checks that disagreed between modules.


@pytest.mark.parametrize("make", [
    lambda p: ModelLabels(num_classes=2, palette=p),
    palette_to_table,
])
def test_a_fractional_palette_is_refused_not_truncated_to_black(make):
    with pytest.raises(ValueError, match=r"palette\[0\] must be an \(r, g, b\) colour of whole "
                                         r"numbers in 0..255. Received: \[0.6, 0.2, 0.9\]"):
        make([[0.6, 0.2, 0.9], [1.0, 0.5, 0.0]])


def test_whole_float_colours_still_pass_as_ints():
    assert ModelLabels(num_classes=2, palette=[[0, 0, 0], [1.0, 5, 6]]).palette == (
        (0, 0, 0), (1, 5, 6))
    codes, labels = palette_to_table({(0, 0, 0): 1, (1, 2, 3.0): np.int64(0)})
    assert codes.tolist() == [0, 66051] and labels.tolist() == [1, 0]
    codes, labels = palette_to_table(np.array([[0, 0, 0], [128, 0, 0]]))
    assert codes.tolist() == [0, 8388608] and labels.tolist() == [0, 1]
    assert check_colour(np.array([255, 0, 7])) == (255, 0, 7)


def test_a_string_ignore_label_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="ignore_label must be an integer or None. "
                                         "Received: ignore_label='255'"):
        check_ignore_label("255", 3)
    check_ignore_label(np.int64(255), 3)
    with pytest.raises(ValueError, match="ignore_label=1 is a class id"):
        check_ignore_label(1.0, 3)


def test_ignore_label_is_taken_alike_by_the_loss_the_metrics_and_the_data_sets():
    """The loss and metrics refused 255.0 (JSON's way of writing 255) that the data sets took,
    with another message: one rule and one message now."""
    from keras_fcn.datasets.base import DatasetInfo
    from keras_fcn.losses import SparseCategoricalCrossentropyIgnore
    from keras_fcn.metrics import MeanIU

    loss = SparseCategoricalCrossentropyIgnore(num_classes=3, ignore_label=255.0)
    metric = MeanIU(num_classes=3, ignore_label=np.float32(255))
    info = DatasetInfo("x", 3, None, ((0, 0, 0),) * 3, ignore_label=255.0)
    for value in (loss.get_config()["ignore_label"], metric.get_config()["ignore_label"],
                  info.ignore_label):
        assert value == 255 and type(value) is int
    labels = np.array([[[0, 255], [2, 1]]])
    logits = np.random.default_rng(0).normal(size=(1, 2, 2, 3)).astype("float32")
    plain = SparseCategoricalCrossentropyIgnore(num_classes=3, ignore_label=255)
    assert float(loss(labels, logits)) == float(plain(labels, logits))
    for make in (lambda v: SparseCategoricalCrossentropyIgnore(num_classes=3, ignore_label=v),
                 lambda v: MeanIU(num_classes=3, ignore_label=v),
                 lambda v: check_ignore_label(v, 3)):
        with pytest.raises(ValueError, match=r"^ignore_label must be an integer or None\. "
                                             r"Received: ignore_label=2\.5$"):
            make(2.5)
        with pytest.raises(ValueError, match=r"^ignore_label=1 is a class id; expected a "
                                             r"value outside \[0, 3\), e\.g\. 255"):
            make(1.0)


def test_model_labels_refuse_a_palette_on_the_0_to_1_scale():
    """ModelLabels took [[1.0, 0, 0], [0, 0, 1.0]] (each colour valid alone) and wrote
    near-black colours to labels.json and the export sidecars; one palette check now serves
    labels, overlays and exports."""
    from keras_fcn.inference import visualize

    assert visualize.check_palette is labels_lib.check_palette
    for make in (lambda p: ModelLabels(num_classes=2, palette=p),
                 lambda p: labels_lib.check_palette(p, max_colours=None)):
        with pytest.raises(ValueError, match=r"this float palette has every value in \[0, 1\] "
                                             r"\(max=1\.0\): a palette on the 0\.\.1 scale\?"):
            make([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert ModelLabels(num_classes=2, palette=[[1, 0, 0], [0, 0, 1]]).palette == (
        (1, 0, 0), (0, 0, 1))  # integers are 0..255 colours, dark or not
    assert ModelLabels(num_classes=2, palette=[[255.0, 0, 0], [0, 0, 1.0]]).palette == (
        (255, 0, 0), (0, 0, 1))
