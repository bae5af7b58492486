"""The real-data benchmark (make benchmark): the library's most-popular and transition baselines must
reproduce the ANCHORS.md cross-check figures on MovieLens-100K, Beauty and YooChoose."""
import json

import pytest

from benchmarks import real_data


@pytest.mark.benchmark
def test_real_data_cross_checks(tmp_path):
    if not real_data.DATA.exists():
        pytest.skip(f"{real_data.DATA} not present")
    out = tmp_path / "real_data.json"
    assert real_data.main(["--out", str(out), "--report-dir", str(tmp_path / "report")]) == 0
    for entry in json.loads(out.read_text())["datasets"]:
        assert entry["n_queries"] == entry["anchor_n_queries"], entry["dataset"]
