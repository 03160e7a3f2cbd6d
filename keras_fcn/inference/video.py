"""Video reading and writing for inference, through PyAV (``pip install keras_fcn[video]``).

PyAV is imported only when a video is read or written; folders of frames need nothing extra.

Frames are read upright: a phone video's display matrix (its rotation tag) is applied, as
images get their EXIF orientation, so the outputs line up with the video as players show it.
A variable frame rate is kept: ``read_video(path, times=True)`` gives each frame's time and
``VideoWriter.write(frame, time=...)`` writes the frame at it. Audio is not read or written.

Example:
    for frame, time in read_video("street.mp4", times=True):   # RGB uint8 (H, W, 3), seconds
        ...
    with VideoWriter("overlay.mp4", fps=25) as writer:
        writer.write(rgb_frame, time=time)
"""

import math
import numbers
import os
import tempfile
from fractions import Fraction

import numpy as np

from keras_fcn import io

# Read through FFmpeg (lower or upper case): phones (.3gp, .mov), camcorders (AVCHD .mts,
# .m2ts), broadcast (.ts), Windows Media (.wmv, .asf) and Flash (.flv, .f4v) included.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".3gp",
                    ".3g2", ".mts", ".m2ts", ".ts", ".wmv", ".asf", ".flv", ".f4v", ".vob",
                    ".ogv", ".mxf")

# Codec and pixel format per container. webm stores an alpha channel (VP9 yuva420p), so a
# mask can travel as the matte of the frame it belongs to.
_CODECS = {".mp4": ("libx264", "yuv420p"), ".webm": ("libvpx-vp9", "yuva420p"),
           ".mkv": ("libx264", "yuv420p"), ".avi": ("mpeg4", "yuv420p"),
           ".mov": ("libx264", "yuv420p")}


# Codecs that keep odd frame sizes; the others (H.264, MPEG-4: .mp4, .mkv, .avi, .mov by
# default) crop an odd width or height to the even size below it.
ODD_SIZE_CODECS = ("libvpx-vp9", "prores_ks")


def _av():
    try:
        import av
    except ImportError as e:
        raise ImportError(
            "Reading or writing video needs PyAV: `pip install keras_fcn[video]` "
            "(or `pip install av`). Folders of frames work without it."
        ) from e
    return av


def is_video_file(path):
    """True if ``path`` has a video file extension (see ``VIDEO_EXTENSIONS``)."""
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS


def video_info(path):
    """Describes a video as :func:`read_video` gives it: upright (display rotation applied).

    Returns:
        ``{"fps": float, "frames": int or None, "width": int, "height": int, "rotation": int}``:
        the average frame rate (a variable rate's average, never a container's time base),
        the frame count the container declares, the displayed size, and the degrees (0, 90,
        180 or 270) the stored frames are turned clockwise to stand upright (a mirroring
        display matrix, rare, is applied too).

    Raises:
        ValueError: the file cannot be opened or holds no video stream.

    Example:
        video_info("portrait.mp4")["rotation"]  # 90: stored 1920x1080, shown 1080x1920
    """
    av = _av()
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:  # audio only, or a damaged file
                raise ValueError(f"No video stream in {os.fspath(path)!r}")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            turn, rotation = (False, False, False), 0
            try:  # the display matrix travels with the frames: decode the first one
                first = next(container.decode(video=0), None)
            except av.error.FFmpegError:  # read_video names the damage
                first = None
            if first is not None:
                turn = _orientation(first)
                width, height = first.width, first.height
                rotation = -round(getattr(first, "rotation", 0) / 90) * 90 % 360
            if turn[0]:
                width, height = height, width
            return {"fps": float(_average_rate(stream)), "frames": int(stream.frames) or None,
                    "width": width, "height": height, "rotation": rotation}
    except av.error.FFmpegError as e:
        raise ValueError(f"Cannot read video {os.fspath(path)!r}: {e}") from e


