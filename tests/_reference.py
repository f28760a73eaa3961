"""The whole-image scikit-image pipeline chunkseg must reproduce, and how to compare."""

import numpy as np
import scipy.ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed


def reference(image, *, min_distance=10, footprint=3, sampling=None, threshold=None, mask=None):
    """Otsu -> distance_transform_edt -> peak_local_max -> seeds 1..N in raster order -> watershed.

    ``mask``: the foreground given (then ``image`` only gives the shape)."""
    if mask is None:
        t = threshold_otsu(image) if threshold is None else threshold
        mask = image > t
    distance = ndi.distance_transform_edt(mask, sampling=sampling)
    coords = peak_local_max(distance, min_distance=min_distance,
                            footprint=np.ones((footprint,) * mask.ndim), exclude_border=False)
    flat = np.sort(np.ravel_multi_index(tuple(coords.T), mask.shape))
    markers = np.zeros(mask.shape, dtype=np.int64)
    markers.flat[flat] = np.arange(1, len(flat) + 1)
    labels = watershed(-distance, markers, mask=mask)
    return mask, flat, labels


def _compact(x):
    """Sparse ids (e.g. chunk offsets in the high bits) to 0..K, keeping 0 as 0."""
    x = x.ravel()
    if x.size == 0 or int(x.max()) <= 4 * x.size:
        return x.astype(np.int64)
    values, inverse = np.unique(x, return_inverse=True)
    return (inverse + (0 if values[0] == 0 else 1)).astype(np.int64)


def _matches(a, b):
    a = _compact(a)
    b = _compact(b)
    na, nb = int(a.max()), int(b.max())
    both = (a > 0) & (b > 0)
    pairs, inter = np.unique(a[both] * (nb + 1) + b[both], return_counts=True)
    ia, ib = pairs // (nb + 1), pairs % (nb + 1)
    size_a = np.bincount(a, minlength=na + 1)
    size_b = np.bincount(b, minlength=nb + 1)
    iou = inter / (size_a[ia] + size_b[ib] - inter)
    return ia, ib, inter, iou, size_a, size_b


def matched_agreement(labels, reference, threshold=0.5):
    """Fraction of the reference foreground covered by its matched object (IoU > threshold)."""
    ia, ib, inter, iou, _, size_b = _matches(labels, reference)
    good = iou > threshold
    return float(inter[good].sum() / max(size_b[1:].sum(), 1))


def f1_at_iou(a, b, threshold=0.5):
    """Object F1 of label images a and b, matching objects with IoU > threshold."""
    _, _, _, iou, size_a, size_b = _matches(a, b)
    tp = int(np.count_nonzero(iou > threshold))  # IoU > 0.5 matches are one-to-one
    n_a = int(np.count_nonzero(size_a[1:]))
    n_b = int(np.count_nonzero(size_b[1:]))
    return 2 * tp / (n_a + n_b) if n_a + n_b else 1.0
