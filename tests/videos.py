"""Tiny videos written with PyAV, for the tests that read whole folders of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: Path, *, frames: int = 8, size: int = 32, seed: int = 0,
                fps: int = 8) -> Path:
    """An ``frames``-frame ``size x size`` MPEG-4 clip of a moving bright square on noise."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            corner = (seed * 3 + 2 * t) % (size - 8)
            image[corner: corner + 8, corner: corner + 8] = (255, 200 - 20 * (seed % 5), 40)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
