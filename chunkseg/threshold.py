"""Global thresholds from Dask reductions, and a chunked local threshold.

Each global threshold returns the number its ``skimage.filters`` twin returns
on the whole in-memory array, computed from per-chunk partials combined in a
tree: exact ``bincount`` counts for integer images, and counts over the
global-min/max edges numpy itself would pick for float images. Two passes over
the data (range, then histogram), and nothing image-sized in any task.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import dask
import dask.array as da
import numpy as np
import skimage.filters

from . import _graph
from ._kernels import histogram as _hk
from ._validate import InputError, check_image_array, check_numeric_for_threshold
from .filters import gaussian_reach

__all__ = [
    "METHODS",
    "threshold",
    "threshold_isodata",
    "threshold_li",
    "threshold_local",
    "threshold_mean",
    "threshold_minimum",
    "threshold_multiotsu",
    "threshold_otsu",
    "threshold_triangle",
    "threshold_yen",
    "image_range",
    "image_histogram",
]

log = logging.getLogger(__name__)

#: Largest integer range (max - min + 1) histogrammed exactly (2**25 bins = 256 MiB per partial).
MAX_INTEGER_BINS = 2**25


class _Counted:
    """An 8- or 16-bit image known by its exact histogram over its dtype's range
    (what :func:`range_and_histogram` computes first): the histogram methods
    run on it inside a task, see :func:`pending_threshold`."""

    def __init__(self, full: np.ndarray, dtype):
        self.full = full
        self.dtype = np.dtype(dtype)


def _prepare(image) -> da.Array:
    if isinstance(image, _Counted):
        return image
    x = _graph.as_dask(image)
    check_image_array(x.shape, x.dtype)
    check_numeric_for_threshold(x.dtype)
    return x


def _locate_first_nonfinite(x: da.Array) -> tuple[int, ...]:
    """Global index of the first non-finite value in raster order (error path only)."""
    blocks = x.to_delayed().ravel()
    origins = _graph.block_origins(x.chunks)
    found = dask.compute(*[dask.delayed(_hk.first_nonfinite)(b) for b in blocks])
    best = None
    for idx, local in zip(np.ndindex(x.numblocks), found):
        if local is None:
            continue
        glob = tuple(int(origins[a][i]) + local[a] for a, i in enumerate(idx))
        if best is None or glob < best:
            best = glob
    return best


#: ``(min, max)`` of the float images whose range was computed last, by dask name (a name
#: is a token of the graph, so the same name is the same pixels): the NaN check of a run
#: and its threshold then read the image once for both (one pass over it less; a stain's
#: optical density is computed from the RGB again on every pass)
_RANGES: dict = {}


def image_range(image):
    """Global ``(min, max)`` of ``image`` as scalars of its dtype, in one pass.

    Raises ``InputError`` naming how many values are NaN or infinite, and
    where the first one is, for float images that hold any.
    """
    x = _prepare(image)
    if x.dtype.kind == "f" and x.name in _RANGES:
        return _RANGES[x.name]
    if x.dtype.kind == "f":
        bad = _graph.summed_partials(x, _hk.count_nonfinite, 1, np.int64)
        lo, hi, nbad = dask.compute(x.min(), x.max(), bad)
        nbad = int(nbad[0])
        if nbad:
            where = _locate_first_nonfinite(x)
            raise InputError(
                f"image holds {nbad} NaN or infinite value{'s' if nbad > 1 else ''} "
                f"(first at index {where}); replace them (e.g. numpy.nan_to_num) first"
            )
    else:
        lo, hi = dask.compute(x.min(), x.max())
        return x.dtype.type(lo), x.dtype.type(hi)
    while len(_RANGES) >= 8:
        _RANGES.pop(next(iter(_RANGES)))
    _RANGES[x.name] = (x.dtype.type(lo), x.dtype.type(hi))
    return _RANGES[x.name]


def image_histogram(image, nbins: int = 256, *, value_range=None):
    """``(counts, bin_centers)`` exactly as ``skimage.exposure.histogram`` gives them.

    Integer images get one bin per value from the global minimum to the global
    maximum (``nbins`` is ignored, as in scikit-image); float images get
    ``nbins`` bins between the global minimum and maximum. ``counts`` are
    int64. ``value_range`` is the ``(min, max)`` from :func:`image_range` when
    already known.
    """
    x = _prepare(image)
    lo, hi = image_range(x) if value_range is None else value_range
    if x.dtype.kind in "iu":
        if x.dtype == np.uint64 and int(hi) > np.iinfo(np.int64).max:
            raise InputError("uint64 image has values above 2**63 - 1; rescale it first")
        length = int(hi) - int(lo) + 1
        if length > MAX_INTEGER_BINS:
            raise InputError(
                f"integer image spans {length} distinct values ({lo}..{hi}), more than "
                f"{MAX_INTEGER_BINS} histogram bins; rescale it or convert it to float"
            )
        counts = _graph.summed_partials(
            x, _hk.bincount, length, np.int64, kwargs={"offset": int(lo), "length": length}
        ).compute()
        centers = np.arange(int(lo), int(hi) + 1)
    else:
        nbins = int(nbins)
        if nbins < 1:
            raise InputError(f"`nbins` must be at least 1, got {nbins}")
        counts = _graph.summed_partials(
            x, _hk.histogram, nbins, np.int64, kwargs={"nbins": nbins, "low": lo, "high": hi}
        ).compute()
        centers = _hk.histogram_centers(x.dtype, nbins=nbins, low=lo, high=hi)
    return counts, centers


def range_and_histogram(image, nbins: int = 256):
    """``(min, max, counts, bin_centers)`` in as few passes as the dtype allows.

    8- and 16-bit integer images take one pass: an exact bincount over the
    whole dtype range, trimmed to the values present. Others take two: the
    range, then the histogram over it. ``counts`` and ``bin_centers`` are
    those of :func:`image_histogram` (``None`` for a constant image).
    """
    x = _prepare(image)
    if x.dtype.kind in "iu" and x.dtype.itemsize <= 2:
        info = np.iinfo(x.dtype)
        full = x.full if isinstance(x, _Counted) else _full_histogram(x).compute()
        present = np.flatnonzero(full)
        first, last = int(present[0]), int(present[-1])
        lo, hi = x.dtype.type(first + int(info.min)), x.dtype.type(last + int(info.min))
        if lo == hi:
            return lo, hi, None, None
        return lo, hi, full[first:last + 1], np.arange(int(lo), int(hi) + 1)
    lo, hi = image_range(x)
    if lo == hi:
        return lo, hi, None, None
    counts, centers = image_histogram(x, nbins, value_range=(lo, hi))
    return lo, hi, counts, centers


def _full_histogram(x: da.Array) -> da.Array:
    """Lazy exact counts of every value of an 8- or 16-bit integer image's dtype."""
    info = np.iinfo(x.dtype)
    length = int(info.max) - int(info.min) + 1
    return _graph.summed_partials(
        x, _hk.bincount, length, np.int64, kwargs={"offset": int(info.min), "length": length}
    )


