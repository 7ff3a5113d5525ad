"""``deepsets embed``: the offline batch embedding job on Ray Data, Parquet in, Parquet out.

Recipe:
    plan     -- load the model (its spec travels with it), check every input file's columns
                and types, cut the inputs into fragments (``deepsets.features.fragments``) and write
                ``_manifest.json``;
    run      -- Ray Data: the fragments that have no output yet, in runs (one fragment, or
                a few consecutive pieces of a split row group read in one pass) ->
                ``map_batches`` with :class:`deepsets.pipelines.embedding.worker.FragmentEmbedder` on an
                actor pool (model loaded once per actor); each actor reads its run, embeds it
                and commits each fragment's finished file into ``embeddings/`` (bad rows into
                ``rejects/``);
    account  -- count every output from the files themselves: ``rows_in == rows_out +
                rows_rejected`` or the job fails; report duplicate ids; write ``_SUCCESS.json``.

The output folder and its accounting: :mod:`deepsets.pipelines.embedding.output`.
"""

from __future__ import annotations

import glob as local_glob
import hashlib
import json
import time
from pathlib import Path
from typing import List

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from deepsets.features import storage
from deepsets.features.errors import DataError
from deepsets.features.files import resolve_inputs
from deepsets.features.fragments import Fragment, plan_fragments, plan_runs
from deepsets.features.ids import row_id_type
from deepsets.pipelines.embedding.config import (  # the job's config; callers import it from here too
    EmbedConfig,
    parse_embed_config,  # noqa: F401
)
from deepsets.pipelines.embedding.layout import EMBEDDINGS, REJECTS, RESERVED, SUCCESS
from deepsets.pipelines.embedding.output import (
    MANIFEST_FORMAT,
    OutputLock,
    account,
    parts_to_do,
    prepare_output,
    write_json,
)
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.models.source import ModelSource, load_model_source


def check_inputs(files: List[str], source: ModelSource, out: str) -> List[dict]:
    """Every input is Parquet, holds the spec's columns with the trained id types and row ids
    of one kind, and lies outside the output directory; returns ``{path, rows, bytes,
    mtime_ns}`` per file.

    Raises:
        DataError: naming the file (and column, and rows) that is wrong.
        JobError: for an input inside the output directory, or an id column named like an output column.
    """
    spec = source.input_spec
    id_column = spec.schema.id_column
    if id_column in RESERVED:
        raise JobError(f"the id column may not be named {id_column!r} (an output column of the job has that name)")
    described, id_kinds = [], {}
    for path in files:
        if _inside(path, out):
            raise JobError(
                f"{path}: input file lies inside the output directory; choose an --output outside the inputs"
            )
        parquet = spec.open_checked(path, [id_column] if id_column else [])
        if id_column:
            id_kinds.setdefault(row_id_kind(path, parquet, id_column), path)
            if len(id_kinds) > 1:
                (a, first), (b, second) = id_kinds.items()
                raise DataError(
                    f"{a} row ids in {first} but {b} row ids here: one kind of id per job",
                    file=second,
                    column=id_column,
                )
        size, mtime_ns = storage.size_and_mtime_ns(path)
        described.append({"path": path, "rows": parquet.metadata.num_rows, "bytes": size, "mtime_ns": mtime_ns})
    return described


def check_output_apart(inputs: List[str], out: str) -> None:
    """Refuse an output folder that is, lies inside or contains an input folder (or lies where
    an input glob would find the job's own parts): a later ``--resume`` or ``--overwrite``
    would list the job's parts as inputs. Input files are checked in :func:`check_inputs`.

    Args:
        inputs: the input paths as given (files, folders, globs).
        out: the output folder, absolute (a URI as given).

    Raises:
        JobError: naming the output folder and the input folder or glob it overlaps.
    """
    apart = "choose an --output outside the input folders (the job's own parts would be read as inputs)"
    for given in inputs:
        text = storage.absolute(given).rstrip("/")
        if local_glob.has_magic(text):
            parts = text.split("/")
            fixed = next(i for i, part in enumerate(parts) if local_glob.has_magic(part))
            folder, pattern = "/".join(parts[:fixed]), "/".join(parts[fixed:])
            if _within(folder, out):
                raise JobError(f"--output {out} contains the input folder {folder} (of {given}): {apart}")
            if _within(out, folder) and any(
                storage.matches(storage.join(out[len(folder) + 1 :], sub, "part-00000-00000.parquet"), pattern)
                for sub in (EMBEDDINGS, REJECTS)
            ):
                raise JobError(
                    f"--output {out} lies where the input glob {given} would find the job's own parts: {apart}"
                )
        elif storage.is_dir(text):
            if text == out:
                raise JobError(f"--output {out} is the input folder {given}: {apart}")
            if _within(out, text):
                raise JobError(f"--output {out} lies inside the input folder {given}: {apart}")
            if _within(text, out):
                raise JobError(f"--output {out} contains the input folder {given}: {apart}")