def _average_rate(stream):
    """The stream's average frame rate. A Matroska file of a variable rate can report its time
    base (1000 fps) as the average; no average exceeds the base rate FFmpeg guesses."""
    average, base = stream.average_rate, stream.base_rate or stream.guessed_rate
    if average and (not base or average <= base * 1.001):
        return average
    return base or average or 25


def _orientation(frame):
    """How to turn a decoded frame upright: ``(transpose, flip rows, flip columns)``.

    The display matrix ``[a b u; c d v; x y w]`` maps a stored pixel ``(x, y)`` to
    ``(a x + c y, b x + d y)`` on screen (ISO 14496-12, FFmpeg's ``AV_FRAME_DATA_DISPLAYMATRIX``),
    so ``a = 0`` swaps the axes and a negative factor reverses one. PyAV's ``frame.rotation``
    (-90 for a portrait phone video: turn it 90 degrees clockwise) is the fallback.
    """
    matrix = None
    for key, data in dict(getattr(frame, "side_data", None) or {}).items():  # older PyAV: none
        if str(key).endswith("DISPLAYMATRIX"):
            matrix = np.frombuffer(bytes(data), dtype=np.int32)[:5]
    if matrix is not None and len(matrix) == 5:
        a, b, _, c, d = (int(v) for v in matrix)
        if a == 0 and d == 0 and b and c:
            return True, b < 0, c < 0
        if b == 0 and c == 0 and a and d:
            return False, d < 0, a < 0
    turns = round(getattr(frame, "rotation", 0) / 90) % 4  # counterclockwise quarter turns
    return {0: (False, False, False), 1: (True, True, False), 2: (False, True, True),
            3: (True, False, True)}[turns]


def _upright(pixels, turn):
    transpose, flip_rows, flip_columns = turn
    if transpose:
        pixels = pixels.transpose(1, 0, 2)
    if flip_rows:
        pixels = pixels[::-1]
    if flip_columns:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels) if any(turn) else pixels


def read_video(path, times=False):
    """Yields the frames of a video upright, as RGB uint8 arrays ``(H, W, 3)``; a ValueError
    after the last one when the file ends before its container does (truncated).

    The display matrix (a phone's rotation tag, see :func:`video_info`) is applied: a portrait
    video stored 320x240 with rotation -90 gives 240x320 frames, its stored top-left pixel at
    the top right.

    Args:
        path: a video file readable by FFmpeg.
        times: if True, yields ``(frame, time)``: the frame's time in seconds after the first
            frame (a ``Fraction``; None where the file gives none), for
            ``VideoWriter.write(..., time=time)`` to keep a variable frame rate.

    Returns:
        A generator of frames (of ``(frame, time)`` with ``times=True``).

    Raises:
        ValueError: the file cannot be opened or decoded, or is truncated.

    Example:
        frames = list(read_video("clip.mp4"))
    """
    av = _av()
    try:
        container = av.open(os.fspath(path))
    except av.error.FFmpegError as e:
        raise ValueError(f"Cannot read video {os.fspath(path)!r}: {e}") from e
    with container:
        if not container.streams.video:
            raise ValueError(f"No video stream in {os.fspath(path)!r}")
        count, turn, first, previous, span = 0, None, None, None, None
        try:
            for frame in container.decode(video=0):
                count += 1
                turn = _orientation(frame) if turn is None else turn
                time = None
                if frame.pts is not None and frame.time_base is not None:
                    first = frame.pts if first is None else first
                    time = Fraction(frame.pts - first) * frame.time_base
                    length = Fraction(frame.duration or 0) * frame.time_base
                    if not length and previous is not None:  # as long as the gap before it
                        length = time - previous
                    previous, span = time, time + length
                pixels = _upright(frame.to_ndarray(format="rgb24"), turn)
                yield (pixels, time) if times else pixels
        except av.error.FFmpegError as e:
            raise ValueError(f"Cannot decode video {os.fspath(path)!r}: {e}") from e
        _check_complete(path, container, count, span)


