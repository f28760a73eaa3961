"""Real stores on disk for the tests: Zarr v2/v3, OME-Zarr 0.4/0.5, TIFF variants."""

from pathlib import Path

import numpy as np
import tifffile
import zarr


def write_ome_zarr(path: Path, image: np.ndarray, *, version: str = "0.5", axes: str = "cyx",
                   channel_names=None, levels: int = 2, chunks=None, unit=None) -> Path:
    fmt = 3 if version == "0.5" else 2
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    datasets = []
    data = image
    for lv in range(levels):
        extra = {"dimension_names": list(axes)} if fmt == 3 else {}
        group.create_array(str(lv), data=data, chunks=chunks or tuple(max(1, s // 2) for s in data.shape),
                           **extra)
        scale = [1.0 if a in "ct" else float(2**lv) for a in axes]
        datasets.append({"path": str(lv), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
        sl = tuple(slice(None) if a in "ct" else slice(None, None, 2) for a in axes)
        data = data[sl]
    ax = [{"name": a, "type": "channel" if a == "c" else ("time" if a == "t" else "space")} for a in axes]
    if unit:
        for entry in ax:
            if entry["type"] == "space":
                entry["unit"] = unit
    ms = {"axes": ax, "datasets": datasets, "name": "image"}
    meta = {"multiscales": [ms]}
    if channel_names:
        meta["omero"] = {"channels": [{"label": n} for n in channel_names]}
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", **meta}
    else:
        ms["version"] = "0.4"
        group.attrs.update(meta)
    return path


def write_pyramidal_tiff(path: Path, image: np.ndarray, levels: int = 3, tile=(64, 64)) -> Path:
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(image, tile=tile, subifds=levels - 1)
        data = image
        for _ in range(levels - 1):
            data = data[::2, ::2]
            tif.write(data, tile=tile, subfiletype=1)
    return path


def put_input_with_local_labels(fs, folder: Path, seed: int):
    """A 300x340 synthetic input in 100x120 chunks, put at ``data/in.zarr`` of ``fs`` (an
    object store's filesystem), and its labels segmented on local disk: (image, labels)."""
    import chunkseg
    from chunkseg.cli import main
    from chunkseg.datasets import synthetic_nuclei

    image = synthetic_nuclei((300, 340), seed=seed)
    local = folder / "in.zarr"
    zarr.create_array(str(local), data=image, chunks=(100, 120))
    assert main(["-q", "segment", str(local), str(folder / "local.zarr"),
                 "--min-distance", "6"]) == 0
    fs.put(str(local), "data/in.zarr", recursive=True)
    return image, chunkseg.open_labels(folder / "local.zarr").compute()