#: Methods whose value on an 8- or 16-bit image is a function of its histogram alone.
_FROM_HISTOGRAM = ("otsu", "yen", "isodata", "minimum", "li", "triangle", "mean")


def pending_threshold(image, method: str):
    """The threshold ``method`` of ``image`` as a lazy 0-d dask array, or None.

    For 8- and 16-bit integer images and the methods of one histogram pass
    (otsu, yen, isodata, minimum, li, triangle, mean), the value is computed
    from the histogram inside a task, so the work that depends on it can be
    submitted before it is known: on a cluster the seed pass then starts as
    the histogram ends, without a round trip through this process (0.25 s
    idle on two workers, 16384^2). None for other images and methods: use
    :func:`threshold`. The value equals :func:`threshold`'s.
    """
    x = _prepare(image)
    if method not in _FROM_HISTOGRAM or not (x.dtype.kind in "iu" and x.dtype.itemsize <= 2):
        return None
    full = _full_histogram(x)
    # declared float64 (it holds every threshold of these images exactly); the
    # value keeps the type the method returns
    return full.map_blocks(_threshold_of_counts, method=method, image_dtype=x.dtype,
                           drop_axis=0, chunks=(), dtype=np.float64,
                           meta=np.empty((), dtype=np.float64))


def _threshold_of_counts(full: np.ndarray, *, method: str, image_dtype) -> np.ndarray:
    return np.asarray(threshold(_Counted(full, image_dtype), method))