def _check_complete(path, container, count, span=None):
    """Raises when the container lasts longer than the decoded frames, or declares more frames
    than were decoded: a truncated WebM (or other stream without an index) decodes its first
    frames without an error.

    ``span``: seconds from the first frame to the end of the last one. The frame rate in the
    message is the decoded frames' (a variable rate's average: a Matroska file's average
    rate can be its time base, 1000 fps, and its frame count is not stored).
    """
    stream = container.streams.video[0]
    declared = int(stream.frames or 0)
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = (container.duration or 0) / 1e6
    rate = float(count / span if span else _average_rate(stream))
    expected = declared or duration * rate
    # 10% and a frame of slack: an edit list may leave out frames a declared count includes,
    # and the last frame's duration is a guess where the file gives none
    if declared or not span:
        short = expected and count < 0.9 * expected - 1
    else:
        short = float(span) < 0.9 * duration - 1 / rate
    if short:
        raise ValueError(
            f"Video {os.fspath(path)!r} ends after {count} frames, but its container "
            + (f"declares {declared}" if declared else f"lasts {duration:.2f} s"
               + (f" at {rate:g} fps (~{expected:.0f} frames)" if count else ""))
            + ": the file is truncated or damaged")


def _rate(fps):
    """``fps`` as the fraction the stream stores (0 for fps under 1/2002)."""
    return Fraction(float(fps)).limit_denominator(1001)


