"""The demo replaces only its own data folder."""

from __future__ import annotations

import pytest

from deepsets.pipelines.demo import DEMO_MARKER, make_demo_data
from deepsets.pipelines.errors import JobError


def test_the_demo_replaces_its_own_data_but_nothing_else(tmp_path):
    data = tmp_path / "data"
    make_demo_data(data, rows=120, seed=0, progress=False)
    assert (data / DEMO_MARKER).exists() and (data / "train").is_dir() and (data / "truth.json").exists()
    make_demo_data(data, rows=60, seed=1, progress=False)  # its own earlier data: replaced
    assert len(list((data / "train").glob("*.parquet"))) == 5
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(JobError, match=r"holds files the demo did not write \(thesis.tex\)"):
        make_demo_data(mine, rows=60, seed=0, progress=False)
    assert (mine / "thesis.tex").read_text() == "years of work"
