"""Storage, by job: the only package that touches Zarr, TIFF or the file system.

- :mod:`~chunkseg.io.store`: where a path becomes a storage location (one place).
- :mod:`~chunkseg.io.readers`: open images and label outputs lazily, with metadata.
- :mod:`~chunkseg.io.ngff`: one format object per OME-NGFF version.
- :mod:`~chunkseg.io.writers`: arrays, label groups, blocks, the report and the table.
- :mod:`~chunkseg.io.resume`: progress markers, fingerprints, a run's kept state.
"""

from .readers import ImageInfo, OpenedImage, inspect_image, open_image, open_labels, read_image
from .writers import is_complete, to_zarr

__all__ = ["ImageInfo", "OpenedImage", "inspect_image", "is_complete", "open_image",
           "open_labels", "read_image", "to_zarr"]
