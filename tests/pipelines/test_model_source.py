"""Finding a trained model for a job: checkpoint directories, bad URIs, towers, payloads."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from deepsets.pipelines.errors import JobError
from deepsets.pipelines.models.source import ModelSource, load_model_source
from tests.pipelines.saved_models import save_model

SMALL = {"dim": 8, "layers": 0, "heads": 2, "fusion": "deepset"}


@pytest.fixture(scope="module")
def checkpoint(demo_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("source")
    model = save_model(directory, demo_spec, SMALL, seed=3, run_config={"data": {"label_columns": ["clicked"]}})
    return directory, model


def test_a_checkpoint_directory_loads_the_same_model(checkpoint, demo_spec, demo_data):
    directory, model = checkpoint
    source = load_model_source(str(directory))
    assert (
        source.version == "checkpoint epoch=3 step=42" and source.label_columns == ["clicked"] and source.run_id is None
    )
    assert source.model_args.dim == 8 and source.spec.names == demo_spec.names and not source.is_two_tower
    assert source.weights_sha256 == load_model_source(str(directory)).weights_sha256  # the same bytes, the same hash
    batch = demo_spec.transform(pq.read_table(next((demo_data / "valid").glob("*.parquet"))).slice(0, 50))
    built = source.build()
    assert not built.training
    with torch.no_grad():
        torch.testing.assert_close(built(batch).fused, model(batch).fused)


def test_a_payload_rebuilds_the_source_in_another_process(checkpoint):
    source = load_model_source(str(checkpoint[0]))
    again = ModelSource.from_payload(source.payload())
    assert again.weights_sha256 == source.weights_sha256 and again.model_args == source.model_args
    assert again.spec.to_dict() == source.spec.to_dict() and again.label_columns == source.label_columns


def test_towers_are_only_for_two_tower_models(checkpoint, demo_spec, tmp_path):
    with pytest.raises(ValueError, match="is not a two-tower model \\(task 'binary'\\)"):
        load_model_source(str(checkpoint[0])).with_tower("query")
    two_tower = {
        "dim": 8,
        "layers": 0,
        "heads": 2,
        "fusion": "deepset",
        "task": "two_tower",
        "query_modalities": ["history", "tags"],
        "item_modalities": ["image", "title"],
    }
    (tmp_path / "tt").mkdir()
    save_model(tmp_path / "tt", demo_spec, two_tower, seed=0)
    source = load_model_source(str(tmp_path / "tt"))
    assert source.is_two_tower
    with pytest.raises(ValueError, match=r"choose --tower query \(history, tags\) or --tower item \(image, title\)"):
        source.with_tower(None)
    item = source.with_tower("item")
    assert item.input_spec.names == ["image", "title"] and item.build().names == ("image", "title")
    assert source.input_spec.names == demo_spec.names  # no tower chosen: the whole spec


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: str(t / "missing"), "does not exist"),
        (lambda t: (t / "empty").mkdir() or str(t / "empty"), "neither a deepsets checkpoint directory"),
    ],
)
def test_paths_that_hold_no_model_are_named(tmp_path, make, message):
    with pytest.raises(JobError, match=message):
        load_model_source(make(tmp_path))


def test_a_half_written_checkpoint_names_the_missing_file(checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint[0], broken)
    (broken / "spec.json").unlink()
    with pytest.raises(JobError, match=r"broken: not a deepsets checkpoint \(no spec.json\)"):
        load_model_source(str(broken))


def test_a_checkpoint_whose_settings_are_unreadable_is_named(checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "unreadable"
    shutil.copytree(checkpoint[0], broken)
    (broken / "model_config.json").write_text('{"dim": 8, "width": 3}')
    with pytest.raises(
        JobError, match=r"unreadable: cannot read the checkpoint \(ValueError: model arguments: unknown \['width'\]"
    ):
        load_model_source(str(broken))
    (broken / "model_config.json").write_text('{"dim": 16, "layers": 0, "heads": 2, "fusion": "deepset"}')
    with pytest.raises(ValueError, match="do not rebuild these weights"):
        load_model_source(str(broken)).build()


def copy_to_store(directory, prefix: str, skip: tuple = ()) -> str:
    """Every file of a local checkpoint directory under ``prefix`` on object storage."""
    from deepsets.features import storage

    for path in sorted(directory.iterdir()):
        if path.name not in skip:
            storage.write_bytes(storage.join(prefix, path.name), path.read_bytes())
    return prefix


def test_a_checkpoint_on_object_storage_loads_and_embeds_as_the_local_one(checkpoint, demo_spec, demo_data, s3_server):
    import uuid

    directory, model = checkpoint
    stored = copy_to_store(directory, f"s3://deepsets/runs-{uuid.uuid4().hex[:8]}/run/checkpoint_000003")
    local, remote = load_model_source(str(directory)), load_model_source(stored)
    assert (
        remote.uri == stored and remote.version == "checkpoint epoch=3 step=42" and remote.label_columns == ["clicked"]
    )
    assert remote.weights_sha256 == local.weights_sha256 and remote.spec.to_dict() == local.spec.to_dict()
    assert remote.model_args == local.model_args and remote.run_config == local.run_config
    batch = demo_spec.transform(pq.read_table(next((demo_data / "valid").glob("*.parquet"))).slice(0, 50))
    with torch.no_grad():
        torch.testing.assert_close(remote.build()(batch).fused, model(batch).fused)


def test_a_half_written_checkpoint_on_object_storage_names_the_missing_file(checkpoint, s3_server):
    import uuid

    stored = copy_to_store(
        checkpoint[0], f"s3://deepsets/runs-{uuid.uuid4().hex[:8]}/run/checkpoint_000003", skip=("state.pt",)
    )
    with pytest.raises(JobError, match=r"checkpoint_000003: not a deepsets checkpoint \(no state.pt\)"):
        load_model_source(stored)