def _histogram_method(skimage_func: Callable, image, nbins, hist, *, normalize=False, **kwargs):
    """Run a histogram-based scikit-image threshold on the chunked histogram."""
    if hist is not None:
        return _call_skimage(skimage_func, None, hist=hist, nbins=nbins, **kwargs)
    x = _prepare(image)
    lo, hi, counts, centers = range_and_histogram(x, nbins)
    if lo == hi:
        # A constant image: the answer depends on the value and dtype only, and
        # scikit-image treats it specially; ask it on one pixel.
        return _call_skimage(skimage_func, np.full(1, lo, dtype=x.dtype), nbins=nbins, **kwargs)
    if normalize:
        counts = counts / np.sum(counts)
    return _call_skimage(skimage_func, None, hist=(counts, centers), nbins=nbins, **kwargs)


def _call_skimage(func, image, **kwargs):
    try:
        return func(image, **kwargs)
    except RuntimeError as exc:  # threshold_minimum: "Unable to find two maxima"
        raise InputError(f"{func.__name__}: {exc}; choose another threshold method") from exc
    except IndexError as exc:  # threshold_isodata on a constant float image
        raise InputError(
            f"{func.__name__} finds no threshold in this image (is it constant?)"
        ) from exc


def threshold_otsu(image=None, nbins=256, *, hist=None):
    """Otsu's threshold, equal to ``skimage.filters.threshold_otsu(image)``.

    Parameters
    ----------
    image : (M, N[, P]) dask or numpy array, optional
        Grayscale image; may be far larger than memory.
    nbins : int, optional
        Number of bins for float images (ignored for integer images).
    hist : array or (counts, bin_centers), optional
        A precomputed histogram; then ``image`` is ignored.

    Returns
    -------
    threshold : number
        Pixels brighter than this are foreground.

    Notes
    -----
    Two passes over the data: the global range, then exact per-chunk
    histograms added in a tree. The result is bit-identical to scikit-image.

    References
    ----------
    .. [1] N. Otsu, "A threshold selection method from gray-level histograms",
       IEEE Trans. Sys. Man Cyber. 9(1):62-66, 1979. :DOI:`10.1109/TSMC.1979.4310076`

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> image = da.from_array(np.array([[1, 1, 9], [9, 9, 1]], dtype=np.uint8), chunks=1)
    >>> int(threshold_otsu(image))
    1
    """
    return _histogram_method(skimage.filters.threshold_otsu, image, nbins, hist)


def threshold_yen(image=None, nbins=256, *, hist=None):
    """Yen's threshold, equal to ``skimage.filters.threshold_yen(image)``.

    Same parameters and exactness as :func:`threshold_otsu`.
    """
    return _histogram_method(skimage.filters.threshold_yen, image, nbins, hist)


def threshold_isodata(image=None, nbins=256, return_all=False, *, hist=None):
    """ISODATA threshold, equal to ``skimage.filters.threshold_isodata(image)``.

    Same parameters and exactness as :func:`threshold_otsu`; ``return_all``
    returns every threshold that satisfies the ISODATA criterion.
    """
    return _histogram_method(
        skimage.filters.threshold_isodata, image, nbins, hist, return_all=return_all
    )


def threshold_minimum(image=None, nbins=256, max_num_iter=10000, *, hist=None):
    """Minimum-method threshold, equal to ``skimage.filters.threshold_minimum(image)``.

    Raises ``ValueError`` where scikit-image raises (a histogram that does
    not smooth to two maxima).
    """
    return _histogram_method(
        skimage.filters.threshold_minimum, image, nbins, hist, max_num_iter=max_num_iter
    )


