"""Finding a trained model for batch jobs: an MLflow model URI or a checkpoint directory (local
or on object storage).

    source = load_model_source("models:/m-0123abcd")   # or runs:/<run>/model, or [s3://.../]ray_results/.../checkpoint_000002
    model = source.build()                              # eval mode, on the CPU
    source.spec                                         # the fitted FeatureSpec that travels with it

The weights travel to Ray workers as bytes (:meth:`ModelSource.payload`), so workers on other
nodes need neither the MLflow store nor the checkpoint directory; a worker rebuilds the model
from them without importing MLflow (:meth:`ModelSource.from_payload`, then :meth:`ModelSource.build`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from deepsets.features import storage
from deepsets.features.spec import FeatureSpec
from deepsets.model_args import ModelArgs
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.models.rebuild import rebuild_model, tower_view
from deepsets.pipelines.redaction import redact_uris


@dataclass
class ModelSource:
    """A trained model's parts and where it came from.

    Attributes:
        uri: what the user passed.
        version: the MLflow model id / registered version / run, or the checkpoint epoch.
        weights: ``torch.save`` bytes of the state_dict.
        weights_sha256: hash of ``weights``: identifies the model exactly.
        spec: the fitted feature spec.
        model_args: the settings that build the model.
        label_columns: the label columns the model was trained on, when known.
        run_id: the MLflow run that logged the model (None for checkpoint directories).
        run_config: the training run config (``RunConfig.as_dict()``), when known.
        tower: for a two-tower model, the side to run ("query" or "item"); see :meth:`with_tower`.
    """

    uri: str
    version: str
    weights: bytes
    spec: FeatureSpec
    model_args: ModelArgs
    label_columns: List[str] = field(default_factory=list)
    run_id: Optional[str] = None
    run_config: Optional[Dict[str, Any]] = None
    tower: Optional[str] = None

    @property
    def weights_sha256(self) -> str:
        return hashlib.sha256(self.weights).hexdigest()

    def build(self, both_towers: bool = False) -> nn.Module:
        """The model (for a two-tower model, its :attr:`tower`, or with ``both_towers`` the
        whole two-tower model) in eval mode on the CPU.

        Raises:
            ValueError: a two-tower model without a tower, a tower for a one-tower model, or
                settings that do not rebuild the weights.
        """
        state = torch.load(io.BytesIO(self.weights), map_location="cpu", weights_only=True)
        model = rebuild_model(self.spec, self.model_args, state)
        return model if both_towers and self.is_two_tower else tower_view(model, self.spec, self.tower)[0]

    @property
    def is_two_tower(self) -> bool:
        return self.model_args.task == "two_tower"

    @property
    def input_spec(self) -> FeatureSpec:
        """The spec inputs are read with: the tower's modalities only, for a two-tower model."""
        if self.is_two_tower and self.tower:
            names = self.model_args.query_modalities if self.tower == "query" else self.model_args.item_modalities
            return self.spec.subset(names)
        return self.spec

    def with_tower(self, tower: Optional[str]) -> "ModelSource":
        """This source set to run ``tower`` ("query" / "item"; None for one-tower models).

        Raises:
            ValueError: for a two-tower model without a tower, a tower of a one-tower model, or
                an unknown tower name.
        """
        if self.is_two_tower and tower not in ("query", "item"):
            names = {side: ", ".join(getattr(self.model_args, f"{side}_modalities")) for side in ("query", "item")}
            raise ValueError(
                f"{self.uri} is a two-tower model: choose --tower query ({names['query']}) or --tower item ({names['item']})"
                + (f", not {tower!r}" if tower else "")
            )
        if not self.is_two_tower and tower:
            raise ValueError(f"--tower {tower}: {self.uri} is not a two-tower model (task {self.model_args.task!r})")
        return dataclasses.replace(self, tower=tower)

    def payload(self) -> Dict[str, Any]:
        """Plain values to rebuild this source in another process (:meth:`from_payload`)."""
        return {
            "uri": self.uri,
            "version": self.version,
            "weights": self.weights,
            "spec": self.spec.to_dict(),
            "model_args": self.model_args.to_dict(),
            "label_columns": self.label_columns,
            "run_id": self.run_id,
            "run_config": self.run_config,
            "tower": self.tower,
        }

    @classmethod
    def from_payload(cls, payload: Dict[str, Any]) -> "ModelSource":
        return cls(
            payload["uri"],
            payload["version"],
            payload["weights"],
            FeatureSpec.from_dict(payload["spec"]),
            ModelArgs.from_dict(payload["model_args"]),
            payload["label_columns"],
            payload["run_id"],
            payload["run_config"],
            payload.get("tower"),
        )


