"""OME-NGFF metadata: one format object per NGFF version, as ome-zarr-py's ``format.py``.

Every writer of label groups and every reader of multiscale images asks a
:class:`NgffFormat` where the metadata lives (``attrs["ome"]`` in 0.5 on
Zarr v3, the top-level attributes in 0.4 on Zarr v2) instead of branching
on the version itself.
"""

from __future__ import annotations

import dataclasses

from .._layout import level_steps, pyramid_shapes
from .._validate import InputError

__all__ = ["FORMATS", "NgffFormat", "format_of", "level_steps", "multiscales",
           "pyramid_shapes", "read_metadata"]


@dataclasses.dataclass(frozen=True)
class NgffFormat:
    """What differs between NGFF versions, for the parts chunkseg reads and writes."""

    version: str
    zarr_format: int
    #: the metadata sits in ``attrs["ome"]`` (0.5) or at the top of the attributes (0.4)
    nested: bool

    def metadata(self, attrs: dict) -> dict:
        """The OME metadata of a group's attributes."""
        return dict(attrs.get("ome", {})) if self.nested else dict(attrs)

    def write(self, group, **entries) -> None:
        """Set OME entries (``multiscales``, ``image-label``, ``labels``) on a group."""
        if self.nested:
            ome = dict(group.attrs.get("ome", {"version": self.version}))
            ome["version"] = self.version
            ome.update(entries)
            group.attrs["ome"] = ome
        else:
            for key, value in entries.items():
                group.attrs[key] = value

    def multiscale(self, entry: dict) -> dict:
        """A ``multiscales`` entry in this version's form (0.4 names its version there)."""
        return entry if self.nested else dict(entry, version=self.version)

    def image_label(self, source_image: str | None) -> dict:
        meta = {} if self.nested else {"version": self.version}
        if source_image is not None:
            meta["source"] = {"image": source_image}
        return meta

    def add_label(self, labels_group, name: str) -> None:
        """List label image ``name`` in an image's ``labels/`` group (once)."""
        names = list(self.metadata(labels_group.attrs.asdict()).get("labels", []))
        if name not in names:
            self.write(labels_group, labels=names + [name])


FORMATS = {"0.4": NgffFormat("0.4", 2, nested=False), "0.5": NgffFormat("0.5", 3, nested=True)}


def format_of(version: str) -> NgffFormat:
    try:
        return FORMATS[version]
    except KeyError:
        raise InputError(f"OME-NGFF version {version!r} is not supported; chunkseg reads and "
                         f"writes {', '.join(FORMATS)}") from None


def read_metadata(attrs: dict) -> tuple[str, dict] | None:
    """``(version, ome metadata)`` of a group's attributes, or None when it has none."""
    nested = "ome" in attrs
    ome = dict(attrs["ome"]) if nested else dict(attrs)
    if "multiscales" not in ome:
        return None
    version = ome.get("version") or ome["multiscales"][0].get("version") or "0.4"
    return str(version), ome


def multiscales(axes: str, scales, units) -> dict:
    """The ``multiscales`` entry of a label image (before :meth:`NgffFormat.multiscale`)."""
    datasets = [{"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": s}]}
                for level, s in enumerate(scales)]
    axis_meta = []
    for a in axes:
        entry = {"name": a, "type": "time" if a == "t" else "space"}
        if units and units.get(a):
            entry["unit"] = units[a]
        axis_meta.append(entry)
    return {"name": "labels", "axes": axis_meta, "datasets": datasets,
            "metadata": {"method": "nearest (every k-th pixel of the level above)"}}
