"""The options objects: validated once, by Python parameter name; the run follows them."""

import dataclasses

import numpy as np
import pytest
import zarr

import chunkseg
from chunkseg.datasets import synthetic_nuclei
from chunkseg.options import CompareOptions, MeasureOptions, SegmentOptions
from chunkseg.run import plan_segment, run_segment


@pytest.mark.parametrize("kwargs, match", [
    ({"min_distance": 0}, "`min_distance` must be a positive integer, got 0"),
    ({"footprint": 2.5}, "`footprint` must be a positive integer, got 2.5"),
    ({"min_size": -1}, "`min_size` must be a non-negative integer, got -1"),
    ({"halo": "big"}, "`halo` must be a positive integer, got 'big'"),
    ({"chunks": "a"}, "`chunks` must be N or Z,Y,X integers, got 'a'"),
    ({"method": "cellpose"}, "unknown `method` 'cellpose'"),
    ({"threshold": "otsuu"}, "unknown `threshold` method 'otsuu'"),
    ({"threshold": float("nan")}, "`threshold` must be finite"),
    ({"smooth": "median:x"}, "`smooth` must be gaussian:SIGMA or median:SIZE"),
    ({"background": "median:3"}, "`background` must be gaussian:SIGMA"),
    ({"classes": 3}, "`classes` goes with `method` threshold"),
    ({"resume": True, "overwrite": True}, "`resume` finishes an output, `overwrite` replaces it"),
    ({"method": "threshold", "table": "t.csv"}, "`table` measures objects"),
    ({"spacing": (1, -2)}, "`spacing` must be positive and finite"),
    ({"missing_chunks": "skip"}, "`missing_chunks` must be error or fill"),
    ({"scheduler": "gpu"}, "unknown `scheduler` 'gpu'"),
    ({"workers": 0}, "`workers` must be a positive integer"),
])
def test_segment_options_refuse_bad_values_by_parameter(kwargs, match):
    with pytest.raises(chunkseg.InputError, match=match.replace("(", r"\(")):
        SegmentOptions(**kwargs)


def test_options_are_frozen_and_normalised():
    o = SegmentOptions(chunks="64,32", spacing=2, threshold="local:51:-2")
    assert o.chunks == (64, 32) and o.spacing == (2.0,) and o.threshold == ("local", 51, -2.0,
                                                                           "gaussian")
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.min_distance = 3
    assert o.replace(min_distance=3).min_distance == 3
    with pytest.raises(chunkseg.InputError, match="`min_distance`"):
        o.replace(min_distance=-3)
    assert MeasureOptions(properties="label,area").properties == ("label", "area")
    assert CompareOptions(out="d.zarr").out == "d.zarr"


def test_options_object_and_keywords_give_the_same_run(tmp_path):
    src = tmp_path / "in.zarr"
    zarr.create_array(str(src), data=synthetic_nuclei((200, 260), seed=9), chunks=(100, 130))
    a = run_segment(src, tmp_path / "a.zarr", SegmentOptions(min_distance=6, progress=False))
    b = run_segment(src, tmp_path / "b.zarr", min_distance=6, progress=False)
    assert a.params == b.params and a.objects == b.objects > 0
    np.testing.assert_array_equal(chunkseg.open_labels(tmp_path / "a.zarr").compute(),
                                  chunkseg.open_labels(tmp_path / "b.zarr").compute())
    plan = plan_segment(src, tmp_path / "c.zarr", min_distance=6)
    assert plan.chunk_count == 4 and not (tmp_path / "c.zarr").exists()
    with pytest.raises(TypeError, match="`options` must be a SegmentOptions"):
        run_segment(src, tmp_path / "d.zarr", {"min_distance": 6})
