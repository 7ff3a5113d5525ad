"""The planted truth of the "recsys-6" reference workload: fixed tables and per-row signals.

`make_tables(seed)` draws every fixed quantity (directions, score tables, weights, the label mixing
matrix) once. `signals(table, tables)` turns a recsys-6 Arrow table into one standardized signal per
modality (mean 0, std 1 over the rows where it is present, exactly 0 where it is missing). The click
logit is ``tables.bias + sum_m WEIGHTS[m] * s_m``, so a modality's planted contribution to the logit
is ``weight x presence rate x std(s_m) = weight x presence rate``.

Every standardization constant is computed analytically from the fixed tables and the sampling
distributions, so it does not depend on which rows are generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MODALITIES = ("image", "title", "history", "frames", "tags", "country", "profile")
# Chosen so that contribution = weight x presence is well separated between modalities:
# history 1.40, image 1.10, title 0.85, tags 0.65, country 0.45, frames 0.30, profile 0.15.
WEIGHTS = {
    "history": 1.647,
    "image": 1.222,
    "title": 0.895,
    "tags": 0.929,
    "country": 0.4545,
    "frames": 0.6,
    "profile": 0.158,
}
PRESENCE = {
    "image": 0.90,
    "title": 0.95,
    "history": 0.85,
    "frames": 0.50,
    "tags": 0.70,
    "country": 0.99,
    "profile": 0.95,
}
BIAS = -1.5  # chosen so that the click rate is about 0.3 with the weights above

IMAGE_DIM, TITLE_DIM, FRAME_DIM = 256, 384, 64
NUM_ITEMS, NUM_TAGS, NUM_COUNTRIES, NUM_PROFILE = 50_000, 1_000, 200, 8
HISTORY_MU, HISTORY_SIGMA, HISTORY_MAX = math.log(20.0), 1.0, 500
ZIPF_ITEMS, ZIPF_COUNTRIES = 1.2, 1.0
FRAMES_MAX, TAGS_MAX = 32, 10
PROFILE_NAN = 0.05
LABEL_NOISE = 0.5
LABEL_RATES = (0.20, 0.25, 0.30, 0.35, 0.40)  # target positive rate of each multilabel target


@dataclass(frozen=True)
class SynthTables:
    """Fixed quantities of one seed; see `make_tables`. Arrays are read-only by convention."""

    seed: int
    u_image: np.ndarray  # (256,) unit direction
    u_title: np.ndarray  # (384,) unit direction
    u_frames: np.ndarray  # (64,) unit direction
    item_cdf: np.ndarray  # (50000,) cumulative Zipf probabilities over item popularity ranks
    item_perm: np.ndarray  # (50000,) popularity rank -> item id
    item_score: np.ndarray  # (50000,) N(0, 1) per item id
    tag_score: np.ndarray  # (1000,) N(0, 1) per tag id
    country_cdf: np.ndarray  # (200,) cumulative skewed probabilities over country codes
    country_score: np.ndarray  # (200,) N(0, 1) per country code
    profile_mean: np.ndarray  # (8,) per-column mean of the raw profile values
    profile_scale: np.ndarray  # (8,) per-column std of the raw profile values
    profile_w: np.ndarray  # (8,) weights of the standardized profile values
    mixing: np.ndarray  # (5, 7) multilabel mixing matrix, columns in MODALITIES order
    thresholds: np.ndarray  # (5,) multilabel thresholds
    center: dict  # modality -> mean of the raw signal over present rows
    scale: dict  # modality -> std of the raw signal over present rows
    bias: float = BIAS


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(p / p.sum())
    cdf[-1] = 1.0
    return cdf


def _mean_inverse_history_length() -> float:
    """E[1/L] for L = clip(round(lognormal(HISTORY_MU, HISTORY_SIGMA)), 1, HISTORY_MAX), exactly."""
    dist = NormalDist(HISTORY_MU, HISTORY_SIGMA)
    edges = [0.0] + [dist.cdf(math.log(k + 0.5)) for k in range(1, HISTORY_MAX)] + [1.0]
    probs = np.diff(np.asarray(edges))  # probs[k - 1] = P(L = k)
    return float(np.sum(probs / np.arange(1, HISTORY_MAX + 1)))


def make_tables(seed: int) -> SynthTables:
    """Draw the fixed tables of the workload from ``np.random.default_rng(seed)``.

    Args:
        seed: the workload seed.

    Returns:
        The `SynthTables` of that seed, including the analytic standardization constants.
    """
    rng = np.random.default_rng(seed)

    def unit(dim: int) -> np.ndarray:
        u = rng.standard_normal(dim)
        return (u / np.linalg.norm(u)).astype(np.float32)

    u_image, u_title, u_frames = unit(IMAGE_DIM), unit(TITLE_DIM), unit(FRAME_DIM)
    item_perm = rng.permutation(NUM_ITEMS)
    item_score = rng.standard_normal(NUM_ITEMS)
    tag_score = rng.standard_normal(NUM_TAGS)
    country_score = rng.standard_normal(NUM_COUNTRIES)
    profile_mean = rng.normal(0.0, 3.0, NUM_PROFILE)
    profile_scale = rng.uniform(0.5, 5.0, NUM_PROFILE)
    profile_w = rng.standard_normal(NUM_PROFILE)
    # Each label leans on its own modality plus a weaker mixture of the others.
    mixing = 0.4 * rng.standard_normal((len(LABEL_RATES), len(MODALITIES)))
    mixing[np.arange(len(LABEL_RATES)), rng.permutation(len(MODALITIES))[: len(LABEL_RATES)]] += 1.5

    item_cdf = _zipf_cdf(NUM_ITEMS, ZIPF_ITEMS)
    country_cdf = _zipf_cdf(NUM_COUNTRIES, ZIPF_COUNTRIES)
    p_item = np.diff(item_cdf, prepend=0.0)[np.argsort(item_perm)]  # probability per item id
    p_country = np.diff(country_cdf, prepend=0.0)
    mean_inv_frames = float(np.mean(1.0 / np.arange(1, FRAMES_MAX + 1)))
    k = np.arange(1, TAGS_MAX + 1)  # distinct tags: finite-population correction
    mean_var_tags = float(np.mean((NUM_TAGS - k) / (NUM_TAGS - 1) / k))
    item_mu = float(p_item @ item_score)
    country_mu = float(p_country @ country_score)
    center = {"history": item_mu, "tags": float(tag_score.mean()), "country": country_mu}
    scale = {
        "image": 1.0,  # dot of N(0, I) with a unit vector
        "title": 1.0,
        "history": math.sqrt(float(p_item @ (item_score - item_mu) ** 2) * _mean_inverse_history_length()),
        "frames": math.sqrt(mean_inv_frames),
        "tags": math.sqrt(float(tag_score.var()) * mean_var_tags),
        "country": math.sqrt(float(p_country @ (country_score - country_mu) ** 2)),
        "profile": math.sqrt((1.0 - PROFILE_NAN) * float(profile_w @ profile_w)),
    }
    # Label score z_k = sum_m A[k, m] s_m + noise: mean 0, variance sum_m A[k, m]^2 p_m + noise^2.
    presence = np.array([PRESENCE[m] for m in MODALITIES])
    sd = np.sqrt(mixing**2 @ presence + LABEL_NOISE**2)
    z = np.array([NormalDist().inv_cdf(1.0 - r) for r in LABEL_RATES])
    return SynthTables(
        seed,
        u_image,
        u_title,
        u_frames,
        item_cdf,
        item_perm,
        item_score,
        tag_score,
        country_cdf,
        country_score,
        profile_mean,
        profile_scale,
        profile_w,
        mixing,
        sd * z,
        center,
        scale,
    )


def _column(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


def _fixed_rows(arr: pa.Array, dim: int) -> np.ndarray:
    """(n, dim) view of a fixed-size list array (rows under nulls hold unspecified values), or of
    a flat array of n * dim values."""
    if isinstance(arr, pa.FixedSizeListArray):
        arr = arr.values.slice(arr.offset * dim, len(arr) * dim)
    return arr.to_numpy(zero_copy_only=False).reshape(-1, dim)


def _list_parts(arr: pa.ListArray) -> tuple[pa.Array, np.ndarray]:
    """(child values, length per row) of a list array, honouring its slice offset."""
    offsets = arr.offsets.to_numpy()
    return arr.values.slice(offsets[0], offsets[-1] - offsets[0]), np.diff(offsets)


def _row_mean(arr: pa.ListArray, per_value: np.ndarray) -> np.ndarray:
    """Mean of per_value (one number per child value) over each row; 0 for empty rows."""
    lengths = _list_parts(arr)[1]
    rows = np.repeat(np.arange(len(arr)), lengths)
    return np.bincount(rows, weights=per_value, minlength=len(arr)) / np.maximum(lengths, 1)


def presence(table: pa.Table) -> dict[str, np.ndarray]:
    """Whether each modality is present in each row (null or empty list means missing).

    Args:
        table: a recsys-6 table (as written by `deepsets.features.synth.generate`).

    Returns:
        modality -> (rows,) bool array, in MODALITIES order.
    """
    out = {}
    for name in ("image", "title", "frames", "country"):
        out[name] = _column(table, name).is_valid().to_numpy(zero_copy_only=False)
    for name in ("history", "tags"):
        arr = _column(table, name)
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        out[name] = valid & (np.diff(arr.offsets.to_numpy()) > 0)
    profile_valid = [
        _column(table, f"profile_{j}").is_valid().to_numpy(zero_copy_only=False) for j in range(NUM_PROFILE)
    ]
    out["profile"] = np.logical_or.reduce(profile_valid)
    return {m: out[m] for m in MODALITIES}


def _dense_dots(arr: pa.ListArray, dim: int, direction: np.ndarray) -> np.ndarray:
    """(rows,) dot product of each present vector with `direction`, 0 where the row is empty.

    Raises:
        ValueError: if a non-empty row does not hold exactly `dim` floats.
    """
    values, lengths = _list_parts(arr)
    if np.any((lengths != 0) & (lengths != dim)):
        raise ValueError(
            f"every non-empty vector must hold {dim} floats, got lengths {sorted(set(lengths.tolist()) - {0, dim})}"
        )
    out = np.zeros(len(arr))
    out[lengths > 0] = _fixed_rows(values, dim) @ direction
    return out


def signals(table: pa.Table, tables: SynthTables) -> dict[str, np.ndarray]:
    """Standardized per-row signal of each modality, exactly 0 where the modality is missing.

    Args:
        table: a recsys-6 table (as written by `deepsets.features.synth.generate`), any number of chunks.
        tables: the `make_tables` result of the seed the table was generated with.

    Returns:
        modality -> (rows,) float64 array, in MODALITIES order.

    Raises:
        ValueError: if a non-empty image or title does not hold exactly its dim floats.
    """

    def child(name: str) -> tuple[pa.ListArray, np.ndarray]:
        arr = _column(table, name)
        return arr, _list_parts(arr)[0].to_numpy(zero_copy_only=False)

    raw = {
        "image": _dense_dots(_column(table, "image"), IMAGE_DIM, tables.u_image),
        "title": _dense_dots(_column(table, "title"), TITLE_DIM, tables.u_title),
    }
    history, ids = child("history")
    raw["history"] = _row_mean(history, tables.item_score[ids])
    frames = _column(table, "frames")
    frame_dots = _fixed_rows(_list_parts(frames)[0], FRAME_DIM) @ tables.u_frames  # (total frames,)
    raw["frames"] = _row_mean(frames, frame_dots)
    tags, tag_ids = child("tags")
    raw["tags"] = _row_mean(tags, tables.tag_score[tag_ids])
    country = _column(table, "country").fill_null("C000")
    codes = pc.utf8_slice_codeunits(country, 1)  # "C042" -> "042"
    raw["country"] = tables.country_score[codes.cast(pa.int64()).to_numpy()]
    columns = [_column(table, f"profile_{j}").fill_null(np.nan) for j in range(NUM_PROFILE)]
    profile = np.stack([c.to_numpy(zero_copy_only=False) for c in columns], axis=1)  # (rows, 8)
    z = np.nan_to_num((profile - tables.profile_mean) / tables.profile_scale, nan=0.0)
    raw["profile"] = z @ tables.profile_w
    present = presence(table)
    return {m: np.where(present[m], (raw[m] - tables.center.get(m, 0.0)) / tables.scale[m], 0.0) for m in MODALITIES}
