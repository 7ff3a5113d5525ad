"""``deepsets embed --output`` must name a folder: a file there is refused by name, before the
model loads."""

from __future__ import annotations

import pytest

from deepsets.pipelines.cli import main
from deepsets.pipelines.embedding.job import check_output_folder
from deepsets.pipelines.errors import JobError


def test_an_existing_file_as_output_is_refused_naming_it(tmp_path, capsys):
    taken = tmp_path / "embeddings.parquet"
    taken.write_bytes(b"the user's file")
    status = main(
        ["embed", "--model", str(tmp_path / "no-model"), "--input", str(tmp_path / "in"), "--output", str(taken)]
    )
    assert status == 2
    assert capsys.readouterr().err == (
        f"error: {taken} is a file: --output names a folder (a new one, or one an embed job wrote); "
        "choose another --output\n"
    )
    assert taken.read_bytes() == b"the user's file"


def test_a_file_on_the_way_to_the_output_folder_is_named(tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("x")
    with pytest.raises(
        JobError, match=rf"^{taken} is a file, in the way of --output {taken}/emb: --output names a folder"
    ):
        check_output_folder(str(taken / "emb"))


def test_a_new_or_existing_folder_and_object_storage_pass(tmp_path):
    check_output_folder(str(tmp_path))  # an existing folder
    check_output_folder(str(tmp_path / "new" / "deeper"))  # made by the job
    check_output_folder("s3://bucket/emb")  # a prefix: nothing can be in the way
