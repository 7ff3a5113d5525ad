"""dense_sequence positions: counted from the first vector by default, from the last with
``positions = "from_end"`` (a history, whose most recent element is what matters)."""

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from deepsets.batch import ModalityTensors
from deepsets.encoders.dense_sequence import DenseSequenceEncoder
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec
from deepsets.modality import ModalityInfo


def _last_tokens(encoder: DenseSequenceEncoder) -> torch.Tensor:
    """The token of each row's last vector, for two rows of 3 and 1 vectors ending in the same vector."""
    last = [1.0, -2.0]
    values = torch.tensor([[0.5, 0.5], [3.0, 1.0], last, last])  # (V=4, 2): rows of 3 and 1
    batch = ModalityTensors.from_lengths(values, torch.tensor([3, 1]), torch.tensor([True, True]))
    tokens = encoder(batch).tokens  # (4, D)
    return tokens[[2, 3]]  # (2, D)


def test_from_end_gives_the_last_vector_the_same_position_in_every_row():
    torch.manual_seed(0)
    info = ModalityInfo("waves", "dense_sequence", dim=2, max_len=8, positions_from_end=True)
    tokens = _last_tokens(DenseSequenceEncoder.from_info(info, dim=16, ff_dim=64))
    torch.testing.assert_close(tokens[0], tokens[1])


def test_from_start_by_default_so_the_last_vector_sits_at_each_row_length():
    torch.manual_seed(0)
    info = ModalityInfo("frames", "dense_sequence", dim=2, max_len=8)
    tokens = _last_tokens(DenseSequenceEncoder.from_info(info, dim=16, ff_dim=64))
    assert not torch.allclose(tokens[0], tokens[1])  # positions 2 and 0


def test_the_schema_field_reaches_the_model_info_and_defaults_to_from_start(tmp_path):
    rows = [[[1.0, 2.0]] * (i % 3 + 1) for i in range(12)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"waves": pa.array(rows), "frames": pa.array(rows)}), path)
    schema = parse_schema(
        {
            "modality": [
                {"name": "waves", "kind": "dense_sequence", "dim": 2, "max_len": 8, "positions": "from_end"},
                {"name": "frames", "kind": "dense_sequence", "dim": 2, "max_len": 8},
            ]
        }
    )
    by_name = {m.name: m for m in FeatureSpec.fit(schema, [str(path)]).model_inputs()}
    assert by_name["waves"].positions_from_end and not by_name["frames"].positions_from_end
