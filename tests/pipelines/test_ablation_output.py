"""Where an ablation goes: a local --out replaced as a whole folder (never a mix of two runs'
files, never left empty), and each ablation logged to MLflow under a folder of its own."""

from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

import pytest

from deepsets.pipelines.ablation import report as ablation_report
from deepsets.pipelines.ablation.config import parse_ablate_config
from deepsets.pipelines.ablation.job import run_ablate
from deepsets.pipelines.ablation.outputs import check_out
from deepsets.pipelines.ablation.report import LATEST_TAG, RETRAIN, log_to_mlflow, replacing_folder
from deepsets.pipelines.errors import JobError
from tests.pipelines.saved_models import save_model

CONFIG = {"dim": 16, "layers": 1, "heads": 2, "ff_dim": 32, "fusion": "deepset", "fusion_pooling": "max"}


@pytest.fixture
def earlier(tmp_path):
    """An --out holding an earlier ablation (with per-row values) and its retrain runs."""
    out = tmp_path / "abl"
    (out / RETRAIN / "ray_results").mkdir(parents=True)
    (out / RETRAIN / "spec-without-nothing.json").write_text("{}")
    for name in ("ablation.json", "ablation.md", "ablation.parquet", "ablation.png", "per_row_shapley.parquet"):
        (out / name).write_text(f"earlier {name}")
    return out


def contents(folder) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_new_output_replaces_the_folder_whole_keeping_its_retrain_runs(earlier, tmp_path):
    with replacing_folder(earlier) as fresh:
        assert fresh.parent == earlier.parent and fresh.name.startswith(".abl.new-")
        (fresh / "ablation.json").write_text("new")
        (fresh / "ablation.md").write_text("new table")
    assert contents(earlier) == {
        "ablation.json": b"new",
        "ablation.md": b"new table",
        "retrain/spec-without-nothing.json": b"{}",
    }
    assert (earlier / RETRAIN / "ray_results").is_dir()
    assert sorted(os.listdir(tmp_path)) == ["abl"]  # nothing left beside it


def test_a_failure_before_the_swap_leaves_the_earlier_output_whole(earlier, tmp_path):
    before = contents(earlier)
    with pytest.raises(RuntimeError, match="chart failed"), replacing_folder(earlier) as fresh:
        (fresh / "ablation.json").write_text("new")
        raise RuntimeError("chart failed")
    assert contents(earlier) == before
    assert sorted(os.listdir(tmp_path)) == ["abl"]


def test_a_rename_that_fails_in_the_swap_puts_everything_back(earlier, tmp_path, monkeypatch):
    before = contents(earlier)
    rename = os.rename

    def renaming_in_fails(source, target):
        if os.path.basename(source).startswith(".abl.new-"):
            raise OSError("disk gone")
        rename(source, target)

    monkeypatch.setattr(ablation_report.os, "rename", renaming_in_fails)
    with pytest.raises(OSError, match="disk gone"), replacing_folder(earlier) as fresh:
        (fresh / "ablation.json").write_text("new")
    monkeypatch.undo()
    assert contents(earlier) == before
    assert sorted(os.listdir(tmp_path)) == ["abl"]


def test_a_crash_while_an_overwrite_puts_its_files_in_place_leaves_one_run_whole(
    demo_spec, demo_data, tmp_path, monkeypatch
):
    (tmp_path / "model").mkdir()
    save_model(tmp_path / "model", demo_spec, CONFIG, seed=1, run_config={"data": {"label_columns": ["clicked"]}})
    out = tmp_path / "abl"
    common = {
        "model": str(tmp_path / "model"),
        "inputs": [str(demo_data / "valid")],
        "out": str(out),
        "bootstrap": 0,
        "log_mlflow": False,
    }
    run_ablate(parse_ablate_config(**common, methods=["shapley"], per_row=True), progress=False)
    first = contents(out)
    places = []  # where the steps that put the new output in place (moves, renames) put something
    real_move, real_rename = shutil.move, os.rename

    def crash_at_the_second(real):
        def step(source, target, *args):
            if str(tmp_path) in os.fspath(target) and os.fspath(target) not in places:
                places.append(os.fspath(target))
                if len(places) == 2:
                    raise OSError("killed")
            return real(source, target, *args)

        return step

    monkeypatch.setattr(shutil, "move", crash_at_the_second(real_move))
    monkeypatch.setattr(os, "rename", crash_at_the_second(real_rename))
    with pytest.raises(OSError, match="killed"):
        run_ablate(parse_ablate_config(**common, methods=["loo"], overwrite=True), progress=False)
    monkeypatch.undo()
    assert contents(out) == first  # the earlier run whole: no new file beside old ones
    assert sorted(os.listdir(tmp_path)) == ["abl", "model"]
    second = run_ablate(parse_ablate_config(**common, methods=["loo"], overwrite=True), progress=False)
    assert sorted(os.listdir(out)) == ["ablation.json", "ablation.md", "ablation.parquet", "ablation.png"]
    assert json.loads((out / "ablation.json").read_text())["methods"] == second["methods"] == ["loo"]


def test_an_out_holding_other_files_or_being_a_file_is_refused_up_front(tmp_path):
    out = tmp_path / "abl"
    out.mkdir()
    check_out(str(out), overwrite=False)  # empty: fine
    (out / RETRAIN).mkdir()
    check_out(str(out), overwrite=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(
        JobError,
        match=rf"--out {out} holds files that are not an ablation's \(notes.txt\): ablate replaces the folder "
        "as a whole; choose another --out",
    ):
        check_out(str(out), overwrite=True)
    with pytest.raises(JobError, match=r"is a file, not a folder"):
        check_out(str(out / "notes.txt"), overwrite=False)


def test_each_ablation_is_logged_to_mlflow_under_a_folder_of_its_own(tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    run_id = client.create_run(
        client.create_experiment("ablations", artifact_location=str(tmp_path / "artifacts"))
    ).info.run_id
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "ablation.json").write_text("1")
    (first / "per_row_shapley.parquet").write_text("1")
    (second / "ablation.json").write_text("2")
    logged = [log_to_mlflow(SimpleNamespace(run_id=run_id), folder) for folder in (first, second)]
    folders = [entry["artifact_path"] for entry in logged]
    assert folders[0] != folders[1] and all(folder.startswith("ablation/") for folder in folders)
    assert sorted(a.path for a in client.list_artifacts(run_id, folders[0])) == [
        f"{folders[0]}/ablation.json",
        f"{folders[0]}/per_row_shapley.parquet",
    ]
    assert [a.path for a in client.list_artifacts(run_id, folders[1])] == [f"{folders[1]}/ablation.json"]
    assert client.get_run(run_id).data.tags[LATEST_TAG] == folders[1]
    assert log_to_mlflow(SimpleNamespace(run_id=None), first) is None
