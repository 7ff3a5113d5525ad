"""The command line end to end on small data: synth -> fit -> read, and the demo."""

import json

import pytest

from pipelines.cli import main


def last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_synth_fit_read_json(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", "--rows", "1500", "--out", str(data), "--seed", "3", "--rows-per-file", "1000", "--json"]) == 0
    synth = last_json(capsys)
    assert synth["rows"] == 1500 and len(synth["files"]) == 2
    spec = tmp_path / "spec.json"
    assert main(["fit", "--schema", str(data / "schema.toml"), "--input", str(data), "--out", str(spec), "--json"]) == 0
    fitted = last_json(capsys)
    assert set(fitted["stats"]) == {"image", "title", "history", "frames", "tags", "country", "profile"}
    assert 0.85 < fitted["stats"]["image"]["presence_rate"] < 0.95
    assert main(["read", "--spec", str(spec), "--input", str(data / "part-*.parquet"), "--batch-size", "256",
                 "--labels", "clicked", "labels", "--json"]) == 0
    read = last_json(capsys)
    assert read["rows"] == 1500 and read["batches"] == 6  # 5 x 256 + 220
    assert read["counts"]["history"]["truncated_rows"] == fitted["stats"]["history"]["truncated_rows"]


def test_synth_refuses_to_overwrite(tmp_path, capsys):
    out = str(tmp_path / "d")
    assert main(["synth", "--rows", "10", "--out", out]) == 0
    assert main(["synth", "--rows", "10", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "overwrite" in err[0]
    assert main(["synth", "--rows", "10", "--out", out, "--overwrite"]) == 0


def test_demo_json_summary(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--rows", "2000", "--json"]) == 0
    summary = last_json(capsys)
    assert summary["data"]["rows"] == 2000
    assert summary["read"]["rows"] == 2000 and summary["read"]["batches"] == 4
    assert (tmp_path / "demo" / "spec.json").exists()


@pytest.mark.parametrize("argv", [["synth", "--rows", "0", "--out", "x"], ["synth", "--rows", "5", "--out", "y", "--rows-per-file", "0"]])
def test_bad_arguments_one_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
