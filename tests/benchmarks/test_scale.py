"""benchmarks.speed.scale's data layouts and its in-process plan of what N workers decode."""

from benchmarks.speed.scale import planned_decoding
from benchmarks.speed.scaling_workload import write_data


def test_small_row_groups_are_decoded_once_and_single_group_files_pay_for_the_smaller_piece_of_cut_groups(tmp_path):
    even = write_data(tmp_path / "even", 2_400, row_group_rows=100)
    assert planned_decoding(even, 4, batch_size=64) == {
        "decoded": 2_400,
        "max_worker": 600,
    }  # every cut on a row-group edge
    cut = write_data(tmp_path / "cut", 2_400, row_group_rows=800, files=3)
    found = planned_decoding(cut, 4, batch_size=64)
    # shares of 600 rows over row groups of 800, cut 600 | 200, 400 | 400 and 200 | 600: the share taking a cut group's
    # tail also decodes its head, the smaller piece (200 + 400 + 200 rows twice); stopping at a share's end decodes no more
    assert found["decoded"] == 2_400 + 200 + 400 + 200 and found["max_worker"] == 1_000
