"""Video reading and writing for inference, through PyAV (``pip install keras_fcn[video]``).

PyAV is imported only when a video is read or written; folders of frames need nothing extra.

Example:
    for frame in read_video("street.mp4"):       # RGB uint8 (H, W, 3)
        ...
    with VideoWriter("overlay.mp4", fps=25) as writer:
        writer.write(rgb_frame)
"""

import math
import numbers
import os
import tempfile
from fractions import Fraction

import numpy as np

from keras_fcn import io

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")

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
    """Returns ``{"fps": float, "frames": int or None, "width": int, "height": int}``.

    Example:
        video_info("street.mp4")["fps"]
    """
    av = _av()
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:  # audio only, or a damaged file
                raise ValueError(f"No video stream in {os.fspath(path)!r}")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 25
            return {"fps": float(rate), "frames": int(stream.frames) or None,
                    "width": stream.codec_context.width, "height": stream.codec_context.height}
    except av.error.FFmpegError as e:
        raise ValueError(f"Cannot read video {os.fspath(path)!r}: {e}") from e


def read_video(path):
    """Yields the frames of a video as RGB uint8 arrays ``(H, W, 3)``; a ValueError after
    the last one when the file holds fewer frames than its container declares (truncated).

    Args:
        path: a video file readable by FFmpeg.

    Returns:
        A generator of frames.

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
        count = 0
        try:
            for frame in container.decode(video=0):
                count += 1
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise ValueError(f"Cannot decode video {os.fspath(path)!r}: {e}") from e
        _check_complete(path, container, count)


def _check_complete(path, container, count):
    """Raises when the container promises more frames than were decoded: a truncated WebM
    (or other stream without an index) decodes its first frames without an error."""
    stream = container.streams.video[0]
    declared = int(stream.frames or 0)
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    expected = declared or (container.duration or 0) / 1e6 * rate
    # 10% and a frame of slack: a variable frame rate's average times the duration is an
    # estimate, and a declared count may include frames an edit list leaves out
    if expected and count < 0.9 * expected - 1:
        raise ValueError(
            f"Video {os.fspath(path)!r} ends after {count} frames, but its container "
            + (f"declares {declared}" if declared else
               f"lasts {container.duration / 1e6:.2f} s at {rate:g} fps (~{expected:.0f} frames)")
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
        self._container = self._av.open(self._tmp, mode="w")
        self._stream = None
        self._size = None  # (H, W) of the first frame: every frame must have it

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
        return stream

    def write(self, frame):
        """Appends one uint8 frame ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA, alpha kept
        by ``.webm`` only)."""
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
