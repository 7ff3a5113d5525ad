"""Plain-text renderings shared by the CLI and the demo."""

from __future__ import annotations


def format_stats(stats: dict) -> str:
    """A fixed-width table: modality, presence, length p50/p99, truncated rows, the elements
    truncation dropped, OOV rate. The length columns only where the stats have them (``fit``
    computes them; ``read`` counts while streaming and keeps no lengths)."""
    lengths = any("length_p50" in s for s in stats.values())
    length_head = f"{'len p50':>9}{'len p99':>9}" if lengths else ""
    lines = [f"{'modality':<14}{'presence':>9}{length_head}{'truncated':>11}{'dropped':>9}{'oov':>8}"]
    for name, s in sorted(stats.items()):
        length_cells = f"{_num(s.get('length_p50')):>9}{_num(s.get('length_p99')):>9}" if lengths else ""
        lines.append(
            f"{name:<14}{s.get('presence_rate', 0):>9.3f}{length_cells}"
            f"{int(s.get('truncated_rows', 0)):>11}{int(s.get('dropped_elements', 0)):>9}{s.get('oov_rate', 0.0):>8.3f}"
        )
    for name, s in sorted(stats.items()):
        if s.get("encodings"):
            lines.append(f"{name} encodings: " + ", ".join(f"{c} {e}" for c, e in s["encodings"].items()))
    return "\n".join(lines)


def describe_batch(batch) -> str:
    """Shapes of the first batch, one modality a line."""
    lines = [f"first batch: {batch.num_rows} rows"]
    for name in batch.names:
        m = batch[name]
        shape = "x".join(str(d) for d in m.values.shape)
        kind = f"offsets {tuple(m.offsets.shape)}" if m.offsets is not None else "fixed"
        lines.append(
            f"  {name:<12} values {shape:<12} {m.values.dtype}  {kind}  present {int(m.present.sum())}/{m.num_rows}"
        )
    return "\n".join(lines)


def _num(v) -> str:
    return "-" if v is None else f"{float(v):g}"


def format_train_summary(summary: dict) -> str:
    """Final metrics, where the model and checkpoint are, and how to look at the run."""
    metrics = summary.get("metrics", {})
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if k.startswith(("valid_", "train_loss")))
    chosen = summary.get("selected") or {}
    if chosen.get("metric", "last") == "last":
        kept = f"the last epoch ({chosen.get('epoch', summary['epochs_done'])})"
    else:
        kept = f"epoch {chosen['epoch']} of {summary['epochs_done']}, best {chosen['metric']}"
        kept += " (stopped early)" if chosen.get("stopped_early") else ""
    lines = [
        f"run {summary['run_name']}: {summary['epochs_done']} epochs in {summary['seconds']} s"
        if summary.get("epochs_this_run", 1)
        else f"run {summary['run_name']}: nothing left to train, its {summary['epochs_done']} epochs were done before this --resume "
        + (
            "(it had stopped early: training.patience); "
            if chosen.get("stopped_early")
            else "(raise training.epochs to train further); "
        )
        + "its model and metrics:",
        f"kept:       {kept}; {shown}",
        f"model:      {summary['model_uri']}",
        f"checkpoint: {summary['checkpoint']}",
        f"MLflow run: {summary['run_id']} in {summary['tracking_uri']}",
        f"look at it: mlflow ui --backend-store-uri {summary['tracking_uri']}   (then open http://127.0.0.1:5000)",
    ]
    dropped = int(metrics.get("train_rows_dropped", 0))
    if dropped:  # fewer than one global batch, but on small data a visible share
        lines.insert(
            2,
            f"dropped:    {dropped} training rows per epoch, so every worker gets the same whole number of batches "
            "(a smaller training.batch_size drops fewer)",
        )
    return "\n".join(lines)


def format_embed_summary(summary: dict) -> str:
    """Rows in/out/rejected, why rows were rejected, duplicate ids, and where the files are."""
    lines = [
        f"{summary['rows_in']} rows in: {summary['rows_out']} written, {summary['rows_rejected']} rejected "
        f"({summary['rows_this_run']} embedded in this run, {summary['seconds']} s, {summary['rows_per_s']:.0f} rows/s"
        f"{', on ' + str(summary['ray_nodes']) + ' Ray nodes' if summary.get('ray_nodes', 0) > 1 else ''})",
        f"embeddings: {summary['output']}  ({summary['fragments']} files)",
    ]
    if summary["rows_rejected"]:
        lines.append(f"rejects:    {summary['rejects']}")
        for r in summary["rejected_by_reason"][:10]:
            lines.append(f"  {r['rows']:>8} rows  column '{r['column']}': {r['reason']}")
    dupes = summary.get("duplicate_ids")
    if dupes and dupes["ids"]:
        shown = ", ".join(f"{k} ({v}x)" for k, v in dupes["examples"].items())
        lines.append(
            f"warning: {dupes['ids']} ids occur more than once ({dupes['extra_rows']} extra rows), e.g. {shown}"
        )
    return "\n".join(lines)


def format_retrieve_summary(summary: dict) -> str:
    """Queries in/answered/rejected, the index, its measured recall, exclusions, the output."""
    recall_key = f"recall_at_{summary['k']}_vs_exact"
    lines = [
        f"{summary['queries_in']} queries: {summary['queries_out']} answered with up to {summary['k']} items, "
        f"{summary['queries_rejected']} rejected ({summary['seconds']} s, {summary['queries_per_s']:.0f} queries/s)",
        f"index: {summary['index']} over {summary['items_indexed']} items ({summary['items_rejected']} items without a usable vector)",
    ]
    if summary.get(recall_key) is not None:
        settings = ", ".join(f"{k} {v}" for k, v in summary["index_settings"].items())
        lines.append(
            f"recall@{summary['k']} against exact search: {summary[recall_key]} (on {summary['recall_queries']} queries"
            + (f"; tuned to {settings})" if settings else ")")
        )
    elif summary.get("recall_not_measured"):
        lines.append(f"recall@{summary['k']} against exact search: not measured ({summary['recall_not_measured']})")
    if summary["queries_short"]:
        lines.append(
            f"{summary['queries_short']} queries got fewer than {summary['k']} items (too few items left after exclusions)"
        )
    for reason, rows in summary["rejected_by_reason"].items():
        lines.append(f"  {rows:>8} queries rejected: {reason}")
    if summary["exclusions"]:
        e = summary["exclusions"]
        lines.append(
            f"excluded: {e['pairs']} pairs over {e['queries']} queries ({e['unknown_items']} pairs name items not in the index)"
        )
    lines.append(f"results: {summary['output']}")
    return "\n".join(lines)


def format_embeddings_head(table) -> str:
    """The first rows of an embedding output file: id columns and the first 4 dimensions."""
    keys = [
        c
        for c in table.column_names
        if c not in ("source_file", "embedding") and not c.startswith(("vector_", "present_"))
    ]
    width = table.schema.field("embedding").type.list_size
    lines = ["  ".join(f"{k:>12}" for k in keys) + f"  embedding ({width} dims, first 4)"]
    for row in table.to_pylist():
        shown = ", ".join(f"{v:+.3f}" for v in row["embedding"][:4])
        lines.append("  ".join(f"{row[k]!s:>12}" for k in keys) + f"  [{shown}, ...]")
    return "\n".join(lines)