def _to_bytes(state_dict: Dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    return buffer.getvalue()


def _mlflow_details(uri: str) -> tuple[str, Optional[str], Optional[Dict[str, Any]]]:
    """(version text, run id, the run's config.toml as a dict), as far as known."""
    import tomllib

    import mlflow.artifacts
    import mlflow.models

    try:
        info = mlflow.models.get_model_info(uri)
    except Exception as err:  # noqa: BLE001 - the model itself loaded; say what is unknown, and why
        print(
            redact_uris(
                f"warning: the MLflow metadata of {uri} could not be read ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}): its version, run and training config are unknown"
            ),
            file=sys.stderr,
        )
        return "unknown (MLflow metadata unreadable)", None, None
    parts = [
        f"model_id={info.model_id}" if getattr(info, "model_id", None) else "",
        f"registered_version={info.registered_model_version}" if info.registered_model_version else "",
        f"run_id={info.run_id}" if info.run_id else "",
    ]
    config = None
    if info.run_id:
        try:
            config = tomllib.loads(mlflow.artifacts.load_text(f"runs:/{info.run_id}/config.toml"))
        except Exception as err:  # noqa: BLE001 - a model logged outside `deepsets train` has no config
            print(
                f"warning: run {info.run_id} of {uri} has no readable config.toml ({type(err).__name__}): "
                "its training config is unknown (ablate --retrain and the label default need it)",
                file=sys.stderr,
            )
            config = None
    return " ".join(p for p in parts if p), info.run_id, config


def _stored_checkpoint(uri: str) -> bool:
    """Whether ``uri`` names a checkpoint directory on object storage (``s3://.../checkpoint_000002``:
    a prefix holding any of a checkpoint's files and no ``MLmodel``); a half-written one counts,
    so that loading it names the missing file.

    Raises:
        JobError: the store cannot be reached to look.
    """
    from deepsets.pipelines.models.checkpoint import FILES

    if not storage.is_uri(uri):
        return False
    try:
        names = {name for name, folder in storage.children(uri) if not folder}
    except ValueError:  # a scheme pyarrow has no filesystem for (an MLflow artifact URI): MLflow's to load
        return False
    except OSError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise JobError(f"cannot look for a model at {uri}: {first}") from None
    return "MLmodel" not in names and bool(names & set(FILES))


def load_model_source(uri: str) -> ModelSource:
    """Load a model logged by ``log_deepsets_model`` or a training checkpoint directory.

    Args:
        uri: ``runs:/...``, ``models:/...``, any MLflow model URI or local model directory
            (one holding ``MLmodel``), or a checkpoint directory (one holding ``state.pt``),
            local or on object storage (``s3://bucket/.../checkpoint_000002``).

    Raises:
        JobError: when the URI names nothing loadable, with what was expected.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a few small files: no bars
    local = Path(uri)
    if (local.is_dir() and (local / "state.pt").exists()) or _stored_checkpoint(uri):
        from deepsets.pipelines.models.checkpoint import load_checkpoint

        state, spec, config, args = load_checkpoint(uri)
        labels = list((config.get("data") or {}).get("label_columns") or [])
        return ModelSource(
            uri,
            f"checkpoint epoch={state.epoch} step={state.step}",
            _to_bytes(state.model),
            spec,
            args,
            labels,
            None,
            config or None,
        )
    if local.exists() and not (local / "MLmodel").exists():
        raise JobError(
            f"{uri}: neither a deepsets checkpoint directory (state.pt, spec.json, ...) nor an MLflow model directory (MLmodel)"
        )
    if "://" not in uri and ":/" not in uri and not local.exists():
        raise JobError(
            f"model '{uri}' does not exist (expected runs:/<run>/<name>, models:/<id or name/version>, or a checkpoint directory)"
        )
    import mlflow
    from mlflow.exceptions import MlflowException

    from deepsets.pipelines.models.pyfunc import load_deepsets_model

    try:
        model, spec, args = load_deepsets_model(uri)
    except (MlflowException, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        # redacted: the tracking URI, and MLflow's message naming it ("API request to <uri>/api/... failed"), may hold a password
        raise JobError(
            redact_uris(f"cannot load model '{uri}' (tracking URI {mlflow.get_tracking_uri()}): {first}")
        ) from None
    version, run_id, config = _mlflow_details(uri)
    labels = list(((config or {}).get("data") or {}).get("label_columns") or [])
    return ModelSource(uri, version, _to_bytes(model.state_dict()), spec, args, labels, run_id, config)
