"""Reading the ablation rows through a model's spec and encoding them once.

rows, keys = encode_rows(model, spec, inputs, label_columns=["clicked"], key_columns=["query_id"])
queries, corpus = encode_retrieval(two_tower, spec, inputs, items, "item_id")    # two_tower
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from deepsets.features.errors import DataError
from deepsets.features.reader import ParquetBatchReader
from deepsets.inference import iter_outputs
from deepsets.pipelines.ablation.methods import CachedRows
from deepsets.ranking import first_of_each

MIN_ROWS = 2


def encode_rows(
    model,
    spec,
    inputs: Sequence[str],
    label_columns: Sequence[str] = (),
    key_columns: Sequence[str] = (),
    batch_size: int = 1024,
    progress: bool = False,
    desc: str = "encoding",
) -> tuple[CachedRows, Dict[str, torch.Tensor]]:
    """Every row of ``inputs`` read through ``spec`` and encoded once by ``model``.

    Args:
        model: a set-fusion model or one tower of a two-tower model (``encode``).
        spec: the spec to read with (the tower's modalities only, for a tower).
        inputs: Parquet files, folders or globs.
        label_columns: the first is the rows' ``target``.
        key_columns: integer columns returned by name (query groups, item ids).
        batch_size: rows per encoder call.
        progress: a progress bar over the rows.
        desc: its label.

    Returns:
        The cached rows (``target``: the first label column's values, else a zero per row),
        and each label and key column as one tensor.

    Raises:
        DataError: for bad inputs (file, column, rows), or fewer than 2 rows.
    """
    reader = ParquetBatchReader(
        spec,
        list(inputs),
        batch_size=batch_size,
        label_columns=list(label_columns),
        key_columns=list(key_columns),
        progress=progress,
        desc=desc,
    )
    vectors, present, ids = [], [], []
    columns: Dict[str, List[torch.Tensor]] = {c: [] for c in list(label_columns) + list(key_columns)}
    for batch, out in iter_outputs(model, reader, ("vectors", "present")):
        vectors.append(out["vectors"])  # (b, M, D)
        present.append(out["present"])  # (b, M)
        for column in columns:
            columns[column].append(batch.labels[column])
        ids.append(
            batch.ids if batch.ids is not None else np.arange(reader.rows_read - batch.num_rows, reader.rows_read)
        )
    if reader.rows_read < MIN_ROWS:
        raise DataError(
            f"ablation needs at least {MIN_ROWS} rows; found {reader.rows_read} in {', '.join(map(str, inputs))}"
        )
    values = {column: torch.cat(parts) for column, parts in columns.items()}
    target = values[label_columns[0]] if label_columns else torch.zeros(reader.rows_read)
    return CachedRows(torch.cat(vectors), torch.cat(present), target, np.concatenate(ids), list(model.names)), values


def encode_retrieval(
    model,
    spec,
    inputs: Sequence[str],
    items: Optional[Sequence[str]],
    item_column: str,
    batch_size: int = 1024,
    progress: bool = False,
) -> tuple[CachedRows, CachedRows]:
    """The query rows (query tower) and the item corpus (item tower) of a two-tower model.

    Args:
        model: a :class:`deepsets.two_tower.TwoTowerModel`.
        spec: the model's whole spec.
        inputs: the query rows: query modalities and each row's held-out item id.
        items: the item table (one row per item: item modalities and the item id), or None:
            then the corpus is the distinct items of ``inputs``, each from its first row.
        item_column: the integer item id column.
        batch_size: rows per encoder call.
        progress: progress bars.

    Returns:
        ``(queries, corpus)``: ``queries.target`` (Q,) is each row's item as an index into the
        corpus; the corpus is sorted by item id, its ``ids`` the item ids.

    Raises:
        DataError: bad inputs, an item listed twice in ``items``, or a query whose item is not
            in the corpus (how many, with examples).
    """
    queries, keys = encode_rows(
        model.query,
        spec.subset(model.query.names),
        inputs,
        key_columns=[item_column],
        batch_size=batch_size,
        progress=progress,
        desc="encoding queries",
    )
    wanted = keys[item_column]  # (Q,) item id of each query
    source = list(items) if items else list(inputs)
    try:
        corpus, corpus_keys = encode_rows(
            model.item,
            spec.subset(model.item.names),
            source,
            key_columns=[item_column],
            batch_size=batch_size,
            progress=progress,
            desc="encoding items",
        )
    except DataError as err:
        if items:
            raise
        raise DataError(
            f"{err.detail} (without --items the item corpus is read from the inputs' item columns; "
            "--items names an item table instead)",
            file=err.file,
            column=err.column,
            rows=err.rows,
        ) from None
    item_ids = corpus_keys[item_column]  # (I,)
    unique, first, counts = first_of_each(item_ids)
    if items and bool((counts > 1).any()):
        twice = unique[counts > 1][:5].tolist()
        raise DataError(
            f"--items lists {int((counts > 1).sum())} item id(s) more than once (e.g. {twice}): one row per item",
            file=source[0],
            column=item_column,
        )
    corpus = CachedRows(
        corpus.vectors[first], corpus.present[first], torch.zeros(unique.numel()), unique.numpy(), corpus.names
    )
    position = torch.searchsorted(unique, wanted).clamp(max=unique.numel() - 1)  # (Q,)
    found = unique[position] == wanted
    if not bool(found.all()):
        missing = wanted[~found]
        raise DataError(
            f"{int(missing.numel())} of {wanted.numel()} query rows hold an item that is not in the item corpus "
            f"(e.g. item ids {missing.unique()[:5].tolist()}): every held-out item must be in --items",
            file=source[0],
            column=item_column,
        )
    queries.target = position
    return queries, corpus