def check_output_folder(out: str) -> None:
    """``--output`` names a folder, or a place where one can be made: not a file, nor a path
    through one. On object storage nothing is in the way (writing below a prefix makes it).

    Args:
        out: the output folder, absolute (a URI as given).

    Raises:
        JobError: naming the file in the way.
    """
    if storage.is_uri(out):
        return
    for place in (Path(out), *Path(out).parents):
        if place.exists():
            if not place.is_dir():
                where = "" if str(place) == out else f", in the way of --output {out}"
                raise JobError(
                    f"{place} is a file{where}: --output names a folder (a new one, or one an embed job wrote); "
                    "choose another --output"
                )
            return


def _within(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies inside it (both absolute, or URIs)."""
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def _inside(path: str, folder: str) -> bool:
    if storage.is_uri(path) or storage.is_uri(folder):
        return path.startswith(folder.rstrip("/") + "/")
    return Path(path).absolute().is_relative_to(Path(folder).absolute())


def row_id_kind(path: str, parquet, column: str) -> str:
    """'int' (written as int64) or 'string': the kind of the file's row ids.

    Raises:
        DataError: for ids of another type (floats: what pandas writes for integers with
            nulls), or unsigned ids beyond int64 (naming the rows).
    """
    found = parquet.schema_arrow.field(column).type
    if row_id_type(path, found, column) == "string":
        return "string"
    base = found.value_type if pa.types.is_dictionary(found) else found
    if base == pa.uint64():
        values = parquet.read(columns=[column]).column(column)
        if pa.types.is_dictionary(values.type):
            values = values.cast(base)
        too_big = pc.greater(values, pa.scalar(2**63 - 1, pa.uint64())).to_numpy(zero_copy_only=False)
        if too_big.any():
            raise DataError(
                "row ids beyond 2^63 - 1 cannot be written as int64 ids",
                file=path,
                column=column,
                rows=np.nonzero(too_big)[0],
            )
    return "int"


def _run_fragments(
    todo: List[Fragment], source: ModelSource, cfg: EmbedConfig, out: str, progress: bool
) -> tuple[int, float, int]:
    """Embed ``todo`` on a Ray Data actor pool.

    Returns:
        ``(rows done, processing seconds, Ray nodes used)``: the seconds from the first
        fragment's start to the last one's end as the workers saw it (actor start-up and model
        loading excluded).

    Raises:
        DataError: the first error a worker reported (completed fragments stay written).
    """
    import ray
    import ray.data

    from deepsets.pipelines.embedding.worker import FragmentEmbedder
    from deepsets.pipelines.ray_processes import private_ray
    from deepsets.pipelines.ray_runtime import RAY_CORE_NOISE, quiet_ray_data, require_gpus
    from deepsets.pipelines.stderr_filter import dropping_stderr_lines

    # a local Ray started here ends with the job, and any of its processes that outlive it are ended by pid
    with private_ray(cfg.ray_address, int(cfg.workers * cfg.cpus_per_worker) + 1):
        if cfg.gpus_per_worker:
            require_gpus(
                cfg.gpus_per_worker * workers_started(cfg.workers, len(todo)),
                f"--gpus-per-worker {cfg.gpus_per_worker:g} with --workers {cfg.workers}",
            )
        quiet_ray_data()
        # the pieces of a split row group go in a few one-pass runs, not one decode each (deepsets.features.fragments)
        items = [{"run": json.dumps([f.to_dict() for f in run])} for run in plan_runs(todo, cfg.workers)]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            FragmentEmbedder,
            batch_size=1,
            # one run at a time per actor: the first actor up does not queue runs that an idle
            # actor could take (a run is seconds of work; the hand-off is a millisecond)
            compute=embed_actor_pool(workers_started(cfg.workers, len(items))),
            num_cpus=cfg.cpus_per_worker,
            num_gpus=cfg.gpus_per_worker or None,
            fn_constructor_kwargs={
                "payload": [ray.put(source.payload())],
                "out_dir": out,
                "batch_size": cfg.batch_size,
                "with_modalities": cfg.with_modalities,
                "device": "cuda" if cfg.gpus_per_worker > 0 else "cpu",
                "threads": max(1, int(cfg.cpus_per_worker)),
            },
        )
        done, first_start, last_end, nodes = 0, float("inf"), 0.0, set()
        # the actor pool's start makes Ray's C++ core print one harmless error line (see stderr_filter)
        with (
            dropping_stderr_lines(RAY_CORE_NOISE),
            tqdm(
                total=sum(f.rows for f in todo),
                unit="rows",
                unit_scale=True,
                desc="embedding",
                disable=None if progress else True,
            ) as bar,
        ):
            for row in dataset.iter_rows():
                if row["error"]:
                    raise DataError(
                        f"{row['error']} (fragments already written are kept: fix the input and rerun with --resume)"
                    )
                done += int(row["rows_in"])
                first_start, last_end = (
                    min(first_start, float(row["started_at"])),
                    max(last_end, float(row["finished_at"])),
                )
                nodes.add(str(row["node_id"]))
                bar.update(int(row["rows_in"]))
    return done, max(0.0, last_end - first_start), len(nodes)


def embed_actor_pool(size: int):
    """The embed job's fixed pool of ``size`` actors, one run in flight per actor.

    Each run is embedded in the actor's own task thread: Ray Data's default wraps the class in a
    one-thread executor whose worker thread is not a daemon, so the actor's exit waits on it; an
    actor that once hung at teardown was waiting there (its main thread joining that thread after
    Ray's core worker had shut down). With one call at a time the wrapper buys nothing.
    """
    import ray.data

    return ray.data.ActorPoolStrategy(
        size=size,
        max_tasks_in_flight_per_actor=1,
        max_concurrent_calls_per_actor=1,
        enable_true_multi_threading=True,  # no wrapper thread; one call at a time all the same
    )


def run_embed(cfg: EmbedConfig, progress: bool = True) -> dict:
    """Run (or resume) the embedding job; returns the summary ``--json`` prints.

    Raises:
        DataError: for bad inputs or a bad value met while embedding (naming file, column and rows).
        JobError: for a model that cannot be loaded or an output directory in the way.
        ValueError: for options the model cannot serve (a tower, per-modality vectors).
    """
    started = time.perf_counter()
    say = print if progress else (lambda *a: None)
    out = storage.absolute(cfg.output).rstrip("/")
    check_output_folder(out)
    check_output_apart(cfg.inputs, out)
    source = load_model_source(cfg.model).with_tower(cfg.tower)
    model = source.build()  # here, once: settings that do not fit the weights fail before any worker starts
    if cfg.with_modalities:
        if not hasattr(model, "encode"):
            raise ValueError(
                f"--with-modalities needs a set-fusion model; {cfg.model} is a {type(model).__name__} (no per-modality vectors)"
            )
    files = [storage.absolute(f) for f in resolve_inputs(cfg.inputs)]
    inputs = check_inputs(files, source, out)
    manifest = {
        "format": MANIFEST_FORMAT,
        "model_uri": source.uri,
        "model_version": source.version,
        "weights_sha256": source.weights_sha256,
        "spec_sha256": hashlib.sha256(json.dumps(source.spec.to_dict(), sort_keys=True).encode()).hexdigest(),
        "model_args": source.model_args.to_dict(),
        "with_modalities": cfg.with_modalities,
        "tower": cfg.tower,
        "inputs": inputs,
        "fragment_rows": cfg.fragment_rows,
        "fragments": [f.to_dict() for f in plan_fragments(files, cfg.fragment_rows)],
    }
    with OutputLock(out) as lock:
        if lock.took_over:
            say(f"taking over {out}: the embed job that held it (pid {lock.took_over.get('pid')}) is gone")
        fragments = prepare_output(out, manifest, cfg.resume, cfg.overwrite)
        todo, redone = parts_to_do(out, fragments, source.weights_sha256)
        for bad in redone:
            say(f"redoing {bad['part']}: {bad['problem']}")
        say(
            f"embedding {sum(f.rows for f in todo)} of {sum(f.rows for f in fragments)} rows "
            f"({len(todo)} of {len(fragments)} fragments to do) from {len(files)} file(s) with {_workers_shown(cfg.workers, len(todo))} into {out}"
        )
        rows_done, processing, nodes = _run_fragments(todo, source, cfg, out, progress) if todo else (0, 0.0, 0)
        summary = account(out, fragments, source.input_spec.schema.id_column, source.weights_sha256)
        seconds = time.perf_counter() - started
        summary.update(
            {
                "rows_this_run": rows_done,
                "seconds": round(seconds, 2),
                "rows_per_s": round(rows_done / seconds, 1) if seconds else 0.0,
                "processing_seconds": round(processing, 2),
                "parts_redone": redone,
                "ray_nodes": nodes,
                "output": storage.join(out, EMBEDDINGS),
                "rejects": storage.join(out, REJECTS),
                "fragments": len(fragments),
                "model_uri": source.uri,
                "model_version": source.version,
                "resumed": cfg.resume,
                "tower": cfg.tower,
            }
        )
        write_json(storage.join(out, SUCCESS), summary)
    return summary


def workers_started(asked: int, tasks: int) -> int:
    """The embed actors a job starts: one per task (a run of fragments) at most. Runs are never
    fewer than ``min(asked, fragments)`` (``plan_runs``), so counting fragments gives the same."""
    return max(1, min(asked, tasks))


def _workers_shown(asked: int, fragments: int) -> str:
    """The start line's worker count, saying why when it is fewer than ``--workers``."""
    used = workers_started(asked, fragments)
    return (
        f"{used} worker(s)"
        if used == asked
        else f"{used} worker(s) (--workers {asked}; one per fragment at most, see --fragment-rows)"
    )
