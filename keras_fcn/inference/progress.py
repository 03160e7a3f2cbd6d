"""A progress bar over frames: tqdm when installed, else ``keras.utils.Progbar``.

Example:
    with Progress(total=120, enabled=True) as progress:
        for frame in frames:
            progress.update(1)
"""

import sys


class Progress:
    """Counts frames and shows a bar on stderr (tqdm) or stdout (Keras); silent if disabled.

    Args:
        total: number of frames expected, or None if unknown.
        enabled: show a bar; the count is kept either way.
    """

    def __init__(self, total, enabled):
        self.count = 0
        self.bar = self.kind = None
        if not enabled:
            return
        try:
            from tqdm import tqdm

            self.bar, self.kind = tqdm(total=total, unit="frame", file=sys.stderr), "tqdm"
        except ImportError:
            import keras

            self.bar, self.kind = keras.utils.Progbar(total), "keras"

    def update(self, n):
        """Adds ``n`` frames."""
        self.count += n
        if self.kind == "tqdm":
            self.bar.update(n)
        elif self.kind == "keras":
            self.bar.update(self.count)

    def close(self):
        if self.kind == "tqdm":
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
