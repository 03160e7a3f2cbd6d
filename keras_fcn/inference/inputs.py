"""The inputs of a prediction run: files, folders, globs and videos as :class:`Item` s, and the
check that no output is written over an input.

Example:
    items = expand_inputs(["photos/", "clip.mp4"], "out", Report())
    check_outputs_apart(items, opts)   # ValueError naming an output that is an input
"""

import bisect
import collections
import dataclasses
import glob
import os

from keras_fcn import io
from keras_fcn.inference import video
from keras_fcn.inference.predictor import frame_output_names, mask_prefix, uncertainty_names


@dataclasses.dataclass
class Item:
    """One input: an image file (``kind="image"``) or a video (``kind="video"``).

    ``sequence`` names the frame sequence an image belongs to (its folder), or is None;
    ``folder`` names the input folder an image or video was listed from, or is None.
    """

    kind: str
    path: str
    out_dir: str
    stem: str
    sequence: str = None
    folder: str = None


def expand_inputs(inputs, output_dir, report):
    """Turns input paths (files, folders, globs, videos) into :class:`Item` s, in order.

    A folder's images are the frames of one sequence and its videos are predicted as videos,
    their outputs in the folder's output folder; a glob's images are the frames of one
    sequence too (named by the pattern), their outputs in ``output_dir``. Folders and globs
    are listed in natural order (:func:`keras_fcn.io.natural_key`: ``frame_2`` before
    ``frame_10``), the order their frames are smoothed in. Inputs that match nothing are
    recorded in ``report`` as failures, and a folder's files that are neither images nor
    videos as a warning. Files of one folder or glob that share a stem (``a.jpg``, ``a.png``)
    are named with their extension (``a_jpg``, ``a_png``), whatever else the folder holds: a
    name that hung on the listing's order gave a rerun's kept outputs to another file once a
    new one sorted first. Other inputs with a name already taken in one output folder get
    ``<name>_2``, ``<name>_3``, ... in the order given; so do a video and a folder whose
    outputs would share ``<output_dir>/<name>/`` (a video's per-frame files go to
    ``<out_dir>/<stem>/``). Each renamed input is said in ``report.warnings``.

    Example:
        >>> items = expand_inputs(["a/x.png", "b/x.png"], "out", Report())  # doctest: +SKIP
        >>> [item.stem for item in items]  # doctest: +SKIP
        ['x', 'x_2']
    """
    items, used = [], set()
    frame_dirs, folder_dirs = set(), {}  # per-frame folders of videos; input folder -> out_dir

    def add(kind, path, out_dir, sequence=None, folder=None, shared=()):
        stem, extension = os.path.splitext(os.path.basename(path))
        base = f"{stem}_{extension[1:]}" if stem in shared else stem
        unique, n = base, 1
        while (out_dir, unique) in used or kind == "video" and (
                os.path.normpath(os.path.join(out_dir, unique)) in
                frame_dirs | set(folder_dirs.values())):
            n += 1
            unique = f"{base}_{n}"
        used.add((out_dir, unique))
        if unique != stem:
            why = ("another file there has that stem" if base != stem
                   else f"{stem!r} is taken by an earlier input")
            report.warnings.append(f"{path}: outputs named {unique}_* ({why})")
        if kind == "video":
            frame_dirs.add(os.path.normpath(os.path.join(out_dir, unique)))
        items.append(Item(kind, path, out_dir, unique, sequence, folder))

    def add_file(path):
        if not video.is_video_file(path) and not _image_extension(path):
            report.warnings.append(
                f"{path}: read as an image, its extension being neither a video's "
                f"({', '.join(video.VIDEO_EXTENSIONS)}, any case) nor an image format's")
        add("video" if video.is_video_file(path) else "image", path, output_dir)

    def folder_out_dir(folder):
        key = os.path.normpath(folder)
        if key not in folder_dirs:
            name = os.path.basename(key)
            unique, n = name, 1
            while os.path.normpath(os.path.join(output_dir, unique)) in frame_dirs:
                n += 1
                unique = f"{name}_{n}"
            folder_dirs[key] = os.path.normpath(os.path.join(output_dir, unique))
        return folder_dirs[key]

    for value in inputs:
        if os.path.isdir(value):
            files, others = _listing(value)
            if others:
                report.warnings.append(
                    f"{value}: skipped {len(others)} file(s) that are neither images "
                    f"({', '.join(IMAGE_EXTENSIONS)}) nor videos: {', '.join(others[:5])}"
                    + (", ..." if len(others) > 5 else ""))
            if not files:
                report.fail(value, "folder holds no image or video files"
                            + (f" (only {', '.join(others[:3])}...)" if others else ""))
                continue
            out_dir = folder_out_dir(value)
            shared = _shared_stems(files)
            for f in files:  # a video in a folder is predicted as a video, its outputs beside
                path = os.path.join(value, f)
                if video.is_video_file(f):
                    add("video", path, out_dir, folder=value, shared=shared)
                else:
                    add("image", path, out_dir, value, folder=value, shared=shared)
        elif glob.has_magic(value) and not os.path.exists(value):
            paths = sorted((p for p in glob.glob(value) if os.path.isfile(p)), key=io.natural_key)
            if not paths:
                report.fail(value, "pattern matched no file")
            shared = _shared_stems(paths)
            for path in paths:  # its images are the frames of one sequence, as a folder's
                if video.is_video_file(path):
                    add("video", path, output_dir, shared=shared)
                else:
                    add("image", path, output_dir, value, shared=shared)
        elif os.path.isfile(value):
            add_file(value)
        else:
            report.fail(value, "no such file or folder")
    return items


