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


def users_data(folder):
    """A user's own data in the demo's layout: train/, valid/, schema.toml, truth.json."""
    for split in ("train", "valid"):
        (folder / split).mkdir(parents=True)
        (folder / split / "part-00000.parquet").write_bytes(b"PAR1 the user's rows PAR1")
    (folder / "schema.toml").write_text("# the user's schema\n")
    (folder / "truth.json").write_text("{}")
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_users_data_in_the_demos_layout_survives_demo_out(tmp_path, capsys):
    from deepsets.pipelines.cli import main

    before = users_data(tmp_path / "data")
    assert main(["demo", "--out", str(tmp_path), "--rows", "60"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {tmp_path / 'data'} holds files the demo did not write (schema.toml, train, truth.json, ...) and no "
        f"{DEMO_MARKER} file: the demo replaces only a data folder it made; move that folder away, or choose another --out"
    )
    assert {
        p.relative_to(tmp_path / "data"): p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()
    } == before


def test_an_empty_folder_or_a_file_in_the_demos_place(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    assert make_demo_data(data, rows=60, seed=0, progress=False)["rows"] == 60  # nothing to lose
    taken = tmp_path / "taken"
    taken.write_text("a file")
    with pytest.raises(JobError, match=rf"^{taken} is a file, not a folder: choose another --out"):
        make_demo_data(taken, rows=60, seed=0, progress=False)
    assert taken.read_text() == "a file"
