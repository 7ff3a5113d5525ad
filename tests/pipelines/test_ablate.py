"""`deepsets ablate` end to end on a small saved model: every method, intervals, per-row
Shapley, files, and clear errors."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from deepsets.pipelines.ablation.config import parse_ablate_config
from deepsets.pipelines.ablation.job import run_ablate
from deepsets.pipelines.cli import main
from tests.pipelines.saved_models import save_model

MAXPOOL = {"dim": 16, "layers": 1, "heads": 2, "ff_dim": 32, "fusion": "deepset", "fusion_pooling": "max"}


@pytest.fixture(scope="module")
def maxpool_checkpoint(demo_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("maxpool")
    model = save_model(directory, demo_spec, MAXPOOL, seed=1, run_config={"data": {"label_columns": ["clicked"]}})
    return {"dir": str(directory), "model": model, "spec": demo_spec}


def test_every_method_with_intervals_per_row_and_files(maxpool_checkpoint, demo_data, tmp_path):
    cfg = parse_ablate_config(
        model=maxpool_checkpoint["dir"],
        inputs=[str(demo_data / "valid")],
        out=str(tmp_path / "abl"),
        methods=["loo", "only", "permute", "shapley", "maxpool"],
        per_row=True,
        bootstrap=50,
        truth=str(demo_data / "truth.json"),
    )
    summary = run_ablate(cfg, progress=False)
    names = list(maxpool_checkpoint["model"].names)
    assert summary["label"] == "clicked" and summary["rows"] == 600 and summary["modalities"] == names
    eff = summary["shapley_efficiency"]
    assert eff["subsets"] == 128 and eff["abs_error"] < 1e-9
    # leave-one-out equals running the whole model with that modality's presence cleared
    model, spec = maxpool_checkpoint["model"], maxpool_checkpoint["spec"]
    table = pq.read_table(next((demo_data / "valid").glob("*.parquet")))
    batch = spec.transform(table, label_columns=["clicked"])
    from deepsets.ablation import auc

    with torch.no_grad():
        vectors, present = model.encode(batch)
        image = names.index("image")
        keep = torch.ones(len(names), dtype=torch.bool)
        keep[image] = False
        without = model.fuse(vectors, present & keep).logits[:, 0]
        full = model(batch).logits[:, 0]
    loo = {r["modality"]: r for r in summary["table"] if r["method"] == "loo"}
    expected_drop = float(auc(full, batch.labels["clicked"]) - auc(without, batch.labels["clicked"]))
    assert loo["image"]["delta"] == pytest.approx(expected_drop, abs=1e-9)
    assert all(r["low"] <= r["delta"] <= r["high"] for r in summary["table"] if r["method"] != "maxpool")
    wins = [r["value"] for r in summary["table"] if r["method"] == "maxpool"]
    assert sum(wins) == pytest.approx(1.0)
    assert set(summary["spearman_vs_truth"]) == {"loo", "only", "permute", "shapley", "maxpool"}
    # per-row Shapley: contributions add up to the row's score minus the empty-set score
    per_row = pq.read_table(tmp_path / "abl" / "per_row_shapley.parquet").to_pandas()
    contributions = per_row[[f"shapley_{n}" for n in names]].to_numpy().sum(axis=1)
    np.testing.assert_allclose(contributions, per_row["score_all"] - per_row["score_none"], atol=1e-6)
    np.testing.assert_allclose(per_row["score_all"], full.numpy(), atol=1e-5)
    assert per_row["item_id"].tolist() == table.column("item_id").to_pylist()
    # a row without a modality gets exactly zero from it
    absent = ~present[:, image].numpy()
    assert absent.any() and np.abs(per_row["shapley_image"].to_numpy()[absent]).max() < 1e-6
    files = summary["files"]
    assert open(files["chart"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "| image |" in open(files["table_markdown"]).read()
    assert json.loads(open(files["table_json"]).read())["rows"] == 600
    assert pq.read_table(files["table_parquet"]).num_rows == 5 * len(names)


def test_sampled_shapley_for_a_transformer_head_agrees_with_exact_within_its_error(
    demo_spec, demo_data, tmp_path, capsys
):
    (tmp_path / "tf").mkdir()
    save_model(
        tmp_path / "tf",
        demo_spec,
        {"dim": 16, "layers": 1, "heads": 2, "fusion": "transformer", "fusion_layers": 2},
        seed=3,
        run_config={"data": {"label_columns": ["clicked"]}},
    )
    common = dict(
        model=str(tmp_path / "tf"),
        inputs=[str(demo_data / "valid")],
        methods=["shapley"],
        bootstrap=20,
        log_mlflow=False,
    )
    exact = run_ablate(parse_ablate_config(**common, out=str(tmp_path / "exact")), progress=False)
    assert exact["shapley_estimator"] == {"kind": "exact"} and exact["shapley_efficiency"]["subsets"] == 128
    assert (
        main(
            [
                "ablate",
                "--model",
                str(tmp_path / "tf"),
                "--input",
                str(demo_data / "valid"),
                "--methods",
                "shapley",
                "--per-row",
                "--shapley-permutations",
                "64",
                "--bootstrap",
                "20",
                "--no-mlflow",
                "--out",
                str(tmp_path / "sampled"),
                "--json",
            ]
        )
        == 0
    )
    sampled = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sampled["shapley_estimator"]["kind"] == "sampled" and sampled["shapley_estimator"]["permutations"] == 64
    assert sampled["shapley_efficiency"]["abs_error"] < 1e-9  # efficiency holds for any sample of orders
    want = {r["modality"]: r["delta"] for r in exact["table"]}
    for row in sampled["table"]:
        assert row["se"] > 0 and abs(row["delta"] - want[row["modality"]]) <= 3 * row["se"], row
    per_row = pq.read_table(tmp_path / "sampled" / "per_row_shapley.parquet").to_pandas()
    contributions = per_row[[f"shapley_{n}" for n in sampled["modalities"]]].to_numpy().sum(axis=1)
    np.testing.assert_allclose(contributions, per_row["score_all"] - per_row["score_none"], atol=1e-6)
    assert "estimated from 64 random modality orders" in open(sampled["files"]["table_markdown"]).read()


def test_cli_errors_are_one_line(maxpool_checkpoint, demo_data, tmp_path, capsys):
    base = [
        "ablate",
        "--model",
        maxpool_checkpoint["dir"],
        "--input",
        str(demo_data / "valid"),
        "--out",
        str(tmp_path / "a"),
    ]
    assert main(base + ["--methods", "loo,guess"]) == 2
    assert "unknown methods ['guess']" in capsys.readouterr().err
    assert main(base + ["--label", "nope", "--methods", "loo"]) == 2
    err = capsys.readouterr().err
    assert "column 'nope'" in err and "Traceback" not in err


def test_an_earlier_ablation_in_out_is_refused_and_overwrite_leaves_none_of_its_files_once_it_succeeds(
    maxpool_checkpoint, demo_data, tmp_path, capsys
):
    out = tmp_path / "abl"
    base = [
        "ablate",
        "--model",
        maxpool_checkpoint["dir"],
        "--input",
        str(demo_data / "valid"),
        "--bootstrap",
        "0",
        "--no-mlflow",
        "--out",
        str(out),
    ]
    assert main(base + ["--methods", "shapley", "--per-row", "--json"]) == 0
    first = json.loads((out / "ablation.json").read_text())
    capsys.readouterr()
    assert main(base + ["--methods", "loo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == (
        f"error: --out {out} already holds an ablation (ablation.parquet, ablation.md, ablation.png, ablation.json, "
        "per_row_shapley.parquet): pass --overwrite to replace it, or choose another --out"
    )
    assert json.loads((out / "ablation.json").read_text()) == first  # untouched
    assert main(base + ["--methods", "loo", "--overwrite", "--label", "nope"]) == 2  # fails after the check of --out
    assert "column 'nope'" in capsys.readouterr().err
    assert (
        json.loads((out / "ablation.json").read_text()) == first and (out / "per_row_shapley.parquet").exists()
    )  # a failed --overwrite keeps them
    assert main(base + ["--methods", "loo", "--overwrite", "--json"]) == 0
    assert not (out / "per_row_shapley.parquet").exists()  # the earlier run's per-row values do not outlive it
    assert {r["method"] for r in first["table"]} == {"shapley"}
    assert {r["method"] for r in json.loads((out / "ablation.json").read_text())["table"]} == {"loo"}


def test_row_ids_of_two_kinds_are_refused_before_any_work_and_nothing_is_written(
    maxpool_checkpoint, demo_data, tmp_path, capsys
):
    table = pq.read_table(sorted((demo_data / "valid").glob("*.parquet"))[0]).slice(0, 300)
    pq.write_table(table, tmp_path / "a.parquet")
    as_text = table.set_column(
        table.schema.get_field_index("item_id"), "item_id", table.column("item_id").cast(pa.string())
    )
    pq.write_table(as_text, tmp_path / "b.parquet")
    out = tmp_path / "abl"
    args = [
        "ablate",
        "--model",
        maxpool_checkpoint["dir"],
        "--input",
        str(tmp_path / "a.parquet"),
        str(tmp_path / "b.parquet"),
        "--methods",
        "shapley",
        "--per-row",
        "--bootstrap",
        "0",
        "--no-mlflow",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'b.parquet'}, column 'item_id': string row ids here but int row ids in {tmp_path / 'a.parquet'} "
        "(one kind of id per id column)"
    ]
    assert not out.exists()


def test_labels_a_binary_model_cannot_score_are_refused_naming_file_and_rows(
    maxpool_checkpoint, demo_data, tmp_path, capsys
):
    """A label of 2 would count twice in the AUC: refused as training refuses it."""
    source = sorted((demo_data / "valid").glob("*.parquet"))[0]
    table = pq.read_table(source)
    labels = table.column("clicked").to_numpy().copy()
    labels[[3, 10]] = 2
    pq.write_table(
        table.set_column(
            table.schema.get_field_index("clicked"), "clicked", pa.array(labels, table.schema.field("clicked").type)
        ),
        tmp_path / "bad.parquet",
    )
    args = [
        "ablate",
        "--model",
        maxpool_checkpoint["dir"],
        "--input",
        str(tmp_path / "bad.parquet"),
        "--out",
        str(tmp_path / "a"),
        "--methods",
        "loo",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bad.parquet" in err and "column 'clicked'" in err and "rows 3..10 (2 rows)" in err
    assert "a binary task learns from 0 or 1" in err and "found [2]" in err and "Traceback" not in err


def test_maxpool_needs_a_max_pool_head(demo_spec, demo_data, tmp_path, capsys):
    save_model(tmp_path, demo_spec, {"dim": 16, "layers": 1, "heads": 2, "fusion": "transformer"}, seed=0)
    assert (
        main(
            [
                "ablate",
                "--model",
                str(tmp_path),
                "--input",
                str(demo_data / "valid"),
                "--methods",
                "maxpool",
                "--label",
                "clicked",
            ]
        )
        == 2
    )
    assert "maxpool needs a DeepSet fusion head with max pooling" in capsys.readouterr().err


def test_retrain_without_each_modality_runs_nested_mlflow_runs(
    ray_session, demo_spec, demo_data, tmp_path, monkeypatch
):
    import mlflow

    from deepsets.pipelines.demo import default_demo_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    run_config = default_demo_config(demo_data, workers=1)
    run_config = run_config.model_copy(
        update={"training": run_config.training.model_copy(update={"epochs": 1, "batch_size": 256})}
    )
    model_config = {"dim": 16, "layers": 1, "heads": 2, "fusion": "deepset", "fusion_pooling": "mean"}
    (tmp_path / "ckpt").mkdir()
    spec = demo_spec.subset(
        demo_spec.names[:3]
    )  # three modalities: four training runs (each ~10 s of Ray Train start-up)
    save_model(tmp_path / "ckpt", spec, model_config, seed=0, run_config=run_config.as_dict())
    cfg = parse_ablate_config(
        model=str(tmp_path / "ckpt"),
        inputs=[str(demo_data / "valid")],
        out=str(tmp_path / "abl"),
        methods=["loo"],
        retrain=True,
        bootstrap=20,
    )
    summary = run_ablate(cfg, progress=False)
    retrained = {r["modality"]: r for r in summary["table"] if r["method"] == "retrain"}
    assert set(retrained) == set(spec.names) and summary["methods"] == ["loo", "retrain"]
    info = summary["retrain"]
    assert set(info["runs"]) == {"baseline", *spec.names}
    for name, row in retrained.items():
        assert row["delta"] == pytest.approx(info["baseline"] - row["value"])
        assert row["low"] <= row["delta"] <= row["high"]
    client = mlflow.tracking.MlflowClient()
    for name, run_id in info["runs"].items():
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == info["parent_run_id"]
        assert "valid_auc" in run.data.metrics
        if name != "baseline":  # the retrained model really lacks that modality
            (tmp_path / name).mkdir()
            spec = json.loads(open(client.download_artifacts(run_id, "spec.json", str(tmp_path / name))).read())
            assert name not in [m["name"] for m in spec["schema"]["modality"]]
