"""Review of the session's changes (audit 5): what the review fixed.

1. ``nyud.convert_labeled_mat`` counts the HHA files it keeps in its "kept N files" log line
   (it skipped their computation, so ``write_example`` never saw them).
"""

import logging

from keras_fcn.datasets import nyud


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
