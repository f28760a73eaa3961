"""Windows of a padded block at growing halos: the one retry of every checked kernel.

A padded block is cut from the image with the largest halo a task may need;
a kernel is tried on the window of the first halo and, when its run-time
check fails, on the next, with the data already at hand.
"""

from __future__ import annotations


def window(shape, core, halo: int):
    """``(outer, inner)``: the window of ``halo`` pixels around ``core`` within a block of
    ``shape``, and ``core`` within that window."""
    outer, inner = [], []
    for n, sl in zip(shape, core):
        lo, hi = max(sl.start - halo, 0), min(sl.stop + halo, n)
        outer.append(slice(lo, hi))
        inner.append(slice(sl.start - lo, sl.stop - lo))
    return tuple(outer), tuple(inner)


def first_proven(block, *, start, core, halos, kernel):
    """``kernel(window, start=, core=, halo=)`` on the windows of ``halos`` in turn, until it
    returns a result whose ``ok`` is true (or that is not None); returns ``(halo, result)``
    of the last try."""
    result, halo = None, None
    for halo in halos:
        outer, inner = window(block.shape, core, halo)
        result = kernel(block[outer], start=tuple(int(s) + o.start for s, o in zip(start, outer)),
                        core=inner, halo=halo)
        if result is not None and getattr(result, "ok", True):
            break
    return halo, result
