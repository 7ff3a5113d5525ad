"""Errors that list problems survive pickling, as Ray pickles an error raised in a worker or a trial."""

import pickle

from deepsets.features.errors import SchemaError, ValidationProblems
from deepsets.pipelines.errors import ConfigError


def test_validation_problems_pickle_with_their_source_and_problems():
    for error in (
        ConfigError("trial 1", ["training.lr: Input should be greater than 0 (found -1.0)"]),
        SchemaError("schema.toml", ["modality[0].kind: unknown", "id_column: missing"]),
        ValidationProblems("options", ["k: must be >= 1"]),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and copy.source == error.source and copy.problems == error.problems
        assert str(copy) == str(error)