# A folder's images: the data sets' extensions and GIF (its first frame; files.read_image says
# so). A GIF mask is refused in training data (palette index masks must be PNG or BMP).
IMAGE_EXTENSIONS = io.IMAGE_EXTENSIONS + (".gif",)


def _image_extension(path):
    """True if ``path`` has no extension or one of an image format Pillow reads."""
    from PIL import Image

    extension = os.path.splitext(path)[1].lower()
    return (not extension or extension in IMAGE_EXTENSIONS
            or extension in Image.registered_extensions())


def _listing(folder):
    """(images and videos of ``folder`` in natural order, its other files' names): hidden
    names, and other subfolders or names without an extension, are left out of both (a
    subfolder named like an image is listed: it fails, named, as an unreadable image)."""
    files, others = [], []
    for name in sorted(os.listdir(folder), key=io.natural_key):
        if name.startswith("."):
            continue
        if name.lower().endswith(IMAGE_EXTENSIONS) or video.is_video_file(name):
            files.append(name)
        elif os.path.splitext(name)[1] and os.path.isfile(os.path.join(folder, name)):
            others.append(name)
    return files, others


def _shared_stems(names):
    """The stems of ``names`` that more than one of them has (``a.jpg``, ``a.png``)."""
    stems = collections.Counter(os.path.splitext(os.path.basename(n))[0] for n in names)
    return {stem for stem, count in stems.items() if count > 1}


def _output_names(item, opts, maps):
    """``(exact names, name prefixes)`` of the files ``item`` writes in ``item.out_dir``:
    the mask names (class names) are known only once the model loads, so masks are a prefix."""
    prefixes = [mask_prefix(item.stem)] if opts.classes else []
    if item.kind == "video":
        return [f"{item.stem}_overlay.mp4"], prefixes
    return frame_output_names(item.stem, [], maps), prefixes


def check_outputs_apart(items, opts):
    """Raises ValueError, before any work, when an output of the run would be one of its
    inputs (``--overwrite`` would replace a photo not read yet; a rerun would read outputs as
    frames), or when a folder's outputs would go into that folder itself.

    Example:
        check_outputs_apart(expand_inputs(["photos"], ".", report), opts)  # photos/ -> ./photos/
    """
    real = os.path.realpath
    folders = {item.folder: item.out_dir for item in items if item.folder is not None}
    for folder, out_dir in folders.items():
        if real(out_dir) == real(folder):
            raise ValueError(
                f"--output_dir={opts.output_dir!r} puts the outputs of the input folder "
                f"{folder!r} into that folder itself, among its frames (a rerun would predict "
                "them, --overwrite could replace an input); choose another --output_dir.")
    for item in items:  # a pattern's images are a sequence too: not beside their outputs
        if (item.folder is None and item.sequence is not None and item.kind == "image"
                and real(os.path.dirname(os.path.abspath(item.path))) == real(item.out_dir)):
            raise ValueError(
                f"--output_dir={opts.output_dir!r} puts the outputs of the pattern "
                f"{item.sequence!r} into the folder of its images {item.out_dir!r} (a later "
                "run on that folder or pattern would predict them as frames); choose another "
                "--output_dir.")
    listed = {}  # real folder -> names of the inputs there
    for item in items:
        listed.setdefault(real(os.path.dirname(os.path.abspath(item.path))), []).append(
            os.path.basename(item.path))
    # each folder's names sorted (prefix search) and as a set (exact names), built once
    inputs = {folder: (sorted(names), set(names)) for folder, names in listed.items()}
    maps = uncertainty_names(opts.uncertainty)
    for item in items:
        out_dir = real(item.out_dir)
        here, here_set = inputs.get(out_dir, ([], set()))
        names, prefixes = _output_names(item, opts, maps)
        clash = [n for n in names if n in here_set]
        for prefix in prefixes:
            start = bisect.bisect_left(here, prefix)
            clash += [n for n in here[start:start + 1] if n.startswith(prefix)]
        clash = [os.path.join(out_dir, n) for n in clash]
        if item.kind == "video":  # per-frame PNGs in <out_dir>/<stem>/
            frames = os.path.join(out_dir, item.stem)
            clash += [os.path.join(frames, n) for n in inputs.get(frames, ([], set()))[0]
                      if n.startswith("frame_")]
        if clash:
            raise ValueError(
                f"An output of {item.path!r} would be the input {clash[0]!r}: predicting would "
                "replace it (--overwrite) or read it as a frame. Choose another --output_dir.")
