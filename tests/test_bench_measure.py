"""The benchmark harness's own measurement: peak memory counts worker processes."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _measure  # noqa: E402

_CHILD = """
import subprocess, sys
import numpy as np
subprocess.run([sys.executable, "-c",
                "import time, numpy as np; b = np.ones(300_000_000, np.uint8); time.sleep(1.5)"],
               check=True)
print('{"ok": 1}')
"""


def test_peak_memory_includes_a_grandchild_and_result_is_read():
    r = _measure.run([sys.executable, "-c", _CHILD])
    assert r["result"] == {"ok": 1}
    assert r["peak_bytes"] > 300e6  # the grandchild's array, found by the periodic listing
    assert r["wall_s"] > 1.5
