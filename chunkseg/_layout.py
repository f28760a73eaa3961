"""Shape and dtype arithmetic shared by storage and graphs (no dask, no I/O)."""

from __future__ import annotations

import numpy as np

from ._validate import InputError

__all__ = ["band", "label_dtype", "level_steps", "pyramid_shapes"]


def pyramid_shapes(shape, chunks) -> list[tuple[int, ...]]:
    """Shapes of the label pyramid: Y and X halved until a level fits in one chunk."""
    shapes = [tuple(shape)]
    while (shapes[-1][-1] > chunks[-1] or shapes[-1][-2] > chunks[-2]) and len(shapes) < 12:
        prev = shapes[-1]
        shapes.append(prev[:-2] + tuple((n + 1) // 2 for n in prev[-2:]))
    return shapes


def level_steps(shapes) -> list[tuple[int, ...]]:
    """Integer strides from each pyramid level to the next; refuses other pyramids."""
    steps = []
    for above, below in zip(shapes[:-1], shapes[1:]):
        step = tuple(max(1, round(a / b)) for a, b in zip(above, below))
        if any(-(-a // s) != b for a, b, s in zip(above, below, step)):
            raise InputError(f"pyramid level of shape {below} is not an integer downsampling of "
                             f"{above}; chunkseg's label pyramids need integer factors")
        steps.append(step)
    return steps


def label_dtype(n: int) -> np.dtype:
    """The smallest unsigned dtype of at least 32 bits that holds labels 0..n."""
    return np.dtype(np.uint32) if n < 2**32 else np.dtype(np.uint64)


def band(index, grid, parts: int) -> int:
    """Which of ``parts`` contiguous raster-order bands of a chunk grid holds block ``index``.

    Bands differ in size by at most one chunk; a chunk's neighbours along
    the last axes share its band, and along the first axis they do except at
    the ``parts - 1`` seams.
    """
    linear, total = 0, 1
    for i, g in zip(index, grid):
        linear = linear * int(g) + int(i)
        total *= int(g)
    return min(linear * parts // total, parts - 1)