def threshold_multiotsu(image=None, classes=3, nbins=256, *, hist=None):
    """Multi-Otsu thresholds, equal to ``skimage.filters.threshold_multiotsu(image)``.

    Returns ``classes - 1`` thresholds; ``numpy.digitize(image, thresholds)``
    gives the class map.
    """
    return _histogram_method(
        skimage.filters.threshold_multiotsu, image, nbins, hist, normalize=hist is None,
        classes=classes,
    )


def threshold_triangle(image, nbins=256):
    """Triangle threshold, equal to ``skimage.filters.threshold_triangle(image)``.

    References
    ----------
    .. [1] G. W. Zack, W. E. Rogers, S. A. Latt, "Automatic measurement of
       sister chromatid exchange frequency", J. Histochem. Cytochem. 25(7):
       741-753, 1977. :DOI:`10.1177/25.7.70454`
    """
    x = _prepare(image)
    lo, hi, counts, centers = range_and_histogram(x, nbins)
    if lo == hi:
        return lo
    return _triangle_from_histogram(counts, centers)


def _triangle_from_histogram(counts: np.ndarray, centers: np.ndarray):
    """The triangle method on a histogram whose end bins are non-empty."""
    nbins = len(counts)
    peak = int(np.argmax(counts))
    peak_height = counts[peak]
    low, high = np.flatnonzero(counts)[[0, -1]]
    # Work on the longer tail; mirror the histogram when it lies above the peak.
    flip = peak - low < high - peak
    if flip:
        counts = counts[::-1]
        low = nbins - high - 1
        peak = nbins - peak - 1
    width = peak - low
    xs = np.arange(width)
    ys = counts[xs + low]
    norm = np.sqrt(peak_height**2 + width**2)
    peak_height = peak_height / norm
    width = width / norm
    # Distance from each histogram point to the line from (low, 0) to the peak.
    distance = peak_height * xs - width * ys
    level = int(np.argmax(distance)) + low
    if flip:
        level = nbins - level - 1
    return centers[level]


def threshold_mean(image):
    """Mean of the image, as ``skimage.filters.threshold_mean(image)``.

    Integer images give the exact answer (the sum is computed exactly from
    the histogram). On float images the sum's rounding follows the summation
    order, so the result may differ from scikit-image by that rounding alone
    (relative 1e-6 for float32, 1e-12 for float64).
    """
    x = _prepare(image)
    if x.dtype.kind in "iu":
        lo, hi, counts, centers = range_and_histogram(x)
        if lo == hi:
            return np.float64(lo)
        total = int(np.dot(counts.astype(object), centers.astype(object)))
        return np.float64(total) / np.float64(int(counts.sum()))
    return x.dtype.type(x.mean(dtype=np.float64).compute())


def threshold_li(image, *, tolerance=None, initial_guess=None, iter_callback=None):
    """Li's minimum cross-entropy threshold, as ``skimage.filters.threshold_li``.

    Integer images: bit-identical, from the exact histogram (two passes).

    Float images: scikit-image iterates on the pixels themselves, so this
    makes one reduction pass per iteration (typically 5-20), accumulating in
    float64: the result may differ from scikit-image by the rounding of the
    sums alone (relative 1e-6 for float32, 1e-12 for float64). With
    ``tolerance=None`` the default tolerance is half the smallest gap between
    distinct values, found from per-chunk sorted distinct values merged in a
    tree; that partial grows with the number of distinct values in the image
    (not with its size), so pass ``tolerance`` on float images with very many
    distinct values.

    ``initial_guess`` may be a number or a callable; a callable is given the
    lazy dask array of ``image - image.min()`` and must return a number.

    References
    ----------
    .. [1] C. H. Li, P. K. S. Tam, "An iterative algorithm for minimum cross
       entropy thresholding", Pattern Recognit. Lett. 18(8):771-776, 1998.
       :DOI:`10.1016/S0167-8655(98)00057-9`
    """
    x = _prepare(image)
    if x.dtype.kind in "iu":
        lo, hi, counts, centers = range_and_histogram(x)
        if lo == hi:
            return lo
        return _li_integer(x, lo, hi, counts, centers, tolerance, initial_guess, iter_callback)
    lo, hi = image_range(x)
    if lo == hi:
        return lo
    return _li_float(x, lo, hi, tolerance, initial_guess, iter_callback)


