"""The embed job's output folder on a local disk, without Ray: an output folder overlapping an
input folder is refused up front, part names of any fragment index are the job's own, and a
resumed job redoes only a corrupt part, never one it could not read for a passing I/O error."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from deepsets.features import storage
from deepsets.features.fragments import Fragment, plan_fragments
from deepsets.pipelines.embedding.job import check_output_apart, parse_embed_config, run_embed
from deepsets.pipelines.embedding.layout import EMBEDDINGS, FINGERPRINT_KEY, OURS
from deepsets.pipelines.embedding.output import parts_to_do, prepare_output
from deepsets.pipelines.embedding.parts import PartFile
from deepsets.pipelines.errors import JobError


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "data"
    (folder / "train").mkdir(parents=True)
    pq.write_table(pa.table({"id": list(range(250))}), folder / "train" / "rows.parquet", row_group_size=100)
    return folder


@pytest.mark.parametrize(
    "given, output, where",
    [
        ("data", "data/out", "inside the input folder"),
        ("data", "data", "is the input folder"),
        ("data/train", "data", "contains the input folder"),
        ("data/**/*.parquet", "data/out", "the input glob"),
    ],
)
def test_an_output_folder_overlapping_an_input_folder_is_refused_before_any_work(inputs, given, output, where):
    root = inputs.parent
    cfg = parse_embed_config(model=str(root / "no-model"), inputs=[str(root / given)], output=str(root / output))
    with pytest.raises(JobError, match=where):
        run_embed(cfg, progress=False)  # refused before the model is looked for
    assert not (root / output / EMBEDDINGS).exists()


def test_an_output_beside_the_inputs_is_accepted(inputs):
    check_output_apart(
        [str(inputs / "train"), str(inputs / "*.parquet"), str(inputs / "train" / "rows.parquet")], str(inputs / "out")
    )
    check_output_apart(
        [str(inputs / "train" / "*.parquet")], str(inputs / "train-out")
    )  # a sibling whose name shares a prefix


def test_an_output_prefix_inside_an_input_prefix_on_object_storage_is_refused(s3_server):
    import uuid

    base = f"s3://deepsets/inputs-{uuid.uuid4().hex[:8]}"
    storage.write_bytes(f"{base}/train/rows.parquet", b"PAR1")
    with pytest.raises(JobError, match=f"--output {base}/train/out lies inside the input folder {base}/train"):
        check_output_apart([f"{base}/train/"], f"{base}/train/out")
    with pytest.raises(JobError, match="contains the input folder"):
        check_output_apart([f"{base}/train"], base)
    check_output_apart([f"{base}/train"], f"{base}/train-out")


def test_part_names_of_any_fragment_index_are_the_jobs_own(tmp_path):
    fragment = Fragment("in.parquet", 7, 123456, 0, 10)
    assert fragment.name == "part-00007-123456.parquet"
    assert OURS.match(fragment.name) and OURS.match(f".{fragment.name}.tmp-4242")
    assert not OURS.match("part-7-1.parquet") and not OURS.match("notes-00007-123456.parquet")
    out = str(tmp_path / "out")
    manifest = {"format": 2, "weights_sha256": "w1", "inputs": [], "fragments": [fragment.to_dict()]}
    prepare_output(out, dict(manifest), resume=False, overwrite=False)
    write_part(out, fragment, 10)
    resumed = prepare_output(out, dict(manifest), resume=True, overwrite=False)  # its own part is not a foreign file
    assert parts_to_do(out, resumed, "w1") == ([], [])


def write_part(out: str, fragment: Fragment, rows: int) -> str:
    part = PartFile(storage.join(out, EMBEDDINGS, fragment.name))
    part.write(pa.table({"id": list(range(rows)), "embedding": [[0.5, 1.0]] * rows}), {FINGERPRINT_KEY.decode(): "w1"})
    part.commit()
    return part.final


@pytest.fixture
def resumable(tmp_path):
    """An output folder with one good part per fragment, ready to resume."""
    source = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": list(range(250))}), source, row_group_size=100)
    fragments = plan_fragments([str(source)], 100)
    out = str(tmp_path / "out")
    manifest = {"format": 2, "weights_sha256": "w1", "inputs": [], "fragments": [f.to_dict() for f in fragments]}
    prepare_output(out, dict(manifest), resume=False, overwrite=False)
    for fragment in fragments:
        write_part(out, fragment, fragment.rows)
    return out, prepare_output(out, dict(manifest), resume=True, overwrite=False)


class FailingReads(pafs.FileSystemHandler):
    """The local disk, except that opening a file to read fails as a dropped connection does."""

    def __init__(self):
        self.disk = pafs.LocalFileSystem()

    def open_input_file(self, path):
        raise OSError(f"AWS Error NETWORK_CONNECTION during GetObject operation on {path}: connection reset")

    open_input_stream = open_input_file

    def get_file_info(self, paths):
        return self.disk.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.disk.get_file_info(selector)

    def delete_file(self, path):
        self.disk.delete_file(path)

    def get_type_name(self):
        return "failing-reads"

    def normalize_path(self, path):
        return path

    def equals(self, other):
        return self is other

    def _not_needed(self, *args):
        raise NotImplementedError

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = move = copy_file = _not_needed
    open_output_stream = open_append_stream = _not_needed


def test_a_read_error_while_checking_a_kept_part_fails_the_job_and_deletes_nothing(resumable, monkeypatch):
    out, fragments = resumable
    monkeypatch.setattr(storage, "filesystem", lambda path: (pafs.PyFileSystem(FailingReads()), os.path.abspath(path)))
    with pytest.raises(
        JobError, match=r"cannot check part-00000-00000.parquet .*connection reset.*nothing was deleted.*--resume"
    ):
        parts_to_do(out, fragments, "w1")
    assert [name for name, _ in storage.children(storage.join(out, EMBEDDINGS))] == [f.name for f in fragments]


@pytest.mark.parametrize("damage", ["truncated", "footer garbage"])
def test_a_corrupt_part_is_redone(resumable, damage):
    out, fragments = resumable
    path = storage.join(out, EMBEDDINGS, fragments[1].name)
    data = storage.read_bytes(path)
    # truncated: no magic bytes (ArrowInvalid); footer garbage: the magic and the length intact,
    # the footer's first bytes overwritten (Parquet raises an OSError: "Couldn't deserialize thrift")
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    broken = data[: len(data) // 2] if damage == "truncated" else data[:footer] + b"\xff" * 16 + data[footer + 16 :]
    with open(path, "wb") as handle:
        handle.write(broken)
    todo, redone = parts_to_do(out, fragments, "w1")
    assert [f.name for f in todo] == [fragments[1].name] and not storage.exists(path)
    assert [r["part"] for r in redone] == [fragments[1].name] and redone[0]["problem"].startswith("unreadable (")
