"""`deepsets retrieve`: top-k by inner product against brute force, exclusions, every query
accounted for, approximate indexes with their recall, and one-line errors."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.speed.retrieve import embed_output
from deepsets.features.errors import DataError
from deepsets.pipelines.cli import main
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.report import format_retrieve_summary
from deepsets.pipelines.retrieval.job import parse_retrieve_config, run_retrieve

pytest.importorskip("faiss")


def results(out: Path) -> pa.Table:
    return pq.read_table(sorted(out.glob("part-*.parquet")))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10_000), st.integers(1, 60), st.integers(1, 20), st.integers(1, 8), st.integers(1, 70), st.booleans()
)
def test_exact_top_k_matches_brute_force_with_exclusions(seed, n_items, n_queries, dim, k, exclude):
    rng = np.random.default_rng(seed)
    items, queries = (
        rng.normal(size=(n_items, dim)).astype(np.float32),
        rng.normal(size=(n_queries, dim)).astype(np.float32),
    )
    item_ids, query_ids = np.arange(100, 100 + n_items), np.arange(n_queries)
    pairs = (
        {(int(q), int(i)) for q, i in zip(rng.integers(0, n_queries, 3 * n_items), rng.choice(item_ids, 3 * n_items))}
        if exclude
        else set()
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        embed_output(tmp / "items", "item_id", item_ids, items, "item")
        embed_output(tmp / "queries", "user_id", query_ids, queries, "query", rows_per_part=7)
        options = {}
        if exclude:
            pq.write_table(
                pa.table({"user_id": [q for q, _ in pairs], "item_id": [i for _, i in pairs]}), tmp / "seen.parquet"
            )
            options["exclude"] = str(tmp / "seen.parquet")
        summary = run_retrieve(
            parse_retrieve_config(
                items=str(tmp / "items"),
                queries=str(tmp / "queries"),
                k=k,
                out=str(tmp / "out"),
                batch_size=5,
                **options,
            ),
            progress=False,
        )
        got = results(tmp / "out").to_pydict()
    assert summary["queries_in"] == summary["queries_out"] == n_queries and summary["queries_rejected"] == 0
    brute = queries.astype(np.float64) @ items.T.astype(np.float64)  # (Q, N)
    short = 0
    for q in range(n_queries):
        rows = [r for r, user in enumerate(got["user_id"]) if user == q]
        allowed = [i for i in range(n_items) if (q, int(item_ids[i])) not in pairs]
        expected = np.sort(brute[q, allowed])[::-1][:k]
        short += len(expected) < k
        assert [got["rank"][r] for r in rows] == list(range(1, len(expected) + 1))
        np.testing.assert_allclose([got["score"][r] for r in rows], expected, rtol=1e-4, atol=1e-4)
        for r in rows:  # each returned item is allowed and scores what it says
            assert (q, got["item_id"][r]) not in pairs
            assert brute[q, got["item_id"][r] - 100] == pytest.approx(got["score"][r], abs=1e-4)
    assert summary["queries_short"] == short


def test_every_query_is_accounted_for_and_bad_vectors_are_named(tmp_path):
    rng = np.random.default_rng(0)
    items = rng.normal(size=(30, 4)).astype(np.float32)
    items[3] = np.nan
    queries = rng.normal(size=(10, 4)).astype(np.float32)
    queries[[2, 7]] = np.inf
    embed_output(tmp_path / "items", "item_id", np.arange(30), items, "item")
    embed_output(tmp_path / "queries", "user", [f"u{i}" for i in range(10)], queries, "query", rows_per_part=4)
    summary = run_retrieve(
        parse_retrieve_config(
            items=str(tmp_path / "items"), queries=str(tmp_path / "queries"), k=5, out=str(tmp_path / "out")
        ),
        progress=False,
    )
    assert (summary["queries_in"], summary["queries_out"], summary["queries_rejected"]) == (10, 8, 2)
    assert summary["rejected_by_reason"] == {"embedding has NaN or infinite values": 2}
    assert (summary["items_indexed"], summary["items_rejected"]) == (29, 1)
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pydict()
    assert rejects["user"] == ["u2", "u7"] and rejects["source_part"] == ["part-00000.parquet", "part-00001.parquet"]
    assert rejects["source_row"] == [2, 3]
    got = results(tmp_path / "out")
    assert got.num_rows == 8 * 5 and 3 not in got["item_id"].to_pylist()
    assert json.loads((tmp_path / "out" / "_SUCCESS.json").read_text())["queries_out"] == 8


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_an_approximate_index_reports_its_recall_against_exact_search(tmp_path, index):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, 16))
    items = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(np.float32)
    queries = (centres[rng.integers(0, 20, 300)] + 0.3 * rng.normal(size=(300, 16))).astype(np.float32)
    embed_output(tmp_path / "items", "item_id", np.arange(3000), items, "item")
    embed_output(tmp_path / "queries", "user_id", np.arange(300), queries, "query")
    summary = run_retrieve(
        parse_retrieve_config(
            items=str(tmp_path / "items"),
            queries=str(tmp_path / "queries"),
            k=20,
            out=str(tmp_path / "out"),
            index=index,
            recall_queries=200,
            target_recall=0.97,
        ),
        progress=False,
    )
    assert summary["recall_queries"] == 200 and 0.97 <= summary["recall_at_20_vs_exact"] <= 1.0
    got = results(tmp_path / "out").to_pandas()
    assert len(got) == 300 * 20 and (got.groupby("user_id")["score"].diff().dropna() <= 1e-6).all()  # best first
    brute = queries @ items.T  # (Q, N): the measured recall is what the search returned
    exact = np.argsort(-brute, axis=1)[:200, :20]
    returned = got[got["user_id"] < 200].groupby("user_id")["item_id"].apply(list)
    measured = np.mean([len(set(returned[q]) & set(exact[q])) / 20 for q in range(200)])
    assert measured == pytest.approx(summary["recall_at_20_vs_exact"], abs=0.01)


def test_a_fixed_nprobe_is_measured_not_tuned(tmp_path):
    rng = np.random.default_rng(3)
    items = rng.normal(size=(2000, 8)).astype(np.float32)
    embed_output(tmp_path / "items", "item_id", np.arange(2000), items, "item")
    embed_output(tmp_path / "queries", "user_id", np.arange(100), rng.normal(size=(100, 8)).astype(np.float32), "query")
    fixed = run_retrieve(
        parse_retrieve_config(
            items=str(tmp_path / "items"),
            queries=str(tmp_path / "queries"),
            k=50,
            out=str(tmp_path / "fixed"),
            index="ivf",
            nprobe=1,
        ),
        progress=False,
    )
    tuned = run_retrieve(
        parse_retrieve_config(
            items=str(tmp_path / "items"),
            queries=str(tmp_path / "queries"),
            k=50,
            out=str(tmp_path / "tuned"),
            index="ivf",
        ),
        progress=False,
    )
    assert fixed["index_settings"] == {} and fixed["recall_at_50_vs_exact"] < 0.95
    assert tuned["index_settings"]["nprobe"] > 1 and tuned["recall_at_50_vs_exact"] >= 0.95


def test_cli_answers_in_json_and_says_what_is_wrong_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(2)
    embed_output(tmp_path / "items", "item_id", np.arange(10), rng.normal(size=(10, 3)).astype(np.float32), "item")
    embed_output(tmp_path / "queries", "user_id", np.arange(4), rng.normal(size=(4, 3)).astype(np.float32), "query")
    embed_output(
        tmp_path / "other",
        "user_id",
        np.arange(4),
        rng.normal(size=(4, 3)).astype(np.float32),
        "query",
        weights="x" * 64,
    )
    embed_output(tmp_path / "wide", "user_id", np.arange(4), rng.normal(size=(4, 5)).astype(np.float32), "query")
    embed_output(
        tmp_path / "unfinished",
        "user_id",
        np.arange(4),
        rng.normal(size=(4, 3)).astype(np.float32),
        "query",
        finished=False,
    )
    pq.write_table(pa.table({"user": [1], "item_id": [2]}), tmp_path / "seen.parquet")
    base = ["retrieve", "--items", str(tmp_path / "items"), "--k", "3"]
    assert main(base + ["--queries", str(tmp_path / "queries"), "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["queries_out"] == 4
    cases = {
        "unfinished": "the embed job there did not finish (no _SUCCESS.json): run it again with --resume",
        "other": "were embedded by different models",
        "wide": "--items vectors have 3 values and --queries vectors 5: they must match",
        "queries": "is not empty: pass --overwrite",
    }
    for name, message in cases.items():
        assert main(base + ["--queries", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(base + ["--queries", str(tmp_path / "items"), "--out", str(tmp_path / "o2")]) == 2  # swapped towers
    assert "holds the item tower" in capsys.readouterr().err
    assert (
        main(
            base
            + [
                "--queries",
                str(tmp_path / "queries"),
                "--out",
                str(tmp_path / "o3"),
                "--exclude",
                str(tmp_path / "seen.parquet"),
            ]
        )
        == 2
    )
    assert "no column 'user_id'" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(base + ["--queries", str(tmp_path / "queries"), "--out", str(tmp_path / "mine"), "--overwrite"]) == 2
    assert "did not write (notes.txt)" in capsys.readouterr().err and (tmp_path / "mine" / "notes.txt").exists()
    assert (
        main(base + ["--queries", str(tmp_path / "queries"), "--out", str(tmp_path / "out"), "--overwrite", "--json"])
        == 0
    )


def upload(folder: Path, prefix: str) -> str:
    """Every file under a local folder, at the same relative keys under ``prefix`` on object storage."""
    from deepsets.features import storage

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        storage.write_bytes(storage.join(prefix, *path.relative_to(folder).parts), path.read_bytes())
    return prefix


def test_items_queries_exclusions_and_out_on_object_storage(tmp_path, s3_server):
    import uuid

    from deepsets.features import storage

    rng = np.random.default_rng(4)
    queries = rng.normal(size=(9, 4)).astype(np.float32)
    queries[5] = np.nan
    embed_output(tmp_path / "items", "item_id", np.arange(40), rng.normal(size=(40, 4)).astype(np.float32), "item")
    embed_output(tmp_path / "queries", "user_id", np.arange(9), queries, "query", rows_per_part=4)
    pq.write_table(pa.table({"user_id": [0, 0, 7], "item_id": [1, 2, 3]}), tmp_path / "seen.parquet")
    bucket = f"s3://deepsets/retrieve-{uuid.uuid4().hex[:8]}"
    upload(tmp_path, bucket)
    local = run_retrieve(
        parse_retrieve_config(
            items=str(tmp_path / "items"),
            queries=str(tmp_path / "queries"),
            k=6,
            out=str(tmp_path / "out"),
            exclude=str(tmp_path / "seen.parquet"),
        ),
        progress=False,
    )
    options = {
        "items": f"{bucket}/items",
        "queries": f"{bucket}/queries/",
        "k": 6,
        "out": f"{bucket}/top",
        "exclude": f"{bucket}/seen.parquet",
    }
    remote = run_retrieve(parse_retrieve_config(**options), progress=False)
    assert not (Path.cwd() / "s3:").exists()  # nothing went to a local folder named after the URI
    for key in ("queries_in", "queries_out", "queries_rejected", "rejected_by_reason", "items_indexed", "exclusions"):
        assert remote[key] == local[key], key
    assert remote["output"] == f"{bucket}/top" and (remote["queries_out"], remote["queries_rejected"]) == (8, 1)
    names = [name for name, _ in storage.children(f"{bucket}/top")]
    assert names == [
        "_SUCCESS.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
        "rejects.parquet",
    ]
    store, inner = storage.filesystem(f"{bucket}/top")
    got = pq.read_table([f"{inner}/{name}" for name in names if name.startswith("part-")], filesystem=store)
    assert got.equals(results(tmp_path / "out"))
    assert pq.read_table(f"{inner}/rejects.parquet", filesystem=store).to_pydict()["source_part"] == [
        "part-00001.parquet"
    ]
    success = json.loads(storage.read_text(f"{bucket}/top/_SUCCESS.json"))
    assert success["items"] == f"{bucket}/items" and success["queries"] == f"{bucket}/queries"
    with pytest.raises(JobError, match="is not empty: pass --overwrite"):
        run_retrieve(parse_retrieve_config(**options), progress=False)
    assert run_retrieve(parse_retrieve_config(**options, overwrite=True), progress=False)["queries_out"] == 8
    with pytest.raises(DataError, match="--items: no such folder"):
        run_retrieve(parse_retrieve_config(**{**options, "items": f"{bucket}/nothing"}), progress=False)


def test_a_failed_job_leaves_no_half_written_file_and_overwrite_clears_what_it_left(tmp_path, monkeypatch):
    import deepsets.pipelines.retrieval.job as job

    rng = np.random.default_rng(5)
    queries = rng.normal(size=(12, 3)).astype(np.float32)
    queries[1] = np.nan  # a reject in the first part
    embed_output(tmp_path / "items", "item_id", np.arange(20), rng.normal(size=(20, 3)).astype(np.float32), "item")
    embed_output(tmp_path / "queries", "user_id", np.arange(12), queries, "query", rows_per_part=4)
    cfg = parse_retrieve_config(
        items=str(tmp_path / "items"), queries=str(tmp_path / "queries"), k=3, out=str(tmp_path / "out"), batch_size=2
    )
    real_top_k, calls = job._top_k, []

    def failing_top_k(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the second batch of the second part
            raise OSError("disk full")
        return real_top_k(*args, **kwargs)

    monkeypatch.setattr(job, "_top_k", failing_top_k)
    with pytest.raises(OSError, match="disk full"):
        run_retrieve(cfg, progress=False)
    monkeypatch.setattr(job, "_top_k", real_top_k)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "part-00000.parquet"
    ]  # no rejects.parquet, no temp file
    (tmp_path / "out" / ".part-00002.parquet.tmp-99999").write_bytes(b"PAR1")  # what a killed job leaves
    (tmp_path / "out" / ".rejects.parquet.tmp-99999").write_bytes(b"PAR1")
    with pytest.raises(JobError, match="is not empty: pass --overwrite"):
        run_retrieve(cfg, progress=False)
    summary = run_retrieve(cfg.model_copy(update={"overwrite": True}), progress=False)
    assert (summary["queries_in"], summary["queries_out"], summary["queries_rejected"]) == (12, 11, 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "_SUCCESS.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
        "rejects.parquet",
    ]
    assert results(tmp_path / "out").num_rows == 11 * 3


def test_a_recall_that_cannot_be_measured_is_null_with_the_reason(tmp_path):
    rng = np.random.default_rng(6)
    embed_output(tmp_path / "items", "item_id", np.arange(200), rng.normal(size=(200, 4)).astype(np.float32), "item")
    embed_output(tmp_path / "queries", "user_id", np.arange(5), np.full((5, 4), np.nan, np.float32), "query")
    summary = run_retrieve(
        parse_retrieve_config(
            items=str(tmp_path / "items"),
            queries=str(tmp_path / "queries"),
            k=5,
            out=str(tmp_path / "out"),
            index="ivf",
        ),
        progress=False,
    )
    assert summary["recall_at_5_vs_exact"] is None and summary["recall_queries"] == 0
    assert summary["recall_not_measured"] == "no query has a usable vector to measure it on"

    def refuse(constant):
        raise ValueError(f"{constant} in _SUCCESS.json")

    written = json.loads((tmp_path / "out" / "_SUCCESS.json").read_text(), parse_constant=refuse)
    assert written["recall_at_5_vs_exact"] is None and written["recall_not_measured"] == summary["recall_not_measured"]
    assert (
        "recall@5 against exact search: not measured (no query has a usable vector to measure it on)"
        in format_retrieve_summary(summary)
    )
