"""The README's set-up commands and Python tour run as written."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].endswith("chunkseg demo")
    assert "pytest" in block[1]
    assert block[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_python_tour_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "seeds;" in out and (tmp_path / "labels.zarr").exists()


def _run_block(naming: str, tmp_path, monkeypatch, capsys) -> str:
    """Run the README's Python block that contains ``naming``, in ``tmp_path``; its output."""
    text = (ROOT / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if naming in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    return capsys.readouterr().out


def test_readme_options_example_runs(tmp_path, monkeypatch, capsys):
    """The Layout section's options example (the one that names SegmentOptions)."""
    out = _run_block("SegmentOptions", tmp_path, monkeypatch, capsys)
    assert "nothing computed or written: dry run" in out and " objects, threshold " in out
    assert (tmp_path / "objects.csv").exists() and (tmp_path / "labels.zarr").exists()


def test_readme_cells_example_runs(tmp_path, monkeypatch, capsys):
    out = _run_block("seeded_watershed", tmp_path, monkeypatch, capsys)
    assert out.strip().endswith(" cells with a cytoplasm")


def test_readme_brightfield_example_runs(tmp_path, monkeypatch, capsys):
    out = _run_block("polarity", tmp_path, monkeypatch, capsys)
    assert out.strip().endswith(" dark nuclei")
    import json

    data = json.loads((tmp_path / "nuclei.geojson").read_text())
    assert data["features"] and "intensity_mean" in data["features"][0]["properties"]["measurements"]


def test_readme_series_example_runs(tmp_path, monkeypatch, capsys):
    out = _run_block("write_synthetic_series", tmp_path, monkeypatch, capsys)
    assert out.startswith("4 time points: ") and "intensity_mean-KI67" in out
    assert (tmp_path / "series_labels.zarr").exists()
