"""Tests of keras_fcn.labels: class colours and palettes, the ignore label."""

import numpy as np
import pytest

from keras_fcn.data.masks import palette_to_table
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