class VideoWriter:
    """Writes RGB (or RGBA for ``.webm``) uint8 frames to a video file, atomically.

    Frames go to a temporary file in the same folder that is renamed to ``path`` on a clean
    ``close()``; an exception inside the ``with`` block leaves no partial file.

    Frame size: every frame must have the size of the first one (a video has one size).
    VP9 (``.webm``) and ProRes (``codec="prores_ks"``) keep any size; H.264 and MPEG-4 (4:2:0)
    need even sizes, so an odd width or height loses its last column or row (a 41x33 frame is
    written 40x32, its top-left part), and a frame 1 pixel wide or high is refused there.

    Frame times: frame ``i`` is at ``i / fps`` unless ``write`` gets its ``time``: a source of
    variable frame rate keeps its timestamps (the masks of a clip line up with it in an
    editor). A time within 1 ms of ``i / fps`` stays there, so a constant-rate source gives the
    same file as without times. ``.avi`` stores a constant rate only and ignores ``time``.

    Args:
        path: output file; the extension picks the codec (``.mp4``: H.264, ``.webm``: VP9 with
            alpha, ``.avi``: MPEG-4).
        fps: frames per second, a finite number >= 1/1001 (the time base's resolution).
        overwrite: if False and ``path`` exists, raises ``FileExistsError``.

    Example:
        with VideoWriter("mask.webm", fps=25) as w:
            w.write(np.dstack([frame, mask]))  # mask as the alpha matte
    """

    def __init__(self, path, fps=25.0, overwrite=True):
        self.path = os.fspath(path)
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in _CODECS:
            raise ValueError(
                f"Unsupported video extension. Expected one of {sorted(_CODECS)}. "
                f"Received: path={self.path!r}"
            )
        if (isinstance(fps, bool) or not isinstance(fps, numbers.Real)
                or not math.isfinite(fps) or _rate(fps) <= 0):
            # NaN failed at the first frame, and fps < 1/2002 was written as 24 fps.
            raise ValueError(f"fps must be a finite number >= 1/1001. Received: fps={fps!r}")
        io.check_writable(self.path, overwrite)
        self._av = _av()
        self.codec, self.pix_fmt = _CODECS[ext]
        self.fps = fps
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", suffix=ext,
                                         dir=folder)
        os.close(fd)
        try:
            self._container = self._av.open(self._tmp, mode="w")
        except BaseException:  # no writer: no temporary file left behind either
            os.remove(self._tmp)
            raise
        self._stream = None
        self._size = None  # (H, W) of the first frame: every frame must have it
        self._timed = ext != ".avi"  # AVI has a constant frame rate: no pts of our own
        self._count, self._pts = 0, None  # frames written, pts of the last one

    def _open_stream(self, height, width):
        if self.codec in ODD_SIZE_CODECS:
            size = width, height
        else:  # H.264 and MPEG-4 4:2:0 need even sizes: the last column/row is cropped
            size = width - width % 2, height - height % 2
            if not all(size):
                raise ValueError(
                    f"{self.codec} cannot write frames 1 pixel wide or high (it needs even "
                    f"sizes). Received: a {width}x{height} frame for {self.path!r}; write a "
                    ".webm (VP9) instead")
        stream = self._container.add_stream(self.codec, rate=_rate(self.fps))
        stream.width, stream.height = size
        stream.pix_fmt = self.pix_fmt
        if self._timed:
            # 1/(rate numerator * 2^k) >= 1/10000 s: frames on the rate's grid get the time base,
            # and the same file, that the MP4 muxer picks for the rate; other times fit within it
            rate, scale = _rate(self.fps), 1
            while rate.numerator * scale < 10000:
                scale *= 2
            self._tick = Fraction(1, rate.numerator * scale)
            self._step = rate.denominator * scale  # ticks per frame
            stream.codec_context.time_base = self._tick
        return stream

    def _frame_pts(self, time):
        """pts (in ``self._tick`` s) of the next frame: on the grid of the rate unless ``time``
        (seconds) is more than 1 ms (or a quarter frame) away from it; after the last one."""
        pts = self._count * self._step
        if time is not None:
            tolerance = min(Fraction(1, 1000), Fraction(self._step, 4) * self._tick)
            if abs(Fraction(time) - pts * self._tick) > tolerance:
                pts = round(Fraction(time) / self._tick)
        if self._pts is not None and pts <= self._pts:  # an encoder needs rising times
            pts = self._pts + 1
        return pts

    def write(self, frame, time=None):
        """Appends one uint8 frame ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA, alpha kept
        by ``.webm`` and ProRes only), at ``time`` seconds (None: after the frame before, at
        ``fps``; see the class docstring)."""
        if time is not None and (isinstance(time, bool) or not isinstance(time, numbers.Real)
                                 or not math.isfinite(time)):
            raise ValueError(f"time must be a finite number of seconds or None. Received: "
                             f"time={time!r} for {self.path!r}")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
            raise ValueError(
                f"Frames must be uint8 (H, W, 3) or (H, W, 4). Received: shape={frame.shape}, "
                f"dtype={frame.dtype}"
            )
        if self._size is None:
            self._stream = self._open_stream(*frame.shape[:2])
            self._size = frame.shape[:2]
        elif frame.shape[:2] != self._size:
            # The encoder cropped a larger frame and rescaled a smaller one: a wrong video.
            raise ValueError(
                f"Every frame of a video must have the size of the first one, "
                f"{self._size[1]}x{self._size[0]} (W x H). Received: a "
                f"{frame.shape[1]}x{frame.shape[0]} frame for {self.path!r}")
        frame = frame[: self._stream.height, : self._stream.width]
        fmt = "rgba" if frame.shape[-1] == 4 else "rgb24"
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=fmt)
        if self._timed:
            self._pts = video_frame.pts = self._frame_pts(time)
            video_frame.time_base = self._tick
        self._count += 1
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self, keep=True):
        """Flushes and renames the file into place (``keep=False`` discards it)."""
        if self._container is None:
            return
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            self._container.close()
            if keep and self._stream is not None:
                io.set_default_permissions(self._tmp)
                os.replace(self._tmp, self.path)
        finally:
            self._container = None
            if os.path.exists(self._tmp):
                os.remove(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(keep=exc_type is None)
        return False
