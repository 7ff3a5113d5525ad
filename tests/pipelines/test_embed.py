"""The batch embedding job: same values as the model (kill -9 + --resume: tests/faults),
invariant to batch size and workers, every row written or rejected, clear errors."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from deepsets.features.errors import DataError
from deepsets.pipelines.cli import main
from deepsets.pipelines.embedding.job import parse_embed_config, run_embed
from deepsets.pipelines.errors import ConfigError, JobError
from tests.pipelines.saved_models import save_model

MODEL_CONFIG = {"dim": 16, "layers": 1, "heads": 2, "ff_dim": 32, "fusion": "transformer", "fusion_layers": 1}


@pytest.fixture(scope="module")
def checkpoint(demo_spec, tmp_path_factory):
    """An (untrained, seeded) model saved as a training checkpoint directory."""
    directory = tmp_path_factory.mktemp("ckpt")
    model = save_model(directory, demo_spec, MODEL_CONFIG, seed=0)
    return {"dir": str(directory), "model": model, "spec": demo_spec}


def embed(checkpoint, inputs, output, **options):
    cfg = parse_embed_config(model=checkpoint["dir"], inputs=[str(p) for p in inputs], output=str(output), **options)
    return run_embed(cfg, progress=False)


def read_output(directory, sort_by=("source_file", "source_row")):
    table = pq.read_table(os.path.join(directory, "embeddings"))
    return table.sort_by([(c, "ascending") for c in sort_by])


def vectors(table, column="embedding"):
    return np.stack(table.column(column).to_numpy(zero_copy_only=False))  # (N, D)


def test_embeddings_equal_the_model_and_carry_the_model(ray_session, checkpoint, demo_data, tmp_path, capfd):
    summary = embed(checkpoint, [demo_data / "valid"], tmp_path / "out", batch_size=128, fragment_rows=250, workers=2)
    assert "constructor arguments in the object store" not in capfd.readouterr().err  # Ray core's line, dropped at fd 2
    assert summary["rows_in"] == summary["rows_out"] == 600 and summary["rows_rejected"] == 0
    assert summary["fragments"] == 3 and summary["duplicate_ids"]["ids"] == 0
    table = read_output(tmp_path / "out")
    source = pq.read_table(next((demo_data / "valid").glob("*.parquet")))
    assert table.column("source_row").to_pylist() == list(range(600))
    assert table.column("item_id").to_pylist() == source.column("item_id").to_pylist()
    with torch.no_grad():
        expected = checkpoint["model"](checkpoint["spec"].transform(source)).fused.numpy()  # (600, 16)
    np.testing.assert_allclose(vectors(table), expected, atol=1e-5)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    meta = pq.read_schema(tmp_path / "out" / "embeddings" / "part-00000-00000.parquet").metadata
    assert meta[b"deepsets.model_uri"].decode() == checkpoint["dir"]
    assert meta[b"deepsets.model_version"] == b"checkpoint epoch=3 step=42"
    assert len(meta[b"deepsets.weights_sha256"]) == 64
    assert json.loads((tmp_path / "out" / "_SUCCESS.json").read_text())["rows_out"] == 600


def test_batch_size_workers_and_fragments_do_not_change_values(ray_session, checkpoint, demo_data, tmp_path):
    one = embed(checkpoint, [demo_data / "train"], tmp_path / "a", batch_size=1000, workers=1, fragment_rows=3000)
    two = embed(
        checkpoint,
        [demo_data / "train"],
        tmp_path / "b",
        batch_size=37,
        workers=2,
        fragment_rows=290,
        with_modalities=True,
    )
    assert one["rows_out"] == two["rows_out"] == 3000
    assert (one["fragments"], two["fragments"]) == (5, 15)  # 5 files of 600 rows; 600 = 290 + 290 + 20
    a, b = read_output(tmp_path / "a"), read_output(tmp_path / "b")
    assert a.column("item_id").equals(b.column("item_id"))
    np.testing.assert_allclose(vectors(a), vectors(b), atol=1e-5)
    # per-modality vectors: zero exactly where the modality is absent, fusing them gives the embedding
    names = checkpoint["model"].names
    present = np.stack([b.column(f"present_{n}").to_numpy() for n in names], axis=1)  # (N, M)
    per_modality = np.stack([vectors(b, f"vector_{n}") for n in names], axis=1)  # (N, M, D)
    assert not np.abs(per_modality[~present]).any() and (~present).any()
    with torch.no_grad():
        fused = checkpoint["model"].fuse(torch.from_numpy(per_modality), torch.from_numpy(present)).fused.numpy()
    np.testing.assert_allclose(fused, vectors(b), atol=1e-5)


def write_bad_copy(source, path):
    """The file, in one row group, with planted bad rows: wrong image width (rows 3, 7), an
    infinite profile value (rows 10, 300), a negative history id (rows 12, 20), an image of the
    wrong width in row 12 too, and no item id in row 450."""
    table = pq.read_table(source)
    image = table.column("image").to_pylist()
    for r in (3, 7, 12):
        image[r] = [0.5] * 5
    profile = table.column("profile_0").to_numpy(zero_copy_only=False).copy()
    profile[10] = profile[300] = np.inf
    history = table.column("history").to_pylist()
    history[12] = [-4, 2]
    history[20] = [-1]
    table = table.set_column(
        table.schema.get_field_index("image"), "image", pa.array(image, table.schema.field("image").type)
    )
    table = table.set_column(
        table.schema.get_field_index("profile_0"), "profile_0", pa.array(profile, table.schema.field("profile_0").type)
    )
    table = table.set_column(
        table.schema.get_field_index("history"), "history", pa.array(history, table.schema.field("history").type)
    )
    ids = table.column("item_id").to_pylist()
    ids[450] = None
    table = table.set_column(table.schema.get_field_index("item_id"), "item_id", pa.array(ids, pa.int64()))
    pq.write_table(table, path, row_group_size=600)
    return table


def test_bad_rows_are_rejected_with_reasons_and_counted(ray_session, checkpoint, demo_data, tmp_path):
    source = next((demo_data / "valid").glob("*.parquet"))
    (tmp_path / "in").mkdir()
    bad = write_bad_copy(source, tmp_path / "in" / "bad.parquet")
    # one row group cut in fragments of 250, 250, 100 rows: two workers read it in two one-pass runs
    summary = embed(checkpoint, [tmp_path / "in"], tmp_path / "out", batch_size=64, fragment_rows=250, workers=2)
    assert (summary["rows_in"], summary["rows_out"], summary["rows_rejected"]) == (600, 593, 7)
    rejects = pq.read_table(tmp_path / "out" / "rejects").sort_by("source_row")
    assert rejects.column("source_row").to_pylist() == [3, 7, 10, 12, 20, 300, 450]
    assert sorted(os.listdir(tmp_path / "out" / "rejects")) == ["part-00000-00000.parquet", "part-00000-00001.parquet"]
    assert (
        rejects.column("item_id").to_pylist()
        == pc.take(bad.column("item_id"), [3, 7, 10, 12, 20, 300, 450]).to_pylist()
    )
    reasons = dict(zip(rejects.column("source_row").to_pylist(), rejects.column("reject_reason").to_pylist()))
    columns = dict(zip(rejects.column("source_row").to_pylist(), rejects.column("reject_column").to_pylist()))
    assert "expected 256 floats per vector, found 5" in reasons[3] and columns[3] == "image"
    assert columns[10] == "profile_0" and "infinite" in reasons[10]
    assert columns[20] == "history" and "negative" in reasons[20]
    assert columns[450] == "item_id" and reasons[450] == "null id"  # an embedding nothing could be joined to
    assert columns[12] in ("image", "history")  # bad twice: rejected once, for the first check that fails
    assert rejects.column("image").to_pylist()[0] == [0.5] * 5  # the row as read
    written = read_output(tmp_path / "out")
    assert sorted(written.column("source_row").to_pylist() + rejects.column("source_row").to_pylist()) == list(
        range(600)
    )
    by_reason = {(r["column"], r["rows"]) for r in summary["rejected_by_reason"]}
    assert ("profile_0", 2) in by_reason and ("history", 1) in by_reason and ("item_id", 1) in by_reason


def test_duplicate_ids_are_reported(ray_session, checkpoint, demo_data, tmp_path):
    source = next((demo_data / "valid").glob("*.parquet"))
    (tmp_path / "in").mkdir()
    for name in ("a.parquet", "b.parquet"):
        (tmp_path / "in" / name).write_bytes(source.read_bytes())
    summary = embed(checkpoint, [tmp_path / "in"], tmp_path / "out")
    assert summary["rows_out"] == 1200
    assert summary["duplicate_ids"]["ids"] == 600 and summary["duplicate_ids"]["extra_rows"] == 600


def test_overwrite_and_resume_semantics(ray_session, checkpoint, demo_data, tmp_path):
    out = tmp_path / "out"
    first = embed(checkpoint, [demo_data / "valid"], out, fragment_rows=200)
    with pytest.raises(JobError, match="already holds a finished job: choose another --output, or pass --overwrite"):
        embed(checkpoint, [demo_data / "valid"], out, fragment_rows=200)
    again = embed(checkpoint, [demo_data / "valid"], out, fragment_rows=200, resume=True)
    assert again["rows_this_run"] == 0 and again["rows_out"] == first["rows_out"] == 600
    (out / "embeddings" / "part-00000-00001.parquet").unlink()  # as if that fragment never finished
    redone = embed(checkpoint, [demo_data / "valid"], out, fragment_rows=200, resume=True)
    assert redone["rows_this_run"] == 200 and redone["rows_out"] == 600
    replaced = embed(checkpoint, [demo_data / "train"], out, fragment_rows=1000, overwrite=True)
    assert replaced["rows_out"] == 3000 and len(list((out / "embeddings").glob("*.parquet"))) == 5
    with pytest.raises(JobError, match="cannot resume .* inputs differ"):
        embed(checkpoint, [demo_data / "valid"], out, resume=True)
    # a part cut short (a power loss after the rename) is found and redone on resume
    part = out / "embeddings" / "part-00001-00000.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    mended = embed(checkpoint, [demo_data / "train"], out, fragment_rows=1000, resume=True)
    assert mended["rows_out"] == 3000 and mended["rows_this_run"] == 600
    assert [r["part"] for r in mended["parts_redone"]] == ["part-00001-00000.parquet"] and "unreadable" in mended[
        "parts_redone"
    ][0]["problem"]
    with pytest.raises(ConfigError, match="exclude each other"):
        parse_embed_config(model="m", inputs=["x"], output="o", resume=True, overwrite=True)


def test_cli_names_a_non_parquet_input_and_bad_options(checkpoint, demo_data, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-0.parquet").write_bytes(next((demo_data / "valid").glob("*.parquet")).read_bytes())
    (tmp_path / "in" / "readme.parquet").write_text("not parquet")
    status = main(
        ["embed", "--model", checkpoint["dir"], "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert status == 2 and "readme.parquet: not a readable Parquet file" in err and "Traceback" not in err
    status = main(
        [
            "embed",
            "--model",
            checkpoint["dir"],
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "o"),
            "--batch-size",
            "0",
        ]
    )
    assert status == 2 and "batch_size" in capsys.readouterr().err
    status = main(
        [
            "embed",
            "--model",
            str(tmp_path / "nowhere"),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert status == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out" / "embeddings").exists()  # nothing started


def test_a_second_job_on_the_same_output_is_refused_and_names_the_first(checkpoint, demo_data, tmp_path):
    from deepsets.pipelines.embedding.output import OutputLock

    out = tmp_path / "out"
    with OutputLock(str(out)) as first:  # the first job's lock, held as a running job holds it
        with pytest.raises(
            JobError,
            match=rf"is in use by another embed job \(pid {os.getpid()} on .*, started {first.me['started']}\)",
        ):
            embed(checkpoint, [demo_data / "valid"], out)
    assert not (out / "embeddings").exists()  # refused before anything was written


def test_parts_from_another_model_are_redone_and_never_mixed(ray_session, checkpoint, demo_spec, demo_data, tmp_path):
    other = tmp_path / "other-model"
    other.mkdir()
    save_model(other, demo_spec, MODEL_CONFIG, seed=1)
    out = tmp_path / "out"
    embed(checkpoint, [demo_data / "valid"], out, fragment_rows=200)
    embed({"dir": str(other)}, [demo_data / "valid"], tmp_path / "by-other", fragment_rows=200)
    foreign = tmp_path / "by-other" / "embeddings" / "part-00000-00001.parquet"
    (out / "embeddings" / foreign.name).write_bytes(foreign.read_bytes())  # a second job's part, same name
    resumed = embed(checkpoint, [demo_data / "valid"], out, fragment_rows=200, resume=True)
    assert [r["part"] for r in resumed["parts_redone"]] == [foreign.name] and "another model" in resumed[
        "parts_redone"
    ][0]["problem"]
    embed(checkpoint, [demo_data / "valid"], tmp_path / "fresh", fragment_rows=200)
    np.testing.assert_allclose(
        vectors(read_output(out)), vectors(read_output(tmp_path / "fresh")), atol=1e-6
    )  # all model A
    (out / "embeddings" / "notes.txt").write_text("mine")
    with pytest.raises(JobError, match=r"holds files an embed job did not write \(embeddings/notes.txt\)"):
        embed(checkpoint, [demo_data / "valid"], out, overwrite=True)
    assert (out / "embeddings" / "notes.txt").exists()


@pytest.mark.parametrize(
    "ids, problem",
    [
        (
            pa.array(np.arange(600, dtype=np.float64)),
            r"row ids must be integers or strings, found double \(pandas writes",
        ),
        (
            pa.array(np.append(np.arange(599, dtype=np.uint64), np.uint64(2**63 + 5))),
            r"column 'item_id', row 599: row ids beyond 2\^63 - 1",
        ),
    ],
)
def test_row_ids_that_cannot_be_written_are_refused_before_any_work(checkpoint, demo_data, tmp_path, ids, problem):
    table = pq.read_table(next((demo_data / "valid").glob("*.parquet")))
    (tmp_path / "in").mkdir()
    pq.write_table(
        table.set_column(table.schema.get_field_index("item_id"), "item_id", ids), tmp_path / "in" / "a.parquet"
    )
    with pytest.raises(Exception, match=problem):
        embed(checkpoint, [tmp_path / "in"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ids_of_several_integer_types_and_dictionaries_are_one_int64_column(
    ray_session, checkpoint, demo_data, tmp_path
):
    table = pq.read_table(next((demo_data / "valid").glob("*.parquet")))
    at = table.schema.get_field_index("item_id")
    (tmp_path / "in").mkdir()
    pq.write_table(
        table.slice(0, 300).set_column(at, "item_id", table.column("item_id").slice(0, 300).cast(pa.int32())),
        tmp_path / "in" / "a.parquet",
    )
    pq.write_table(
        table.slice(300).set_column(at, "item_id", table.column("item_id").slice(300).cast(pa.uint64())),
        tmp_path / "in" / "b.parquet",
    )
    summary = embed(checkpoint, [tmp_path / "in"], tmp_path / "out")
    out = read_output(tmp_path / "out")
    assert summary["rows_out"] == 600 and out.schema.field("item_id").type == pa.int64()
    assert out.column("item_id").to_pylist() == table.column("item_id").to_pylist()
    strings = table.set_column(at, "item_id", pa.array([f"i{i}" for i in range(600)]).dictionary_encode())
    pq.write_table(strings, tmp_path / "in" / "c.parquet")
    with pytest.raises(DataError, match=r"int row ids in .*a.parquet but string row ids here"):
        embed(checkpoint, [tmp_path / "in"], tmp_path / "out2")


def test_the_start_line_counts_the_workers_the_job_starts():
    from deepsets.pipelines.embedding.job import _workers_shown

    assert _workers_shown(2, 5) == "2 worker(s)"
    assert _workers_shown(2, 1) == "1 worker(s) (--workers 2; one per fragment at most, see --fragment-rows)"
