"""`deepsets ablate` on listwise and two-tower models: ranking metrics checked against the
validation metrics' own code, bootstrap over queries, seen-item exclusion, planted truth."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from deepsets.pipelines.ablation.config import parse_ablate_config
from deepsets.pipelines.ablation.job import run_ablate
from deepsets.pipelines.ablation.ranking import GroupedScorer
from deepsets.pipelines.cli import main
from deepsets.pipelines.training.ranking_metrics import GroupRankingMetrics, RetrievalMetrics
from deepsets.ranking import rank_metrics, target_ranks
from tests.pipelines.saved_models import save_model

SMALL = {"dim": 16, "layers": 1, "heads": 2, "ff_dim": 32, "fusion": "transformer", "fusion_layers": 1}
QUERY_SIDE = ["history", "country", "profile"]
ITEM_SIDE = ["image", "title", "frames", "tags"]


@pytest.fixture(scope="module")
def listwise(demo_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("listwise")
    model = save_model(
        directory,
        demo_spec,
        {**SMALL, "task": "listwise"},
        seed=2,
        run_config={"data": {"label_columns": ["clicked"], "group_column": "query_id"}},
    )
    return {"dir": str(directory), "model": model}


@pytest.fixture(scope="module")
def two_tower(demo_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("two_tower")
    model = save_model(
        directory,
        demo_spec,
        {**SMALL, "task": "two_tower", "query_modalities": QUERY_SIDE, "item_modalities": ITEM_SIDE},
        seed=4,
        run_config={"data": {"item_column": "item_id"}},
    )
    return {"dir": str(directory), "model": model}


@pytest.fixture(scope="module")
def valid_batch(demo_spec, demo_data):
    table = pq.read_table(sorted((demo_data / "valid").glob("*.parquet")))
    return table, demo_spec.transform(table, label_columns=["clicked"], key_columns=["query_id", "item_id"])


def test_listwise_ablation_matches_validation_metrics_with_groups_resampled(listwise, demo_data, valid_batch, tmp_path):
    cfg = parse_ablate_config(
        model=listwise["dir"],
        inputs=[str(demo_data / "valid")],
        out=str(tmp_path / "abl"),
        bootstrap=40,
        per_row=True,
        log_mlflow=False,
        k=5,
    )
    summary = run_ablate(cfg, progress=False)
    model, (table, batch) = listwise["model"], valid_batch
    names = list(model.names)
    assert summary["metrics"] == ["ndcg_at_5", "mrr", "recall_at_5"] and summary["metric"] == "ndcg_at_5"
    with torch.no_grad():
        vectors, present = model.encode(batch)
        keep = torch.tensor([n != "history" for n in names])

        def validation(kept):
            metrics = GroupRankingMetrics("listwise", k=5)
            metrics.update(
                model.fuse(vectors, present & kept).logits, batch.labels["clicked"], batch.labels["query_id"]
            )
            return metrics.compute()

        full, without = validation(torch.ones(len(names), dtype=torch.bool)), validation(keep)
    assert summary["units"] == {"kind": "query groups", "count": int(full["groups"])}
    for metric in summary["metrics"]:
        assert summary["by_metric"][metric]["full"] == pytest.approx(full[metric], abs=1e-6)
        loo = next(
            r for r in summary["table"] if r["method"] == "loo" and r["modality"] == "history" and r["metric"] == metric
        )
        assert loo["delta"] == pytest.approx(full[metric] - without[metric], abs=1e-6)
    assert len(summary["table"]) == 3 * 4 * len(names)
    assert all(r["low"] <= r["delta"] <= r["high"] for r in summary["table"])
    assert summary["shapley_efficiency"]["abs_error"] < 1e-9
    per_row = pq.read_table(tmp_path / "abl" / "per_row_shapley.parquet").to_pandas()
    assert per_row["item_id"].tolist() == table.column("item_id").to_pylist()
    contributions = per_row[[f"shapley_{n}" for n in names]].to_numpy().sum(axis=1)
    np.testing.assert_allclose(contributions, per_row["score_all"] - per_row["score_none"], atol=1e-6)
    markdown = open(summary["files"]["table_markdown"]).read()
    assert "query groups with a relevant row" in markdown and "Metric mrr" in markdown


def _embeddings(model, batch, keep_query=None, keep_item=None):
    with torch.no_grad():
        qv, qp = model.query.encode(batch)
        iv, ip = model.item.encode(batch)
        if keep_query is not None:
            qp = qp & keep_query
        if keep_item is not None:
            ip = ip & keep_item
        return model.query.fuse(qv, qp).fused, model.item.fuse(iv, ip).fused


def test_two_tower_ablation_re_embeds_the_corpus_and_matches_validation_metrics(
    two_tower, demo_data, valid_batch, tmp_path
):
    summary = run_ablate(
        parse_ablate_config(
            model=two_tower["dir"],
            inputs=[str(demo_data / "valid")],
            out=str(tmp_path / "abl"),
            bootstrap=30,
            log_mlflow=False,
        ),
        progress=False,
    )
    model, (_, batch) = two_tower["model"], valid_batch
    assert summary["modalities"] == list(model.query.names) + list(model.item.names) and set(
        summary["modalities"]
    ) == set(QUERY_SIDE + ITEM_SIDE)
    assert summary["towers"] == {"query": list(model.query.names), "item": list(model.item.names)}

    def validation(**keep):
        metrics = RetrievalMetrics(k=10)
        metrics.update(*_embeddings(model, batch, **keep), batch.labels["item_id"])
        return metrics.compute()

    full = validation()
    assert summary["corpus_items"] == int(full["corpus_items"]) and summary["units"]["count"] == 600
    item_names, query_names = list(model.item.names), list(model.query.names)
    without_title = validation(keep_item=torch.tensor([n != "title" for n in item_names]))
    without_country = validation(keep_query=torch.tensor([n != "country" for n in query_names]))
    for metric in ("ndcg_at_10", "recall_at_10", "mrr"):
        rows = {(r["method"], r["modality"]): r for r in summary["table"] if r["metric"] == metric}
        assert summary["by_metric"][metric]["full"] == pytest.approx(full[metric], abs=1e-6)
        assert rows[("loo", "title")]["delta"] == pytest.approx(full[metric] - without_title[metric], abs=1e-6)
        assert rows[("loo", "country")]["delta"] == pytest.approx(full[metric] - without_country[metric], abs=1e-6)
        only_title = validation(keep_item=torch.tensor([n == "title" for n in item_names]))
        no_items = validation(keep_item=torch.zeros(len(item_names), dtype=torch.bool))
        assert rows[("only", "title")]["delta"] == pytest.approx(only_title[metric] - no_items[metric], abs=1e-6)
        assert rows[("loo", "item tower")]["value"] == pytest.approx(no_items[metric], abs=1e-6)
        shapley = [
            r["delta"] for (method, name), r in rows.items() if method == "shapley" and not name.endswith("tower")
        ]
        towers = rows[("shapley", "query tower")]["delta"] + rows[("shapley", "item tower")]["delta"]
        assert sum(shapley) == pytest.approx(towers, abs=1e-9)  # both split all minus none
    assert summary["shapley_efficiency"]["subsets"] == 2**7


def test_two_tower_corpus_from_items_with_seen_pairs_excluded(two_tower, demo_data, valid_batch, tmp_path, capsys):
    table, batch = valid_batch
    items = table.select(["item_id"] + ITEM_SIDE)
    pq.write_table(items, tmp_path / "items.parquet")
    ids = table.column("item_id").to_numpy()
    # every query except the first 50 has all other items excluded: its item ranks first
    pairs = [(q, i) for q in ids[50:] for i in ids if i != q] + [
        (q, q) for q in ids[:7]
    ]  # the held-out item itself is never left out
    pq.write_table(pa.table({"query": [p[0] for p in pairs], "item": [p[1] for p in pairs]}), tmp_path / "seen.parquet")
    assert (
        main(
            [
                "ablate",
                "--model",
                two_tower["dir"],
                "--input",
                str(demo_data / "valid"),
                "--items",
                str(tmp_path / "items.parquet"),
                "--exclude",
                str(tmp_path / "seen.parquet"),
                "--exclude-columns",
                "query,item",
                "--methods",
                "loo",
                "--bootstrap",
                "0",
                "--no-mlflow",
                "--out",
                str(tmp_path / "abl"),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    queries, corpus = _embeddings(two_tower["model"], batch)
    order = torch.from_numpy(np.argsort(ids))
    exclude = torch.ones(len(ids), len(ids), dtype=torch.bool)
    exclude[:50] = False
    want = rank_metrics(target_ranks(queries @ corpus[order].T, torch.argsort(order), exclude), 10)
    assert summary["exclusions"] == {
        "pairs": len(pairs),
        "applied": len(pairs) - 7,
        "queries_matched": 550,
        "held_out_item_pairs": 7,
        "unmatched_query_ids": 0,
        "unknown_items": 0,
    }
    assert summary["excluded_pairs"] == len(pairs) - 7 and summary["by_metric"]["mrr"]["full"] == pytest.approx(
        want["mrr"], abs=1e-9
    )
    assert summary["by_metric"]["ndcg_at_10"]["full"] == pytest.approx(want["ndcg_at_10"], abs=1e-9)
    assert want["ndcg_at_10"] >= 550 / 600  # the 550 queries with every other item excluded rank theirs first


def test_two_tower_errors_name_the_problem(two_tower, demo_data, valid_batch, listwise, tmp_path, capsys):
    table, _ = valid_batch
    pq.write_table(table.select(["item_id"] + ITEM_SIDE).slice(0, 500), tmp_path / "some.parquet")
    base = [
        "ablate",
        "--model",
        two_tower["dir"],
        "--input",
        str(demo_data / "valid"),
        "--no-mlflow",
        "--out",
        str(tmp_path / "a"),
    ]
    assert main(base + ["--items", str(tmp_path / "some.parquet")]) == 2
    err = capsys.readouterr().err
    assert "100 of 600 query rows hold an item that is not in the item corpus" in err and "Traceback" not in err
    doubled = table.select(["item_id"] + ITEM_SIDE)
    pq.write_table(pa.concat_tables([doubled, doubled.slice(0, 3)]), tmp_path / "twice.parquet")
    assert main(base + ["--items", str(tmp_path / "twice.parquet")]) == 2
    assert "lists 3 item id(s) more than once" in capsys.readouterr().err
    assert main(base + ["--methods", "maxpool"]) == 2
    assert "maxpool needs a DeepSet fusion head" in capsys.readouterr().err
    assert (
        main(
            [
                "ablate",
                "--model",
                listwise["dir"],
                "--input",
                str(demo_data / "valid"),
                "--items",
                str(tmp_path / "some.parquet"),
            ]
        )
        == 2
    )
    assert "--items: not for a listwise model" in capsys.readouterr().err
    assert (
        main(
            [
                "ablate",
                "--model",
                listwise["dir"],
                "--input",
                str(demo_data / "valid"),
                "--label",
                "labels",
                "--no-mlflow",
            ]
        )
        == 2
    )
    assert "ranks by one relevance value per row; the label column holds 5 per row" in capsys.readouterr().err
    pq.write_table(pa.table({"query_id": [10**9], "item_id": [1]}), tmp_path / "nothing.parquet")
    assert main(base + ["--exclude", str(tmp_path / "nothing.parquet"), "--exclude-columns", "query_id,item_id"]) == 2
    assert "none of the 1 pairs of --exclude matches a query row and a corpus item" in capsys.readouterr().err


def test_options_for_other_tasks_are_refused_and_k_defaults_to_the_models(demo_spec, demo_data, tmp_path, capsys):
    (tmp_path / "binary").mkdir()
    (tmp_path / "k5").mkdir()
    save_model(tmp_path / "binary", demo_spec, SMALL, seed=0, run_config={"data": {"label_columns": ["clicked"]}})
    assert (
        main(
            [
                "ablate",
                "--model",
                str(tmp_path / "binary"),
                "--input",
                str(demo_data / "valid"),
                "--group",
                "query_id",
                "--k",
                "5",
            ]
        )
        == 2
    )
    assert "--group, --k: not for a binary model" in capsys.readouterr().err
    save_model(
        tmp_path / "k5",
        demo_spec,
        {**SMALL, "task": "listwise"},
        seed=0,
        run_config={"data": {"label_columns": ["clicked"], "group_column": "query_id"}, "task": {"k": 5}},
    )
    summary = run_ablate(
        parse_ablate_config(
            model=str(tmp_path / "k5"),
            inputs=[str(demo_data / "valid")],
            methods=["loo"],
            bootstrap=0,
            out=str(tmp_path / "abl"),
            log_mlflow=False,
        ),
        progress=False,
    )
    assert summary["metrics"] == ["ndcg_at_5", "mrr", "recall_at_5"]  # the cutoff its validation logged


def test_sampled_shapley_fuses_each_subset_once_for_all_three_metrics(listwise, demo_data, tmp_path, monkeypatch):
    fused = []
    original = GroupedScorer.fuse_subsets
    monkeypatch.setattr(GroupedScorer, "fuse_subsets", lambda self, masks: fused.append(masks) or original(self, masks))
    summary = run_ablate(
        parse_ablate_config(
            model=listwise["dir"],
            inputs=[str(demo_data / "valid")],
            methods=["loo", "shapley"],
            shapley_permutations=8,
            bootstrap=10,
            out=str(tmp_path / "abl"),
            log_mlflow=False,
        ),
        progress=False,
    )
    masks = torch.cat(fused)
    assert masks.shape[0] == torch.unique(masks, dim=0).shape[0]  # no subset fused twice across the metrics
    assert {r["metric"] for r in summary["table"]} == {"ndcg_at_10", "mrr", "recall_at_10"}
    assert all(r["se"] >= 0 for r in summary["table"] if r["method"] == "shapley")
