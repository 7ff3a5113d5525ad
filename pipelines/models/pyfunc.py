"""Package a trained model as an MLflow pyfunc model that embeds Parquet rows.

    with mlflow.start_run():
        uri = log_deepsets_model(model, spec, ModelArgs(dim=128, fusion="transformer"))
    served = mlflow.pyfunc.load_model(uri)
    served.predict(pq.read_table("part-00000.parquet").to_pandas())      # item_id, embedding
    served.predict(frame, params={"output": "logits", "batch_size": 256})
    model, spec, args = load_deepsets_model(uri)                           # the torch model itself

The logged model is three plain artifacts plus a tiny pyfunc wrapper:

- ``weights``: ``weights.pt``, the ``state_dict`` written by ``torch.save`` and read back with
  ``torch.load(weights_only=True)`` (tensors only, no arbitrary pickle);
- ``spec``: ``spec.json``, the fitted :class:`deepsets.features.spec.FeatureSpec` (``FeatureSpec.save``);
- ``model_config``: ``model_config.json``, the model's settings
  (:class:`deepsets.model_args.ModelArgs` as plain JSON values).

Loading rebuilds the model with ``build_model(spec.model_inputs(), args)`` and loads
the weights (:mod:`deepsets.pipelines.models.rebuild`, which needs no MLflow: batch jobs' workers
rebuild models with it), so the code that runs is the installed ``deepsets`` package: **loading needs
``deepsets`` importable** (same or a compatible version). The logged requirements say so
(``deepsets==<version>``); MLflow does not infer requirements (slow, and it may reach the
network), and no code is copied into the model.

Why pyfunc + state_dict and not ``mlflow.pytorch.log_model``:

- MLflow 3's default PyTorch format (``pt2``, ``torch.export``) needs a tensor input example
  and traces a graph with fixed input structure; our input is a
  :class:`deepsets.batch.FeatureBatch`, a dict of *jagged* tensors whose element counts change
  per batch and whose modalities may be absent: it does not export as one tensor signature.
- The legacy ``pickle`` format pickles the whole ``nn.Module``: it ties the saved model to the
  code layout (module paths, class names) at save time, and loading it runs arbitrary pickle.
- A pyfunc also owns the Parquet/pandas -> ``FeatureBatch`` step (``spec.transform``), so the
  served model takes the same columns as training and returns embeddings, not tensors.

Nothing is pickled at all: the model is logged "from code" (MLflow 3's recommended form), its
``python_model`` being a three-line file (:data:`MODEL_CODE`) that imports
:class:`DeepsetsPyfunc` from the installed package and hands MLflow an instance.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from mlflow.models import Model, ModelSignature
from mlflow.types import ParamSchema, ParamSpec
from torch import nn

from deepsets.features.spec import FeatureSpec
from deepsets.inference import collect_outputs
from deepsets.kinds import kind_traits
from deepsets.model_args import ModelArgs
from deepsets.pipelines.models.rebuild import (
    FILES,
    MODEL_CONFIG,
    SPEC,
    WEIGHTS,
    load_model_files,
    rebuild_model,
    tower_view,
)

OUTPUTS = ("embedding", "logits")
DEFAULT_BATCH_SIZE = 1024

PARAMS = ParamSchema(
    [
        ParamSpec("batch_size", "long", DEFAULT_BATCH_SIZE),
        ParamSpec("output", "string", "embedding"),  # "embedding" (fused) or "logits"
        ParamSpec("device", "string", "cpu"),
        ParamSpec("tower", "string", ""),  # two-tower models: "query" or "item"
    ]
)
"""Inference params. MLflow passes ``params`` to ``predict`` only when the signature declares
them (otherwise it drops them with a warning), so the logged signature holds this schema and no
input schema: the input columns are checked by ``spec.transform``, which knows list columns."""


MODEL_CODE = '''"""Entry point of a deepsets pyfunc model (MLflow models-from-code); the code is the installed
deepsets package, the weights are this model's artifacts."""
import mlflow

from deepsets.pipelines.models.pyfunc import DeepsetsPyfunc

