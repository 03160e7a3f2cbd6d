"""Existing outputs of tools/predict.py (walkthrough of session 25), each failing before its fix:
a folder or a foreign file at a video output's name was "kept"; with --overwrite a folder there
named a hidden temporary file and left another behind; a foreign greyscale PNG was kept as an
image's label map; and --classes refused class1, the name the masks of unnamed classes carry."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_fcn.inference import files, video
from keras_fcn.inference.predictor import PredictOptions, resolve_classes
from tiny import saved_raw_rgb_fcn
from tool_flags import one_error_line, run_in_process

KEPT = "It was kept; move it, or pass --overwrite to replace it"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), 3, seed=4)[1]


def _video(path, frames, width, height, seed=0):
    rng = np.random.default_rng(seed)
    with video.VideoWriter(str(path), fps=10) as writer:
        for _ in range(frames):
            writer.write(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return str(path)


def _photo(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return str(path)


def _run(model_path, inputs, out, **options):
    return files.run(PredictOptions(model=model_path, inputs=inputs, output_dir=str(out),
                                    classes=["1"], **options))


def _hidden(folder):
    """Hidden (temporary) or empty files under ``folder``."""
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
            if name.startswith(".") or os.path.getsize(os.path.join(root, name)) == 0]


def test_a_folder_or_a_foreign_file_at_a_video_output_fails_the_video(model_path, tmp_path):
    """A folder at v_overlay.mp4 and a text file at v_mask_class1.mp4 were "kept 2 existing"
    (exit 0); a video of another size or length was kept as this video's output too."""
    clip = _video(tmp_path / "v.mp4", 6, 32, 24)
    out = tmp_path / "out"
    overlay, mask = out / "v_overlay.mp4", out / "v_mask_class1.mp4"
    overlay.mkdir(parents=True)
    mask.write_text("not a video")
    report = _run(model_path, [clip], out)
    assert report.failures == [(clip, f"its output {str(overlay)!r} is a folder; move it or "
                                "choose another --output_dir")]
    assert (report.written, report.skipped, report.processed) == (0, 0, 0)
    overlay.rmdir()
    report = _run(model_path, [clip], out)
    assert len(report.failures) == 1 and report.written == report.processed == 0
    message = report.failures[0][1]
    assert message.startswith(f"its output {str(mask)!r} exists but is not a readable video (")
    assert message.endswith(f": it is not this video's mask video. {KEPT}")
    assert mask.read_text() == "not a video" and sorted(os.listdir(out)) == ["v_mask_class1.mp4"]
    for foreign, what in ((_video(tmp_path / "small.mp4", 6, 20, 16), "is 16x20 pixels (HxW), "
                           "not 24x32"),
                          (_video(tmp_path / "short.mp4", 2, 32, 24), "has 2 frames, not 6")):
        os.replace(foreign, mask)
        kept = mask.read_bytes()
        report = _run(model_path, [clip], out)
        assert report.failures == [(clip, f"its output {str(mask)!r} exists but {what}: it is "
                                    f"not this video's mask video. {KEPT}")]
        assert mask.read_bytes() == kept and not overlay.exists()
    mask.unlink()
    # the tool's own outputs are kept, odd sizes (cropped mp4, whole webm) included
    odd = _video(tmp_path / "odd.webm", 3, 33, 25)  # VP9 keeps the odd size
    for fmt in ("mp4", "webm"):
        opts = {"video_format": fmt, "output_dir": str(tmp_path / fmt)}
        first = files.run(PredictOptions(model=model_path, inputs=[clip, odd], classes=["1"],
                                         **opts))
        assert not first.failures and first.written == 4 + 9 * 2 and first.processed == 9
        again = files.run(PredictOptions(model=model_path, inputs=[clip, odd], classes=["1"],
                                         **opts))
        # the webm input declares no frame count: its frames are predicted again, all kept
        assert not again.failures and again.written == 0 and again.processed == 3
        assert again.skipped == 4 + 9 * 2  # 2 videos each, a label map and a mask a frame


def test_overwrite_names_a_folder_at_a_video_output_and_leaves_no_temporary_file(
        model_path, tmp_path, monkeypatch):
    """--overwrite: "[Errno 21] Is a directory: '.../.v_overlay.mp4.qo9k_6kd.mp4' ->
    '.../v_overlay.mp4'" (a hidden temporary file named, the run stopped) and a 0-byte
    .v_mask_class1.mp4.*.mp4 left behind; the folder stays."""
    clip = _video(tmp_path / "v.mp4", 3, 32, 24)
    out = tmp_path / "out"
    overlay = out / "v_overlay.mp4"
    overlay.mkdir(parents=True)
    (out / "v_mask_class1.mp4").write_bytes(b"old")
    done = run_in_process("tools/predict.py", f"--model={model_path}", "--noprogress",
                          "--classes=1", "--overwrite", f"--output_dir={out}", clip,
                          positional=True)
    assert done.returncode == 1, done.stderr
    assert (f"  {clip}: its output {str(overlay)!r} is a folder; move it or choose another "
            "--output_dir") in done.stderr.splitlines()
    assert overlay.is_dir() and (out / "v_mask_class1.mp4").read_bytes() == b"old"
    assert not _hidden(out) and sorted(os.listdir(out)) == ["v_mask_class1.mp4", "v_overlay.mp4"]
    # a folder that appears after the check (another program): every writer is still closed,
    # the folder named, no temporary file left, the mask video written
    monkeypatch.setattr(files, "video_outputs_problem", lambda *args: None)
    report = _run(model_path, [clip], out, overwrite=True)
    assert len(report.failures) == 1, report.failures
    assert report.failures[0][1].startswith(f"cannot write its output {str(overlay)!r} "
                                            "(IsADirectoryError: ")
    assert overlay.is_dir() and not _hidden(out) and report.written == 1 + 3 * 2
    assert video.video_info(str(out / "v_mask_class1.mp4"))["frames"] == 3