def _li_start(shifted, mean_shifted, lo, hi_shifted, initial_guess, dtype):
    if initial_guess is None:
        return mean_shifted
    if callable(initial_guess):
        return initial_guess(shifted)
    if np.isscalar(initial_guess):
        t_next = initial_guess - float(lo)
        if not 0 < t_next < hi_shifted:
            raise ValueError(
                f"The initial guess for threshold_li must be within the range of the "
                f"image. Got {initial_guess} for image min {lo} and max {hi_shifted + lo}."
            )
        return np.dtype(dtype).type(t_next)
    raise TypeError(
        "Incorrect type for `initial_guess`; should be a floating point value, or a "
        "function mapping an array to a floating point value."
    )


def _li_integer(x, lo, hi, counts, centers, tolerance, initial_guess, iter_callback):
    present = counts > 0
    # scikit-image shifts the image in its own dtype (wrapping for signed
    # types whose range exceeds the dtype); do the same on the values.
    with np.errstate(over="ignore"):
        shifted_values = centers[present].astype(x.dtype) - x.dtype.type(lo)
    shifted_values = shifted_values.astype(np.int64)
    smin, smax = int(shifted_values.min()), int(shifted_values.max())
    hist = np.zeros(smax - smin + 1, dtype=np.int64)
    np.add.at(hist, shifted_values - smin, counts[present])
    bin_centers = np.arange(smin, smax + 1)
    n = int(hist.sum())
    total = int(np.dot(hist.astype(object), bin_centers.astype(object)))
    mean_shifted = np.float64(total) / np.float64(n)
    tolerance = tolerance or 0.5
    shifted = (x - lo).astype(x.dtype) if callable(initial_guess) else None
    t_next = _li_start(shifted, mean_shifted, lo, smax, initial_guess, x.dtype)
    hist = hist.astype(np.float32)

    def means(t):
        fore = bin_centers > t
        return (np.average(bin_centers[fore], weights=hist[fore]),
                np.average(bin_centers[~fore], weights=hist[~fore]))

    return _li_iterate(t_next, tolerance, lo, means, iter_callback)


def _li_iterate(t_next, tolerance, lo, means, iter_callback):
    """Li's fixed-point iteration from ``t_next``, as scikit-image's loop; ``means(t)`` gives
    the foreground and background means of the shifted image at ``t``."""
    t_curr = -2 * tolerance
    if iter_callback is not None:
        iter_callback(t_next + lo)
    while abs(t_next - t_curr) > tolerance:
        t_curr = t_next
        mean_fore, mean_back = means(t_curr)
        if mean_back == 0:
            break
        t_next = (mean_back - mean_fore) / (np.log(mean_back) - np.log(mean_fore))
        if iter_callback is not None:
            iter_callback(t_next + lo)
    return t_next + lo


def _min_gap(x: da.Array) -> float:
    """Smallest difference between distinct values, from merged per-chunk uniques."""
    values = _graph.distinct(x).compute()
    return np.min(np.diff(values))


def _li_float(x, lo, hi, tolerance, initial_guess, iter_callback):
    dtype = x.dtype.type
    shifted = x - lo
    mean_shifted = dtype(shifted.mean(dtype=np.float64).compute())
    if tolerance is None:
        # (x - lo) keeps the gaps of x up to rounding; scikit-image takes them
        # from the shifted image, and so do we.
        tolerance = _min_gap(shifted) / 2
    t_next = _li_start(shifted, mean_shifted, lo, dtype(hi - lo), initial_guess, x.dtype)

    def means(t):  # one reduction pass over the image per iteration
        s_fore, n_fore, s_back, n_back = _graph.summed_partials(
            shifted, _hk.split_sums, 4, np.float64, kwargs={"threshold": t}).compute()
        return (dtype(s_fore / n_fore) if n_fore else dtype(np.nan),
                dtype(s_back / n_back) if n_back else dtype(np.nan))

    return _li_iterate(t_next, tolerance, lo, means, iter_callback)


