"""bench/extract.py runs end to end on a few generated JPEGs and its correctness columns hold.

Speed is not tested (numbers live in bench/RESULTS.md); what is: the benchmark runs from a
clone, writes its JSON, the cache hits (same object and a fresh copy) return exactly the
extracted features, and ``extract`` (batch norm folded, channels_last, decode threads) agrees
with the course seeds' naive loop to float rounding.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.data.images import write_images

REPO = Path(__file__).resolve().parent.parent


def test_extract_benchmark_runs_and_its_hits_are_exact(tmp_path):
    realdata = tmp_path / "realdata"
    write_images(realdata / "scene15" / "test", ("Bedroom", "Coast"), 40, (200, 200), suffix=".jpg")
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(REPO / "bench" / "extract.py"),
        "--realdata",
        str(realdata),
        "--models",
        "resnet18",
        "--datasets",
        "scene15",
        "--limit",
        "80",  # > 2 batches of 32: batch norm folded, decode threads on
        "--no-alt",
        "--json",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["images"] == 80 and row["feature_shape"] == [512, 7, 7]
    assert row["batchnorm_folded"] is True
    assert row["cache_hit_identical"] is True
    assert row["vs_naive_max_rel"] < 1e-4  # folded + channels_last vs the plain fp32 loop
    for column in ("naive_img_s", "extract_img_s", "ceiling_img_s", "data_img_s"):
        assert row[column] > 0
    assert "| resnet18 layer4 | scene15 | 80 |" in result.stdout
