"""Tests of keras_fcn.inference.files and keras_fcn.inference.predictor: what tools/predict.py
reads and writes (images, folders, videos, masks, reruns), on tiny models."""

import importlib.util
import os

import numpy as np
import pytest


# Review 7: argument checks that disagreed between modules.


@pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV not installed")
def test_a_video_without_decodable_frames_fails_instead_of_counting_files(tmp_path, monkeypatch):
    import keras

    from keras_fcn.inference import files, predictor, video
    from tiny import tiny_fcn

    model_path = str(tmp_path / "tiny.keras")
    tiny_fcn().save(model_path)
    clip = str(tmp_path / "clip.mp4")
    with video.VideoWriter(clip, fps=5) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
    monkeypatch.setattr(video, "read_video", lambda path: iter(()))  # opens, decodes nothing
    opts = predictor.PredictOptions(model=model_path, inputs=[clip],
                                    output_dir=str(tmp_path / "out"))
    report = files.run(opts)
    assert report.written == 0 and report.processed == 0
    assert [path for path, _ in report.failures] == [clip]
    assert "No frame of the video" in report.failures[0][1]
    assert not os.path.exists(tmp_path / "out" / "clip_overlay.mp4")
