"""A walkthrough of video prediction and weights conversion (found by a reviewer): a pattern's
outputs written among its images, Ctrl-C tracebacks, a "kept 0 existing" line, and converter
messages that pointed the wrong way for a broken file."""

import os
import types

import numpy as np
import pytest

from keras_fcn.inference.files import Report, print_report
from keras_fcn.inference.inputs import check_outputs_apart, expand_inputs
from keras_fcn.training.cli import INTERRUPTED_STATUS, run_main
from keras_fcn.weights import load_npz


def _frames(folder, count=3):
    from PIL import Image

    folder.mkdir()
    for i in range(1, count + 1):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"frame_{i}.png")
    return folder


def _opts(output_dir):
    return types.SimpleNamespace(output_dir=str(output_dir), classes="", uncertainty="")


def test_a_patterns_outputs_among_its_images_are_refused(tmp_path):
    """They went beside the frames; a later folder run predicted 36 'frames' of 12."""
    frames = _frames(tmp_path / "frames")
    pattern = str(frames / "*.png")
    items = expand_inputs([pattern], str(frames), Report())
    assert [item.stem for item in items] == ["frame_1", "frame_2", "frame_3"]
    with pytest.raises(ValueError, match=r"^--output_dir='.*frames' puts the outputs of the "
                                         r"pattern '.*\*\.png' into the folder of its images"):
        check_outputs_apart(items, _opts(frames))
    elsewhere = expand_inputs([pattern], str(tmp_path / "out"), Report())
    check_outputs_apart(elsewhere, _opts(tmp_path / "out"))  # another folder: fine
    one = expand_inputs([str(frames / "frame_1.png")], str(frames), Report())
    check_outputs_apart(one, _opts(frames))  # one photo's outputs beside it: as before


def test_the_report_says_kept_only_when_outputs_were_kept(capsys):
    print_report(Report(written=2, processed=1))
    assert capsys.readouterr().out == "processed 1 frame, wrote 2 files\n"
    print_report(Report(written=0, processed=0, skipped=4))
    assert capsys.readouterr().out == ("processed 0 frames, wrote 0 files, kept 4 existing "
                                       "(use --overwrite to replace)\n")


def test_ctrl_c_is_one_line_and_the_shells_status(capsys):
    def main(argv):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        run_main(main, argv=["prog"])
    assert exit_.value.code == INTERRUPTED_STATUS == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted (Ctrl-C): every output written so far is complete")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_random_npz_is_named_broken_not_pickled(tmp_path):
    """numpy said "load it unsafely using allow_pickle=": no option of ours, nor the cause."""
    path = tmp_path / "rand.npz"
    path.write_bytes(bytes(range(7, 207)))
    with pytest.raises(ValueError, match=r"rand\.npz: not an \.npz archive \(numpy\.savez "
                                         r"writes a zip file; this one starts with "
                                         r"b'\\x07\\x08\\t\\n'\): a broken file"):
        load_npz(path)
    np.save(tmp_path / "one.npy", np.zeros(2))  # an .npy: still its own message
    (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
    with pytest.raises(ValueError, match="expected an .npz archive, got a single array"):
        load_npz(tmp_path / "one.npz")


def test_a_random_pth_is_named_broken_not_a_pickled_model(tmp_path):
    """torch's weights_only failure on random bytes read 'a whole model saved with
    torch.save(model)? save model.state_dict()'."""
    pytest.importorskip("torch")
    from keras_fcn.weights import load_torch_state_dict

    path = tmp_path / "rand.pth"
    path.write_bytes(bytes(range(7, 207)) * 15)
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(str(path))
    assert str(info.value) == (
        f"{path}: not a readable PyTorch file: its first bytes b'\\x07\\x08\\t\\n' are "
        "neither the zip archive torch.save writes nor a pickle: a broken file or another "
        "format")


def test_a_lock_removes_the_temporary_files_a_killed_writer_left(tmp_path):
    """A SIGKILLed video run left hidden .<name>.<random>.mp4 files that no run removed."""
    from keras_fcn import io

    out = tmp_path / "out"
    out.mkdir()
    stale = [".clip_overlay.mp4.30whb4i1.mp4", ".m.weights.h5.abcdefgh.weights.h5",
             ".notes.abc_1234.tmp"]
    kept = [".hidden", ".x.png.notrandomlong.png", ".clip.mp4.30WHB4I1.mp4", "clip.mp4",
            ".clip.mp4.30whb4i1.png"]
    for name in stale + kept:
        (out / name).write_bytes(b"")
    (out / ".saved_model.k2j4h5g6").mkdir()  # atomic_write_dir's holder folder
    (out / ".saved_model.k2j4h5g6" / "out").mkdir()
    assert io.stale_temp_files(out) == sorted(stale + [".saved_model.k2j4h5g6"])
    with io.directory_lock(out, "predict"):
        assert sorted(os.listdir(out)) == sorted(kept + [io.LOCK_FILE])
    assert sorted(os.listdir(out)) == sorted(kept)
    seen = []  # the writers' own temporary names are what it finds

    def write(tmp):
        os.makedirs(tmp) if tmp.endswith("out") else open(tmp, "w").close()
        seen.append((os.path.relpath(tmp, out).split(os.sep)[0], io.stale_temp_files(out)))

    io.atomic_write(out / "m.weights.h5", write)
    io.atomic_write_dir(out / "saved", write)
    assert [name in listed for name, listed in seen] == [True, True], seen
    assert io.stale_temp_files(out) == []
