"""What an embed actor does: load the model once, then read each fragment's rows, embed them
and hand them to the fragment's writer (or reject them).

A fragment's output appears all at once (:mod:`deepsets.pipelines.embedding.writer` and
:mod:`deepsets.pipelines.embedding.parts`: locally a hidden temp file synced and renamed into
place, on object storage one PUT), ``rejects/<name>`` before ``embeddings/<name>``. An existing
``embeddings/<name>`` therefore means "this fragment is done", which is what makes ``--resume``
exactly once after any crash (and ``deepsets.pipelines.embedding.output`` checks each kept
part's footer, rows and model fingerprint). The actor's process is tuned first
(:mod:`deepsets.pipelines.embedding.process_tuning`), and its model is rebuilt without MLflow
(:func:`load_model`).
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
from torch import nn

from deepsets.batch import FeatureBatch
from deepsets.features.errors import DataError
from deepsets.features.files import open_parquet
from deepsets.features.fragments import Fragment, read_run
from deepsets.features.spec import FeatureSpec
from deepsets.inference import outputs_of
from deepsets.pipelines.embedding.layout import FINGERPRINT_KEY
from deepsets.pipelines.embedding.process_tuning import prepare_process, release_memory
from deepsets.pipelines.embedding.writer import FragmentWriter, Rejected
from deepsets.pipelines.models.source import ModelSource


def split_bad_rows(
    spec: FeatureSpec, table: pa.Table, id_column: Optional[str] = None
) -> Tuple[Optional[FeatureBatch], np.ndarray, List[Rejected]]:
    """Transform ``table``, setting aside the rows a check rejects until the rest converts.

    Args:
        spec: the model's feature spec.
        table: the rows to embed.
        id_column: the ids that key the output: a row without one is rejected ("null id"), as
            its embedding could not be joined back to anything.

    Returns:
        ``(batch, kept, rejected)``: the FeatureBatch of the kept rows (None if none is
        left), their positions in ``table``, and ``(positions, column, reason)`` per failed check.

    Raises:
        DataError: for a problem that is not about particular rows (e.g. a wrong column type).
    """
    kept = np.arange(table.num_rows)
    rejected: List[Rejected] = []
    if id_column and table.column(id_column).null_count:
        null = table.column(id_column).is_null().to_numpy(zero_copy_only=False)  # (N,)
        rejected.append((kept[null], id_column, "null id"))
        kept = kept[~null]
    while kept.size:
        part = table if kept.size == table.num_rows else table.take(pa.array(kept))
        try:
            return spec.transform(part, with_ids=False), kept, rejected
        except DataError as err:
            if err.rows is None or err.rows.size == 0:
                raise
            rejected.append((kept[err.rows], err.column or "", err.detail))
            kept = np.delete(kept, err.rows)
    return None, kept, rejected


def load_model(payload: Dict[str, Any], device: str) -> Tuple[ModelSource, nn.Module]:
    """An embed actor's model, rebuilt from the driver's :meth:`ModelSource.payload` with torch
    and deepsets alone: MLflow is not imported (importing ``mlflow.pyfunc`` adds about 70 MB and
    a second or two to each actor here).

    Args:
        payload: the plain values :meth:`ModelSource.payload` returned on the driver.
        device: ``cpu`` or ``cuda``.

    Returns:
        ``(source, model)``: the source (spec, settings, fingerprint) and the model to run (a
        two-tower model's chosen tower) in eval mode on ``device``.

    Raises:
        ValueError: when the settings do not rebuild the weights.
    """
    source = ModelSource.from_payload(payload)
    return source, source.build().to(device)


class FragmentEmbedder:
    """Embeds fragments with one model; a Ray Data callable class (one per actor).

    Args:
        payload: ``[ref]``, ``ref`` a Ray object holding :meth:`ModelSource.payload` (in a list, so
            the actor's constructor arguments stay small and the weights are fetched once).
        out_dir: the job's output directory.
        batch_size: rows per forward pass.
        with_modalities: also write per-modality vectors and presence.
        device: ``cpu`` or ``cuda``.
        threads: torch intra-op threads (the CPUs given to this worker).
    """

    def __init__(
        self,
        payload: List[Any],
        out_dir: str,
        batch_size: int,
        with_modalities: bool,
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        import ray

        prepare_process(threads)  # before the first tensor (the model's weights come next)
        source, self.model = load_model(ray.get(payload[0]), device)
        self.node_id = ray.get_runtime_context().get_node_id()  # the job reports the nodes it ran on
        self.spec = source.input_spec
        self.device = device
        self.out_dir = out_dir
        self.batch_size = batch_size
        self.with_modalities = with_modalities
        self.id_column = self.spec.schema.id_column
        self.columns = self.spec.schema.source_columns()
        if self.id_column and self.id_column not in self.columns:
            self.columns = self.columns + [self.id_column]
        self.metadata = {
            "deepsets.model_uri": source.uri,
            "deepsets.model_version": source.version,
            FINGERPRINT_KEY.decode(): source.weights_sha256,
            "deepsets.tower": source.tower or "",
        }

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Ray Data entry point: a batch of runs in (``run``: a JSON list of fragment dicts, see
        :func:`deepsets.features.fragments.plan_runs`), one summary row per fragment out.

        A bad-data error is returned in the ``error`` field of the fragment it stopped (not
        raised), so the driver can stop the job with the message instead of a remote traceback;
        the fragments of the run after it are not reported (the driver stops at the error).
        """
        rows: List[dict] = []
        for text in batch["run"]:
            run = [Fragment.from_dict(d) for d in json.loads(str(text))]
            done: List[dict] = []
            started = time.time()  # wall clock: the driver compares fragments across workers
            try:
                self.embed_run(run, done)
            except (DataError, ValueError, OSError) as err:
                failed = run[len(done)]
                done.append(
                    {
                        "name": failed.name,
                        "rows_in": failed.rows,
                        "rows_out": 0,
                        "rows_rejected": 0,
                        "error": str(err),
                        "started_at": done[-1]["finished_at"] if done else started,
                        "finished_at": time.time(),
                    }
                )
            rows.extend({**r, "node_id": self.node_id} for r in done)
        return {k: np.array([r[k] for r in rows]) for k in rows[0]}

    def forward(self, features: FeatureBatch) -> Dict[str, np.ndarray]:
        """The output columns of a batch: ``embedding`` (B, D) and, with per-modality vectors,
        ``vector_<m>`` (B, D; zeros where absent) and ``present_<m>`` (B,)."""
        if not self.with_modalities:
            return {"embedding": outputs_of(self.model, features, ("fused",), self.device)["fused"].numpy()}  # (B, D)
        out = outputs_of(self.model, features, ("fused", "vectors", "present"), self.device)
        vectors, present = out["vectors"].numpy(), out["present"].numpy()  # (B, M, D), (B, M)
        out = {"embedding": out["fused"].numpy()}  # (B, D)
        for m, name in enumerate(self.model.names):
            out[f"vector_{name}"] = np.where(present[:, m, None], vectors[:, m], 0.0)  # (B, D), zeros where absent
            out[f"present_{name}"] = present[:, m]  # (B,)
        return out

    def embed_run(self, run: List[Fragment], done: List[dict]) -> None:
        """Embed a run's fragments from one decode pass, committing each fragment's files as it ends.

        Args:
            run: contiguous fragments of one file.
            done: each finished fragment's counts are appended here, in order (so a caller
                that catches an error knows which fragment it stopped).

        Raises:
            DataError: for problems that are not about single rows (file, column named).
        """
        pieces = itertools.groupby(
            read_run(run, self.columns, self.batch_size), key=lambda piece: piece[0]
        )  # by fragment
        pending = next(pieces, None)  # (fragment, its pieces): the next fragment that has rows
        writer = None
        try:
            for fragment in run:
                writer = FragmentWriter(self.out_dir, fragment, self.id_column, self.metadata)
                if pending is not None and pending[0] == fragment:  # a fragment without rows has no pieces
                    for _, row_base, table in pending[1]:
                        self._embed_piece(writer, row_base, table)
                    pending = next(pieces, None)
                if not writer.has_rows:  # no row written: an empty file still marks the fragment done
                    self._write_empty(writer)
                done.append(writer.finish())
                release_memory()
        finally:
            if writer is not None:
                writer.discard()

    def _embed_piece(self, writer: FragmentWriter, row_base: int, table: pa.Table) -> None:
        """Embed rows of a fragment (``row_base``: the file row of the table's first row) and
        hand them to its writer; set aside the rows a check rejects.

        Raises:
            DataError: for a problem that is not about particular rows, located in the file.
        """
        try:
            features, kept, rejected = split_bad_rows(self.spec, table, self.id_column)
        except DataError as err:
            raise err.located(writer.fragment.path, row_base) from None
        if rejected:
            writer.reject(table, row_base, rejected)
        if features is not None:
            writer.write(table, row_base, kept, self.forward(features))

    def _write_empty(self, writer: FragmentWriter) -> None:
        """The output table with no rows (its schema from a zero-row forward pass)."""
        empty = open_parquet(writer.fragment.path).schema_arrow.empty_table().select(self.columns)
        features = self.spec.transform(empty, with_ids=False)
        writer.write(empty, 0, np.zeros(0, dtype=np.int64), self.forward(features))