mlflow.models.set_model(DeepsetsPyfunc())
'''
"""Logged as the model's ``python_model`` file, so nothing at all is pickled."""


def _requirements() -> list[str]:
    try:
        return [f"deepsets=={metadata.version('deepsets')}"]
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return ["deepsets"]


def to_arrow(model_input: Any, spec: FeatureSpec) -> pa.Table:
    """The rows as an Arrow table: pandas frames (what pyfunc passes) are converted, list
    columns of numpy arrays included.

    A column with no value at all (every row missing, or no rows) comes out ``null``-typed;
    ``FeatureSpec.transform`` reads that as missing everywhere. pandas stores an int column with
    nulls as float64: a one-id-per-row modality (a categorical) fitted on int ids whose floats
    are all whole numbers is cast back to int64 here (anything else is left for the spec to
    reject with a clear error).

    Raises:
        TypeError: for anything but a pandas DataFrame or a pyarrow Table / RecordBatch.
    """
    if isinstance(model_input, pa.RecordBatch):
        model_input = pa.Table.from_batches([model_input])
    elif isinstance(model_input, pd.DataFrame):
        model_input = pa.Table.from_pandas(model_input, preserve_index=False)
    elif not isinstance(model_input, pa.Table):
        raise TypeError(f"expected a pandas DataFrame or a pyarrow Table, got {type(model_input).__name__}")
    table = model_input
    for name in spec.names:
        m, traits = spec.modality(name), kind_traits(spec.modality(name).kind)
        scalar_ids = traits.values == "ids" and not traits.jagged
        if not scalar_ids or spec.fitted[name].id_type != "int" or m.source_column not in table.column_names:
            continue
        column = table.column(m.source_column)
        if pa.types.is_floating(column.type):
            values = column.to_numpy(zero_copy_only=False)
            given = values[~np.isnan(values)]
            if np.array_equal(given, np.round(given)):
                i = table.column_names.index(m.source_column)
                table = table.set_column(i, m.source_column, pc.cast(column, pa.int64()))
    return table


def embed_table(
    model: nn.Module,
    spec: FeatureSpec,
    table: pa.Table,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    output: str = "embedding",
    device: str | torch.device = "cpu",
    tower: Optional[str] = None,
) -> pd.DataFrame:
    """Run ``model`` over ``table`` in batches of ``batch_size`` rows, in order.

    Returns:
        A DataFrame with one row per input row: the spec's id column first (when the spec
        declares one and the table holds it), then ``embedding`` (the fused vector) or
        ``logits``, each a float32 numpy array. A two-tower model runs its ``tower``
        ("query" or "item", which reads only that side's columns); its embedding and logits
        are the same unit-length vector.

    Raises:
        ValueError: for a bad ``batch_size``, ``output`` or ``tower``.
        DataError: from ``spec.transform`` for missing columns or bad values.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model, spec = tower_view(model, spec, tower)
    # no rows: one empty batch, for the width
    batches = (
        spec.transform(table.slice(start, batch_size), with_ids=False)
        for start in range(0, max(table.num_rows, 1), batch_size)
    )
    name = "fused" if output == "embedding" else "logits"
    values = collect_outputs(model, batches, (name,), device)[name].numpy()  # (B, D) or (B, K)
    columns: Dict[str, Any] = {}
    id_column = spec.schema.id_column
    if id_column and id_column in table.column_names:
        columns[id_column] = table.column(id_column).to_pandas()
    columns[output] = list(values)
    return pd.DataFrame(columns)


class DeepsetsPyfunc(mlflow.pyfunc.PythonModel):
    """The pyfunc wrapper: artifacts in, a model that embeds DataFrames / Arrow tables out.

    ``predict(context, model_input, params)``: ``model_input`` is a pandas DataFrame (what
    pyfunc passes) or a pyarrow Table holding the spec's columns; ``params`` (all optional):
    ``batch_size`` (1024), ``output`` (``"embedding"`` or ``"logits"``), ``device`` (``"cpu"``),
    ``tower`` (two-tower models: ``"query"`` or ``"item"``).
    Returns a DataFrame: the spec's id column first (if declared and present), then
    ``embedding`` or ``logits`` (a float32 array per row), rows in input order.
    """

    def __init__(self) -> None:
        self.model: Optional[nn.Module] = None  # set by load_context; nothing is pickled with it
        self.spec: Optional[FeatureSpec] = None
        self.device = "cpu"

    def load_context(self, context) -> None:
        self.model, self.spec, _ = load_model_files({k: Path(context.artifacts[k]) for k in FILES})
        self.device = "cpu"

    # The pd.DataFrame hint is what pyfunc passes; MLflow infers no schema from it (it would
    # warn about a missing hint at class definition otherwise). A pyarrow Table works as well.
    def predict(self, context, model_input: pd.DataFrame, params: Optional[Dict[str, Any]] = None) -> pd.DataFrame:
        if self.model is None:
            raise RuntimeError("DeepsetsPyfunc.predict before load_context: load it with mlflow.pyfunc.load_model")
        params = params or {}
        device = str(params.get("device") or "cpu")
        if device != self.device:
            self.model.to(device)
            self.device = device
        return embed_table(
            self.model,
            self.spec,
            to_arrow(model_input, self.spec),
            batch_size=int(params.get("batch_size") or DEFAULT_BATCH_SIZE),
            output=str(params.get("output") or "embedding"),
            device=device,
            tower=str(params.get("tower") or "") or None,
        )


def log_deepsets_model(
    model: nn.Module | Dict[str, torch.Tensor],
    spec: FeatureSpec,
    args: ModelArgs,
    name: str = "model",
    input_example: Optional[pd.DataFrame] = None,
    step: int = 0,
) -> str:
    """Log a trained model as a pyfunc model in the active MLflow run; returns its model URI.

    Args:
        model: the trained model, or its ``state_dict`` (any device; saved from the CPU).
        spec: the fitted spec the model was trained with.
        args: the settings that built it; checked here by building a model from them and
            loading the weights strictly (the one build this costs).
        name: the logged model's name (MLflow 3's ``name``, formerly ``artifact_path``).
        input_example: a few input rows to store with the model (optional; MLflow runs the
            model on them once while logging, as a check).
        step: the run's metrics logged at this step (the epoch the weights are from) are
            attached to the logged model.

    Returns:
        The model URI (``models:/<model_id>`` in MLflow 3), for ``mlflow.pyfunc.load_model``
        or :func:`load_deepsets_model`.

    Raises:
        ValueError: with no active run, or ``args`` that do not rebuild the weights.
    """
    if mlflow.active_run() is None:
        raise ValueError("log_deepsets_model needs an active MLflow run (inside `with mlflow.start_run():`)")
    weights = {k: v.detach().cpu() for k, v in (model.state_dict() if isinstance(model, nn.Module) else model).items()}
    rebuild_model(spec, args, weights)
    with tempfile.TemporaryDirectory(prefix="deepsets-model-") as tmp:
        paths = {k: Path(tmp) / f for k, f in FILES.items()}
        torch.save(weights, paths[WEIGHTS])
        spec.save(paths[SPEC])
        paths[MODEL_CONFIG].write_text(json.dumps(args.to_dict(), indent=1, sort_keys=True), encoding="utf-8")
        code = Path(tmp) / "deepsets_pyfunc.py"
        code.write_text(MODEL_CODE, encoding="utf-8")
        with warnings.catch_warnings():
            # MLflow urges an input example whenever none is given; ours is optional by design
            # (no input schema: spec.transform checks the columns).
            warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(code),
                artifacts={k: str(p) for k, p in paths.items()},
                signature=ModelSignature(params=PARAMS),
                input_example=input_example,
                pip_requirements=_requirements(),
                step=step,
            )
    return info.model_uri


def load_deepsets_model(uri: str) -> Tuple[nn.Module, FeatureSpec, ModelArgs]:
    """Download a model logged by :func:`log_deepsets_model` and rebuild the torch model
    directly (for batch jobs that run the model themselves).

    Args:
        uri: any MLflow model URI (``models:/<id>``, ``runs:/<run>/<name>``, a local path).

    Returns:
        ``(model, spec, args)``: the model on the CPU in eval mode.

    Raises:
        ValueError: when the URI does not hold a deepsets model.
    """
    with tempfile.TemporaryDirectory(prefix="deepsets-load-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        flavor = Model.load(str(local)).flavors.get("python_function", {})
        artifacts = flavor.get("artifacts", {})
        if set(FILES) - set(artifacts):
            raise ValueError(f"{uri} is not a deepsets model: artifacts {sorted(artifacts)}, expected {sorted(FILES)}")
        return load_model_files({k: local / artifacts[k]["path"] for k in FILES})