def test_a_kept_label_map_must_be_a_palette_map_of_the_models_class_ids(model_path, tmp_path):
    """A greyscale photo of the image's size at x_labels.png was kept as its label map while
    x_overlay.png came from fresh labels; so was a palette PNG holding ids the model lacks."""
    image = _photo(tmp_path / "x.png", 32, 24)
    out = tmp_path / "out"
    out.mkdir()
    labels = out / "x_labels.png"
    grey = np.random.default_rng(1).integers(0, 256, (24, 32), dtype=np.uint8)
    grey[0, 0] = 255
    Image.fromarray(grey, mode="L").save(labels)
    kept = labels.read_bytes()
    report = _run(model_path, [image], out)
    assert report.failures == [(image, f"its output {str(labels)!r} exists but is a L-mode PNG, "
                                f"not a palette (P) label map: it is not this image's label "
                                f"map. {KEPT}")]
    assert labels.read_bytes() == kept and os.listdir(out) == ["x_labels.png"]
    palette = Image.fromarray(np.full((24, 32), 7, np.uint8), mode="P")
    palette.putpalette([0, 0, 0] * 256)
    palette.save(labels)
    report = _run(model_path, [image], out)
    assert report.failures == [(image, f"its output {str(labels)!r} exists but holds the value "
                                "7, not a class id of the model's 3 classes (0..2): it is not "
                                f"this image's label map. {KEPT}")]
    assert report.written == 0 and os.listdir(out) == ["x_labels.png"]
    # --overwrite replaces it; the tool's own label map is kept afterwards
    assert not _run(model_path, [image], out, overwrite=True).failures
    with Image.open(labels) as written:
        assert written.mode == "P" and np.asarray(written).max() < 3
    again = _run(model_path, [image], out)
    assert not again.failures and again.skipped == 3 and again.written == 0
    # a video frame's label map too
    clip = _video(tmp_path / "v.mp4", 2, 32, 24)
    frame_labels = out / "v" / "frame_000001_labels.png"
    frame_labels.parent.mkdir()
    Image.fromarray(grey, mode="L").save(frame_labels)
    report = _run(model_path, [clip], out)
    assert report.failures == [(clip, f"its output {str(frame_labels)!r} exists but is a L-mode "
                                "PNG, not a palette (P) label map: it is not this image's label "
                                f"map. {KEPT}")]
    assert os.listdir(out / "v") == ["frame_000001_labels.png"]


def test_classes_takes_the_names_the_masks_of_unnamed_classes_carry(model_path, tmp_path):
    """A 3-class model without labels writes *_mask_class1; --classes=class1 was refused
    ("Known: ids 0..2") and the help said class names fell back to the PASCAL VOC ones."""
    image = _photo(tmp_path / "x.png", 32, 24)
    done = run_in_process("tools/predict.py", f"--model={model_path}", "--noprogress",
                          "--classes=class1,2", f"--output_dir={tmp_path / 'out'}", image,
                          positional=True)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["x_labels.png", "x_mask_class1.png",
                                                    "x_mask_class2.png", "x_overlay.png"]
    done = run_in_process("tools/predict.py", f"--model={model_path}", "--classes=class3",
                          f"--output_dir={tmp_path / 'no'}", image, positional=True)
    assert one_error_line(done) == ("error: Unknown class. Received: 'class3'. Known: ids 0..2 "
                                    "or names class0..class2")
    # a class's own name wins; unnamed ones (no usable name) keep class<id>
    assert resolve_classes(["CLASS2", "Car", "?"], ["bg", "class2", "car", "?"], 4) == [1, 2, 3]
    assert resolve_classes(["class1"], ["bg", "?"], 2) == [1]
    with pytest.raises(ValueError, match=r"^Unknown class. Received: 'bus'. Known: bg, car "
                                          r"\(names\) or ids 0..1$"):
        resolve_classes(["bus"], ["bg", "car"], 2)
    with open("tools/predict.py", encoding="utf-8") as f:
        text = f.read()
    assert "else the PASCAL VOC ones" not in text
    assert "--classes takes ids or those names (--classes=class1 or 1)" in text
