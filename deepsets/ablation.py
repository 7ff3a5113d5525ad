"""Per-modality contributions from cached modality vectors: subsets, Shapley weights, metrics.

Modalities are encoded independently, so a model's per-modality vectors ``(N, M, D)`` are
computed once; masking a modality is then only a change of the presence mask given to the
fusion head (``model.fuse``). Every evaluation below reruns the head alone.

    cached = collect_outputs(model, batches, ("vectors", "present"))   # deepsets.inference
    vectors, present = cached["vectors"], cached["present"]  # (N, M, D), (N, M)
    masks = subset_masks(M)                                   # (2^M, M): subset s holds m iff bit m of s
    scores = subset_scores(model, vectors, present, masks)    # (2^M, N, K) logits
    values = torch.stack([auc(scores[s, :, 0], labels) for s in range(len(masks))])   # v(S)
    phi = shapley_matrix(M) @ values                          # (M,), sum(phi) = v(all) - v(empty)

For many modalities (2^M subsets too many), Shapley values are estimated from random orders
(permutation sampling, antithetic pairs) with a standard error:

    orders, masks = permutation_prefixes(M, permutations=64, seed=0)   # (P, M), (P, M+1, M)
    values = ...metric of each prefix subset...                         # (P, M+1)
    phi, se = permutation_shapley(values, orders)                      # (M,), (M,)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MAX_MODALITIES = 16  # 2^16 subsets; exact Shapley is practical to about M = 12 here


def subset_masks(num_modalities: int) -> Tensor:
    """All ``2^M`` subsets as a ``(2^M, M)`` bool tensor: row ``s`` holds modality ``m`` iff bit
    ``m`` of ``s`` is set (row 0 is the empty set, the last row all modalities).

    Raises:
        ValueError: for M < 1 or M > MAX_MODALITIES.
    """
    if not 1 <= num_modalities <= MAX_MODALITIES:
        raise ValueError(f"exact subsets need 1 <= M <= {MAX_MODALITIES} modalities, got {num_modalities}")
    s = torch.arange(2**num_modalities).unsqueeze(1)  # (S, 1)
    return (s >> torch.arange(num_modalities)) & 1 == 1  # (S, M)


def shapley_matrix(num_modalities: int) -> Tensor:
    """``(M, 2^M)`` float64 weights ``W`` with ``phi = W @ v`` the exact Shapley values of a
    value function ``v`` given on :func:`subset_masks` order.

    ``phi_m = sum_{S not containing m} |S|! (M - |S| - 1)! / M! * (v(S + m) - v(S))``: subset
    ``s`` containing ``m`` gets ``+w(|s| - 1)``, one not containing it ``-w(|s|)``.
    """
    masks = subset_masks(num_modalities)  # (S, M)
    size = masks.sum(dim=1)  # (S,)
    m = num_modalities
    weight = torch.tensor(
        [math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)], dtype=torch.float64
    )
    plus = weight[(size - 1).clamp(min=0)]  # (S,) for subsets that contain m
    minus = weight[size.clamp(max=m - 1)]  # (S,) for subsets that do not
    return torch.where(masks.T, plus, -minus)  # (M, S)


@torch.inference_mode()
def subset_scores(
    model, vectors: Tensor, present: Tensor, masks: Tensor, batch_rows: int = 2048, row_block: int = 16384
) -> Tensor:
    """The model's logits with only each subset's modalities kept: ``(S, N, K)``.

    A row's score under subset ``S`` depends only on ``S & present_row``, so each row is fused
    once per distinct such set, not once per subset: a row with ``k`` of ``M`` modalities needs
    at most ``2^k`` fusions for all ``2^M`` subsets (``(1 + p)^M`` on average when each modality
    is present with probability ``p``: ~50 instead of 128 at M = 7, p = 0.75). The fusions are
    batched by the number of modalities kept and given compactly (``model.compact_fuser``), so
    a transformer head attends over the kept vectors only, and does once per row the first
    layer's work that no subset changes. Models without ``compact_fuser`` fall back to fusing
    every subset over all M slots (:func:`subset_scores_dense`).

    Args:
        model: a set-fusion model (``compact_fuser(vectors)``, else ``fuse(vectors, present)``).
        vectors: (N, M, D) cached modality vectors.
        present: (N, M) presence of each row.
        masks: (S, M) subsets to keep.
        batch_rows: fusions per call (2,048: small enough for a call's activations to stay in cache,
            1.35x faster than 8,192 on the transformer head here, `benchmarks/RESULTS.md`).
        row_block: rows whose per-row work (``compact_fuser``) is held at once: that state is
            ~11 KB a row for a transformer head at D = 64, M = 7, so memory stays bounded.
    """
    if not hasattr(model, "compact_fuser"):
        return subset_scores_dense(model, vectors, present, masks, batch_rows)
    if vectors.shape[0] > row_block:
        blocks = [
            subset_scores(
                model,
                vectors[start : start + row_block],
                present[start : start + row_block],
                masks,
                batch_rows,
                row_block,
            )
            for start in range(0, vectors.shape[0], row_block)
        ]
        return torch.cat(blocks, dim=1)  # (S, N, K)
    fuse = model.compact_fuser(vectors)
    n, m, d = vectors.shape
    bits = 1 << torch.arange(m)  # (M,)
    row_code = (present.long() * bits).sum(dim=1)  # (N,)
    mask_code = (masks.long() * bits).sum(dim=1)  # (S,)
    kept = mask_code.unsqueeze(1) & row_code.unsqueeze(0)  # (S, N): the modalities each row keeps under each subset
    # one fusion per distinct (row, kept set): key = row * 2^M + kept
    keys, where = torch.unique(torch.arange(n).unsqueeze(0) * (1 << m) + kept, return_inverse=True)  # (E,), (S, N)
    rows, codes = keys >> m, keys & ((1 << m) - 1)  # (E,), (E,)
    sizes = ((codes.unsqueeze(1) & bits) != 0).sum(dim=1)  # (E,)
    logits = None
    for size in sizes.unique().tolist():
        chosen = (sizes == size).nonzero().squeeze(1)  # (E_j,)
        for start in range(0, chosen.numel(), batch_rows):
            part = chosen[start : start + batch_rows]  # (c,)
            slots = (
                ((codes[part].unsqueeze(1) & bits) != 0).nonzero()[:, 1].view(part.numel(), size)
            )  # (c, j) ascending slots
            out = fuse(rows[part], slots).float()  # (c, K)
            if logits is None:
                logits = out.new_empty(keys.numel(), out.shape[1])  # (E, K)
            logits[part] = out
    return logits[where]  # (S, N, K)


@torch.inference_mode()
def subset_scores_dense(model, vectors: Tensor, present: Tensor, masks: Tensor, batch_rows: int = 4096) -> Tensor:
    """:func:`subset_scores` by fusing every row under every subset over all M slots (for
    models without ``fuse_compact``): ``(S, N, K)``.

    Several subsets are fused in one call (up to ``batch_rows`` (row, subset) pairs), so a
    cheap head is not dominated by per-call overhead.
    """
    n, m, d = vectors.shape
    rows = min(n, batch_rows)
    per_call = max(1, batch_rows // rows)  # subsets per call
    out = []
    for start in range(0, n, rows):
        v, p = vectors[start : start + rows], present[start : start + rows]  # (b, M, D), (b, M)
        b = v.shape[0]
        parts = []
        for first in range(0, masks.shape[0], per_call):
            keep = masks[first : first + per_call]  # (k, M)
            k = keep.shape[0]
            stacked = v.unsqueeze(0).expand(k, b, m, d).reshape(k * b, m, d)  # (k*b, M, D)
            kept = (p.unsqueeze(0) & keep.unsqueeze(1)).reshape(k * b, m)  # (k*b, M)
            parts.append(model.fuse(stacked, kept).logits.float().view(k, b, -1))  # (k, b, K)
        out.append(torch.cat(parts))  # (S, b, K)
    return torch.cat(out, dim=1)  # (S, N, K)


def permutation_prefixes(num_modalities: int, permutations: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random modality orders in antithetic pairs (an order, then its reverse) and their prefix sets.

    Args:
        num_modalities: M.
        permutations: P, rounded up to an even number.
        seed: seeds the orders.

    Returns:
        ``(orders, masks)``: ``(P, M)`` int64 orders and ``(P, M+1, M)`` bool prefixes, prefix
        ``i`` of order ``p`` holding its first ``i`` modalities (0: none, M: all).

    Raises:
        ValueError: for fewer than 2 permutations.
    """
    if permutations < 2:
        raise ValueError(f"sampled Shapley needs at least 2 permutations, got {permutations}")
    generator = torch.Generator().manual_seed(seed)
    half = torch.stack(
        [torch.randperm(num_modalities, generator=generator) for _ in range((permutations + 1) // 2)]
    )  # (P/2, M)
    orders = torch.stack([half, half.flip(1)], dim=1).reshape(-1, num_modalities)  # (P, M): pairs adjacent
    position = orders.argsort(dim=1)  # (P, M): where each modality comes in its order
    masks = position.unsqueeze(1) < torch.arange(num_modalities + 1).view(1, -1, 1)  # (P, M+1, M)
    return orders, masks


def permutation_shapley(prefix_values: Tensor, orders: Tensor) -> tuple[Tensor, Tensor]:
    """Shapley values estimated from the values of each order's prefix sets, with standard errors.

    Each order gives every modality one marginal contribution (the value with it added to the
    modalities before it, minus without). The estimate is their mean; its standard error comes
    from the antithetic pair means (independent draws). Efficiency holds exactly for any sample:
    the estimates sum to ``v(all) - v(none)``.

    Args:
        prefix_values: (..., P, M+1) the value of each prefix of each order.
        orders: (P, M) from :func:`permutation_prefixes` (pairs adjacent).

    Returns:
        ``(phi, se)``: (..., M) each.
    """
    steps = prefix_values[..., 1:] - prefix_values[..., :-1]  # (..., P, M): step i adds orders[p, i]
    marginal = torch.gather(steps, -1, orders.argsort(dim=1).expand_as(steps))  # (..., P, M) in modality order
    pairs = marginal.unflatten(-2, (-1, 2)).mean(dim=-2)  # (..., P/2, M)
    se = (
        pairs.std(dim=-2, unbiased=True) / math.sqrt(pairs.shape[-2])
        if pairs.shape[-2] > 1
        else torch.full_like(pairs[..., 0, :], float("nan"))
    )
    return marginal.mean(dim=-2), se


def subset_index(masks: Tensor) -> Tensor:
    """Row of each ``(S, M)`` subset in :func:`subset_masks` order: ``(S,)`` int64."""
    return (masks.long() << torch.arange(masks.shape[1])).sum(dim=1)


def auc(scores: Tensor, labels: Tensor) -> Tensor:
    """ROC AUC of each row of ``scores`` against the matching row of ``labels``, ties counted
    half (so constant scores give exactly 0.5).

    Args:
        scores: (..., N) float.
        labels: (..., N) 0/1 (broadcast against scores).

    Returns:
        (...) float64; NaN where a row has only one class.
    """
    scores = scores.double()
    labels = labels.expand_as(scores).double()
    ordered = scores.sort(dim=-1).values  # (..., N)
    lo = torch.searchsorted(ordered, scores.contiguous(), side="left")  # (..., N)
    hi = torch.searchsorted(ordered, scores.contiguous(), side="right")  # (..., N)
    midrank = (lo + hi + 1).double() / 2  # (..., N) 1-based average rank of ties
    positives = labels.sum(dim=-1)  # (...)
    negatives = labels.shape[-1] - positives  # (...)
    rank_sum = (midrank * labels).sum(dim=-1)  # (...)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def permuted_vectors(vectors: Tensor, present: Tensor, modality: int, generator: torch.Generator) -> Tensor:
    """``vectors`` with modality ``modality`` shuffled among the rows where it is present
    (presence is kept: a row without it still lacks it)."""
    rows = present[:, modality].nonzero().squeeze(1)  # (P,)
    shuffled = vectors.clone()
    shuffled[rows, modality] = vectors[rows[torch.randperm(rows.numel(), generator=generator)], modality]
    return shuffled


def max_pool_wins(winners: Tensor, num_modalities: int) -> Tensor:
    """Share of (row, dimension) cells each modality wins in max-pool fusion: ``(M,)``, summing
    to 1 over the rows with something present (winner -1 = empty row, not counted)."""
    valid = winners[winners >= 0]
    counts = torch.bincount(valid.reshape(-1), minlength=num_modalities).double()  # (M,)
    return counts / counts.sum().clamp(min=1)


def bootstrap_indices(num_rows: int, samples: int, seed: int) -> Tensor:
    """``(samples, N)`` row indices drawn with replacement."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(num_rows, (samples, num_rows), generator=generator)


def percentile_interval(values: Tensor, level: float = 0.95) -> tuple[Tensor, Tensor]:
    """Percentile bootstrap interval over dim 0 of ``values``: ``(low, high)``."""
    alpha = (1 - level) / 2
    clean = values.double()
    return torch.nanquantile(clean, alpha, dim=0), torch.nanquantile(clean, 1 - alpha, dim=0)


def spearman(a, b) -> float:
    """Spearman rank correlation of two equal-length sequences (no ties expected)."""
    ra = torch.tensor(a, dtype=torch.float64).argsort().argsort().double()
    rb = torch.tensor(b, dtype=torch.float64).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))
