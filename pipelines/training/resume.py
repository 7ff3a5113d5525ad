"""Resuming a run only into the same world: the same model, data and training settings.

At its first start a run records what it trains on (``run.json`` beside its checkpoints): a
fingerprint of every input file (path, size, modification time, rows) and its ``[training]``
settings. ``--resume`` compares the config it is given with that record and the latest
complete checkpoint, and refuses a change by name: new vocabularies would not match the
spec's, and a restored optimizer keeps its own learning rate. More ``epochs`` are the one
change it accepts, and it says what that does to the schedule.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional

from deepsets.features import storage
from deepsets.features.files import open_parquet, resolve_inputs
from deepsets.pipelines.config import RunConfig
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.models.checkpoint import EPOCH_FILE, FILES

RECORD = "run.json"
_TRAINED_BY = {"in_process": "in process", "ray_train": "on Ray Train"}
_TRAINER_HINT = {"in_process": " (one worker, no --ray-address)", "ray_train": ""}
SETTINGS_ALLOWED_TO_CHANGE = ("epochs",)


def run_directory(cfg: RunConfig, run_name: str) -> str:
    """Where Ray Train keeps the checkpoints of the run named ``run_name``: ``tracking.storage_path/run_name``."""
    return storage.join(cfg.tracking.storage_path, run_name)


def checkpoint_dirs(run_dir: str) -> List[str]:
    """The complete checkpoint directories of a run, local or on object storage (a crash can
    leave the last half-written)."""
    found = [
        storage.join(run_dir, name)
        for name, folder in storage.children(run_dir)
        if folder and name.startswith("checkpoint_")
    ]
    return [path for path in found if all(storage.exists(storage.join(path, name)) for name in FILES)]


def epochs_done(run_dir: str) -> int:
    """Epochs the run's latest complete checkpoint has trained (0 without one): from its small
    ``epoch.json``, or, in checkpoints written before that file, from ``state.pt``."""
    found = checkpoint_dirs(run_dir)
    return checkpoint_epoch(max(found, key=storage.name_of)) + 1 if found else 0


def checkpoint_epoch(checkpoint: str) -> int:
    """The epoch (counted from 0) a complete checkpoint holds: from its small ``epoch.json``, or,
    in checkpoints written before that file, from ``state.pt``."""
    import io

    import torch

    marker = storage.join(checkpoint, EPOCH_FILE)
    if storage.exists(marker):
        return int(json.loads(storage.read_bytes(marker))["epoch"])
    path = storage.join(checkpoint, "state.pt")
    # a local file is memory-mapped: reading the epoch does not read the weights and optimizer state
    source = io.BytesIO(storage.read_bytes(path)) if storage.is_uri(path) else storage.local_path(path)
    state = torch.load(source, map_location="cpu", weights_only=True, mmap=not storage.is_uri(path))
    return int(state["epoch"])


def file_fingerprint(paths) -> List[dict]:
    """Path, bytes, modification time (ns) and row count of every file of ``paths``."""
    found = []
    for path in resolve_inputs(list(paths)):
        size, mtime_ns = storage.size_and_mtime_ns(path)
        found.append(
            {
                "path": storage.absolute(path),
                "bytes": size,
                "mtime_ns": mtime_ns,
                "rows": open_parquet(path).metadata.num_rows,
            }
        )
    return found


def run_record(cfg: RunConfig, trainer: str = "ray_train") -> dict:
    """What a run trains on: its data files' fingerprints, its training settings and its trainer
    (``in_process`` or ``ray_train``: each keeps its own account of the checkpoints)."""
    data = {"train": file_fingerprint(cfg.data.train)}
    for name in ("valid", "items"):
        paths = getattr(cfg.data, name)
        if paths:
            data[name] = file_fingerprint(paths)
    return {"data": data, "training": cfg.training.model_dump(mode="json"), "trainer": trainer}


def save_run_record(cfg: RunConfig, run_dir: str, trainer: str = "ray_train") -> None:
    storage.make_dirs(run_dir)
    storage.write_text(storage.join(run_dir, RECORD), json.dumps(run_record(cfg, trainer), indent=1, sort_keys=True))


def _data_changes(before: Dict[str, list], now: Dict[str, list]) -> List[str]:
    changes = []
    for split in sorted(set(before) | set(now)):
        old = {f["path"]: f for f in before.get(split, [])}
        new = {f["path"]: f for f in now.get(split, [])}
        for path in sorted(set(old) | set(new)):
            if path not in new:
                changes.append(f"data.{split}: {path} is gone")
            elif path not in old:
                changes.append(f"data.{split}: {path} is new")
            elif old[path] != new[path]:
                what = [k for k in ("rows", "bytes", "mtime_ns") if old[path][k] != new[path][k]]
                changes.append(f"data.{split}: {path} changed ({', '.join(what)})")
    return changes


def check_resumable(cfg: RunConfig, run_dir: str, trainer: str = "ray_train") -> Optional[str]:
    """The config must describe the run its latest checkpoint belongs to, trained by the same
    ``trainer`` (Ray Train resumes from its own record of the checkpoints, which an in-process
    run does not write).

    Returns:
        A notice to print when ``training.epochs`` changed (the one change allowed), else None.

    Raises:
        JobError: naming every field or file that differs.
    """
    from deepsets.model_args import ModelArgs

    latest = max(checkpoint_dirs(run_dir), key=storage.name_of)
    saved = ModelArgs.from_dict(json.loads(storage.read_text(storage.join(latest, "model_config.json"))))
    changed = saved.differences(cfg.model_args())
    if changed:
        diffs = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(changed.items()))
        raise JobError(
            f"cannot resume run '{storage.name_of(run_dir)}' with a different model than its checkpoint ({diffs})"
        )
    record_path = storage.join(run_dir, RECORD)
    if not storage.exists(record_path):  # a run started before runs were recorded: nothing to compare
        return None
    record = json.loads(storage.read_text(record_path))
    started_with = record.get("trainer", "ray_train")  # runs recorded before in-process training existed
    if started_with != trainer:
        raise JobError(
            f"cannot resume run '{storage.name_of(run_dir)}' with trainer {trainer}: it was trained {_TRAINED_BY[started_with]}; "
            f'resume it with scaling.trainer = "{started_with}"{_TRAINER_HINT[started_with]}, or start a new run'
        )
    problems = _data_changes(record["data"], run_record(cfg)["data"])
    now = cfg.training.model_dump(mode="json")
    settings = {k: (record["training"].get(k), v) for k, v in now.items() if record["training"].get(k) != v}
    problems += [
        f"training.{k}: {a} -> {b}" for k, (a, b) in sorted(settings.items()) if k not in SETTINGS_ALLOWED_TO_CHANGE
    ]
    if problems:
        raise JobError(
            f"cannot resume run '{storage.name_of(run_dir)}' in a changed world ({'; '.join(problems)}): the spec, the "
            "optimizer state and the schedule belong to the run as it started; start a new run (another tracking.run_name)"
        )
    if "epochs" in settings:
        old, new = settings["epochs"]
        record["training"]["epochs"] = new
        storage.write_text(record_path, json.dumps(record, indent=1, sort_keys=True))
        return (
            f"resuming with training.epochs {old} -> {new}: the {cfg.training.schedule} schedule now spans {new} epochs "
            f"from where the run stopped (the learning rate follows the longer schedule from here on)"
        )
    return None
