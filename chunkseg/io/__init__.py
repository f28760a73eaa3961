"""Storage, by job: the only package that touches Zarr, TIFF or the file system.

- :mod:`~chunkseg.io.store`: where a path becomes a storage location (one place).
- :mod:`~chunkseg.io.readers`: open images and label outputs lazily, with metadata.
- :mod:`~chunkseg.io.ngff`: one format object per OME-NGFF version.
- :mod:`~chunkseg.io.writers`: arrays, label groups, blocks, the report and the table.
- :mod:`~chunkseg.io.resume`: progress markers, fingerprints, a run's kept state.
"""

_PUBLIC = {"ImageInfo": "readers", "OpenedImage": "readers", "inspect_image": "readers",
           "open_image": "readers", "open_labels": "readers", "read_image": "readers",
           "is_complete": "writers", "to_zarr": "writers"}

__all__ = sorted(_PUBLIC)

from .._lazy import attach  # noqa: E402

# imported on first use: chunkseg.io.store alone stays light
__getattr__, __dir__ = attach(__name__, _PUBLIC)