METHODS: dict[str, Callable] = {
    "otsu": threshold_otsu,
    "multiotsu": threshold_multiotsu,
    "yen": threshold_yen,
    "isodata": threshold_isodata,
    "minimum": threshold_minimum,
    "li": threshold_li,
    "triangle": threshold_triangle,
    "mean": threshold_mean,
}


def threshold(image, method: str = "otsu", **kwargs):
    """Global threshold of ``image`` by the named method (see :data:`METHODS`)."""
    try:
        func = METHODS[method]
    except KeyError:
        raise InputError(
            f"unknown threshold method {method!r}; choose one of {', '.join(METHODS)}"
        ) from None
    return func(image, **kwargs)


def _local_depth(ndim, block_size, method, param) -> tuple[int, ...]:
    if method == "gaussian":
        sigma = tuple((b - 1) / 6.0 for b in block_size) if param is None else param
        # skimage.filters.gaussian -> scipy.ndimage.gaussian_filter, truncate=4.0
        return gaussian_reach(np.broadcast_to(np.asarray(sigma, dtype=float), (ndim,)))
    return tuple(b // 2 for b in block_size)


def _threshold_local_block(block, **kwargs):
    return skimage.filters.threshold_local(block, **kwargs)


def threshold_local(image, block_size=3, method="gaussian", offset=0, mode="reflect",
                    param=None, cval=0):
    """Chunked ``skimage.filters.threshold_local``: a lazy threshold image.

    Each chunk is filtered with a halo as wide as the filter's reach (the
    Gaussian's ``int(4 sigma + 0.5)``, or half the block), and the image edges
    use ``mode`` exactly as on the whole image, so the result equals
    scikit-image's on the whole array: bit for bit for ``gaussian``,
    ``median`` and ``generic``; for ``mean`` up to the rounding of scipy's
    running sum, which depends on the position along each line (relative
    1e-12 in float64). ``param`` for ``method="generic"`` must be a picklable
    function to run on a distributed cluster.
    """
    x = _prepare(image)
    if np.isscalar(block_size):
        block_size = (block_size,) * x.ndim
    elif len(block_size) != x.ndim:
        raise ValueError("len(block_size) must equal image.ndim.")
    block_size = tuple(int(b) for b in block_size)
    if any(b % 2 == 0 for b in block_size):
        raise ValueError(
            f"block_size must be odd! Given block_size {block_size} contains even values."
        )
    if method not in ("generic", "gaussian", "mean", "median"):
        raise ValueError(
            "Invalid method specified. Please use `generic`, `gaussian`, `mean`, or `median`."
        )
    depth = _local_depth(x.ndim, block_size, method, param)
    # scikit-image computes in float32 for float16/float32 input, float64 otherwise
    float_dtype = np.dtype(np.float32) if x.dtype in (np.float16, np.float32) else np.dtype(np.float64)
    x = _graph.rechunk_for_depth(x, depth)
    kernel = functools.partial(
        _threshold_local_block, block_size=block_size, method=method, offset=offset,
        mode=mode, param=param, cval=cval,
    )
    # the kernel applies ``mode`` at the image edges itself (boundary "none"), except
    # "wrap": a chunk at an edge must see the other side of the image, not itself
    # (periodic padding); an axis of one chunk wraps onto itself, which is right
    boundary = {a: "periodic" if mode in ("wrap", "grid-wrap") and len(c) > 1 else "none"
                for a, c in enumerate(x.chunks)}
    return x.map_overlap(
        kernel, depth=depth, boundary=boundary, dtype=float_dtype,
        meta=np.empty((0,) * x.ndim, dtype=float_dtype),
    )
