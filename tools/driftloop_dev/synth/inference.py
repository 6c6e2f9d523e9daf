"""Inference-log rows of one synthetic day: numpy sampling, Arrow table, Parquet bytes.

Pure functions, no I/O. Every random draw comes from a generator derived from
``(seed, scenario, day index, stream)`` (:func:`day_rng`), so a day is reproducible on its
own and byte-identical between runs.

The model of one row (one scored image):

* camera: categorical; each camera has a fixed brightness offset, an RGB tint and a latent
  "look" vector (the new camera ``cam-05`` of ``abrupt`` differs on all three);
* image features: brightness ~ N(120, ~25) + camera + scenario delta, contrast ~ N(45, 10)
  times the scenario's contrast scale, saturation ~ Beta (mean 0.45), sharpness lognormal
  (median 300), RGB means = linear in brightness (grass green dominates) + tint + noise;
* content: a frame is "no detection" (5 %), "ball" (share ``p_ball_top`` of the rest) or
  "player" framed; ball counts and player counts are Poisson given the framing, so the
  ``n_detections`` mix follows the class mix;
* predictions: confidence_mean ~ Beta around the scenario's mean confidence (independent of
  the inputs, so concept drift is prediction-only), confidence_max = mean + a share of the
  headroom; frames without detections carry their best sub-threshold score;
* latency_ms ~ lognormal around 25 ms;
* embedding (64-d float32) = fixed random projection of a 16-d latent built from the
  standardised image features, the camera's look vector, the content features and gaussian
  noise. Input and content drift move it, confidence-only drift does not.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from datetime import date
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.contracts import schema, storage
from driftloop_dev.synth.scenarios import (
    ALL_CAMERAS,
    BRIGHTNESS_MEAN,
    BRIGHTNESS_SD,
    CONTRAST_MEAN,
    CONTRAST_SD,
    MODEL_VERSION,
    P_NO_DETECTION,
    DayParams,
    WorldSpec,
)

# random streams of one day
STREAM_ROWS = 0
STREAM_FRAMES = 1
STREAM_DEFECTS = 2
#: a day's camera traffic (:mod:`.traffic`); its first draws are the labeled frames' cameras
STREAM_TRAFFIC = 3
_WORLD_KEY = 0x5EED  # spawn key of the world constants (projection, camera looks)

LATENT_DIM = 16
MICROS_PER_DAY = 86_400 * 1_000_000

#: camera -> brightness offset
CAMERA_BRIGHTNESS: dict[str, float] = {
    "cam-01": 6.0,
    "cam-02": -4.0,
    "cam-03": 2.0,
    "cam-04": -5.0,
    "cam-05": -8.0,
}
#: camera -> (r, g, b) tint added to the channel means
CAMERA_TINT: dict[str, tuple[float, float, float]] = {
    "cam-01": (2.0, 0.0, -2.0),
    "cam-02": (-2.0, 1.0, 2.0),
    "cam-03": (0.0, -1.0, 1.0),
    "cam-04": (1.0, 1.0, -1.0),
    "cam-05": (7.0, -5.0, 9.0),
}
#: channel means are linear in brightness: green grass dominates
RGB_GAIN = np.array([0.92, 1.08, 0.86])
RGB_NOISE_SD = 4.0
BRIGHTNESS_NOISE_SD = 24.5  # with the camera offsets the overall sd is ~25
SATURATION_BETA = (18.0, 22.0)  # mean 0.45, sd ~0.078
SHARPNESS_LOG_MEDIAN = float(np.log(300.0))
SHARPNESS_LOG_SD = 0.5
LATENCY_LOG_MEDIAN = float(np.log(25.0))
LATENCY_LOG_SD = 0.25
CONFIDENCE_CONCENTRATION = 25.0
# counts given the framing of the frame
BALL_FRAME_EXTRA_BALLS = 0.2  # ball-framed: 1 + Poisson(.2) balls
BALL_FRAME_PLAYERS = 1.5  # ball-framed: Poisson(1.5) players
PLAYER_FRAME_P_BALL = 0.5  # player-framed: Bernoulli(.5) balls
PLAYER_FRAME_EXTRA_PLAYERS = 6.0  # player-framed: 1 + Poisson(6) players


def scenario_code(name: str) -> int:
    """A stable integer for a scenario name (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def day_rng(spec: WorldSpec, day_index: int, stream: int) -> np.random.Generator:
    seq = np.random.SeedSequence(
        entropy=spec.seed, spawn_key=(scenario_code(spec.scenario), day_index, stream)
    )
    return np.random.Generator(np.random.PCG64(seq))


FEATURES = (
    "brightness",
    "contrast",
    "saturation",
    "log_sharpness",
    "mean_r",
    "mean_g",
    "mean_b",
    "n_ball",
    "n_player",
    "ball_framed",
    "no_detection",
)
N_FEATURES = len(FEATURES)
LATENT_NOISE_SD = 0.7
CONTENT_WEIGHT = 1.5


class WorldConstants:
    """Fixed for a seed, shared by all days and scenarios: the embedding 'backbone'."""

    def __init__(self, seed: int):
        rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=(_WORLD_KEY,)))
        )
        self.feature_map = rng.normal(0.0, 1.0 / np.sqrt(4.0), size=(N_FEATURES, LATENT_DIM))
        self.camera_look = {cam: rng.normal(0.0, 0.8, size=LATENT_DIM) for cam in ALL_CAMERAS}
        self.projection = rng.normal(
            0.0, 1.0 / np.sqrt(LATENT_DIM), size=(LATENT_DIM, schema.EMBEDDING_DIM)
        )


@lru_cache(maxsize=8)
def world_constants(seed: int) -> WorldConstants:
    return WorldConstants(seed)


def _standardised_features(c: dict[str, np.ndarray], n_ball, n_player, ball, none) -> np.ndarray:
    """Features standardised with the *baseline* constants, so that drift moves them."""
    b0 = BRIGHTNESS_MEAN
    sat_mean = SATURATION_BETA[0] / sum(SATURATION_BETA)
    cols = [
        (c["brightness"] - b0) / BRIGHTNESS_SD,
        (c["contrast"] - CONTRAST_MEAN) / CONTRAST_SD,
        (c["saturation"] - sat_mean) / 0.078,
        (np.log(c["sharpness"]) - SHARPNESS_LOG_MEDIAN) / SHARPNESS_LOG_SD,
        (c["mean_r"] - RGB_GAIN[0] * b0) / (RGB_GAIN[0] * BRIGHTNESS_SD),
        (c["mean_g"] - RGB_GAIN[1] * b0) / (RGB_GAIN[1] * BRIGHTNESS_SD),
        (c["mean_b"] - RGB_GAIN[2] * b0) / (RGB_GAIN[2] * BRIGHTNESS_SD),
        CONTENT_WEIGHT * (n_ball - 0.6) / 0.6,
        CONTENT_WEIGHT * (n_player - 5.0) / 3.5,
        CONTENT_WEIGHT * (ball.astype(np.float64) - 0.3) / 0.46,
        CONTENT_WEIGHT * (none.astype(np.float64) - 0.05) / 0.22,
    ]
    return np.stack(cols, axis=1)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # einsum's own loop: no BLAS thread start-up per call (it dominated small days) and no
    # dependence on the BLAS build's kernels
    return np.einsum("nk,kd->nd", a, b)


def _categorical(categories: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    # pa.array() of a numpy unicode array is slow; a take from the categories is not
    return pa.array(list(categories), pa.string()).take(pa.array(codes, pa.int32()))


def sample_rows(
    rng: np.random.Generator, params: DayParams, n: int, constants: WorldConstants
) -> dict[str, np.ndarray]:
    """The random columns of ``n`` rows (all but ts, image_id, model_version).

    Numeric columns are numpy arrays, categorical ones Arrow string arrays.
    """
    probs = np.asarray(params.camera_probs) / sum(params.camera_probs)
    cam_idx = rng.choice(len(params.cameras), size=n, p=probs)
    cam_brightness = np.array([CAMERA_BRIGHTNESS[c] for c in params.cameras])[cam_idx]
    cam_tint = np.array([CAMERA_TINT[c] for c in params.cameras])[cam_idx]

    brightness = np.clip(
        BRIGHTNESS_MEAN
        + cam_brightness
        + params.brightness_delta
        + rng.normal(0.0, BRIGHTNESS_NOISE_SD, n),
        0.0,
        255.0,
    )
    contrast = np.clip(
        params.contrast_scale * (CONTRAST_MEAN + rng.normal(0.0, CONTRAST_SD, n)), 1.0, 128.0
    )
    saturation = rng.beta(*SATURATION_BETA, size=n)
    sharpness = np.clip(
        np.exp(rng.normal(SHARPNESS_LOG_MEDIAN, SHARPNESS_LOG_SD, n)), 1.0, 10_000.0
    )
    rgb = np.clip(
        brightness[:, None] * RGB_GAIN + cam_tint + rng.normal(0.0, RGB_NOISE_SD, (n, 3)),
        0.0,
        255.0,
    )

    # content: framing, then counts given the framing
    none = rng.random(n) < P_NO_DETECTION
    ball = ~none & (rng.random(n) < params.p_ball_top)
    player = ~none & ~ball
    n_ball = np.where(
        ball,
        1 + rng.poisson(BALL_FRAME_EXTRA_BALLS, n),
        np.where(player, rng.random(n) < PLAYER_FRAME_P_BALL, 0),
    )
    n_player = np.where(
        ball,
        rng.poisson(BALL_FRAME_PLAYERS, n),
        np.where(player, 1 + rng.poisson(PLAYER_FRAME_EXTRA_PLAYERS, n), 0),
    )
    n_detections = np.minimum(n_ball + n_player, 100).astype(np.int32)
    top_idx = np.where(none, 2, np.where(ball, 0, 1))  # index into schema.TOP_CLASSES

    # predictions: independent of the inputs (concept drift is prediction-only)
    mu, kappa = params.confidence_mean, CONFIDENCE_CONCENTRATION
    conf_mean = np.clip(rng.beta(mu * kappa, (1.0 - mu) * kappa, n), 0.001, 0.999)
    conf_max = conf_mean + (1.0 - conf_mean) * rng.beta(1.5, 4.0, n)
    sub_threshold = rng.uniform(0.05, 0.25, n)  # best candidate below the threshold
    conf_mean = np.where(none, sub_threshold, conf_mean)
    conf_max = np.minimum(np.where(none, sub_threshold, conf_max), 0.999)
    latency = np.clip(np.exp(rng.normal(LATENCY_LOG_MEDIAN, LATENCY_LOG_SD, n)), 1.0, 60_000.0)

    cols = {
        "camera_id": _categorical(params.cameras, cam_idx),
        "brightness": brightness,
        "contrast": contrast,
        "saturation": saturation,
        "sharpness": sharpness,
        "mean_r": rgb[:, 0],
        "mean_g": rgb[:, 1],
        "mean_b": rgb[:, 2],
        "n_detections": n_detections,
        "top_class": _categorical(schema.TOP_CLASSES, top_idx),
        "confidence_mean": conf_mean,
        "confidence_max": conf_max,
        "latency_ms": latency,
    }
    features = _standardised_features(cols, n_ball, n_player, ball, none)
    looks = np.stack([constants.camera_look[c] for c in params.cameras])[cam_idx]
    noise = rng.normal(0.0, LATENT_NOISE_SD, (n, LATENT_DIM))
    latent = _matmul(features, constants.feature_map) + looks + noise
    cols["embedding"] = _matmul(latent, constants.projection).astype(np.float32)
    return cols


def day_start_micros(day: date) -> int:
    return (day - date(1970, 1, 1)).days * MICROS_PER_DAY


def inference_table(spec: WorldSpec, day_index: int) -> pa.Table:
    """The clean inference log of one day, with exactly :func:`schema.arrow_schema`."""
    day = spec.date_of(day_index)
    n = spec.rows_per_day
    rng = day_rng(spec, day_index, STREAM_ROWS)
    ts = np.sort(rng.integers(0, MICROS_PER_DAY, n)) + day_start_micros(day)
    cols = sample_rows(rng, spec.day_params(day_index), n, world_constants(spec.seed))
    prefix = day.strftime("%Y%m%d")
    emb = cols.pop("embedding")
    arrays = {
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "image_id": pc.binary_join_element_wise(
            prefix, pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 6, "0"), "-"
        ),
        "model_version": _categorical((MODEL_VERSION,), np.zeros(n, dtype=np.int32)),
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(emb.reshape(-1), pa.float32()), schema.EMBEDDING_DIM
        ),
        **cols,
    }
    target = schema.arrow_schema()
    columns = [
        value if isinstance(value, pa.Array) else pa.array(value, f.type)
        for f in target
        for value in (arrays[f.name],)
    ]
    return pa.Table.from_arrays(columns, schema=target)


# ---------------------------------------------------------------------------------------------
# Parquet bytes and defects
# ---------------------------------------------------------------------------------------------

NULL_SHARE = 0.05
OUT_OF_RANGE_SHARE = 0.02


#: dictionary-encode the low-cardinality strings only (trying it on floats is slow and useless)
DICTIONARY_COLUMNS = ["camera_id", "model_version", "top_class"]


def to_parquet(table: pa.Table) -> bytes:
    """Parquet bytes with fixed writer options (same table -> same bytes)."""
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="snappy",
        use_dictionary=DICTIONARY_COLUMNS,
        write_statistics=True,
        version="2.6",
        data_page_version="1.0",
        row_group_size=1 << 20,
    )
    return buf.getvalue()


def apply_table_defect(table: pa.Table, defect: str, rng: np.random.Generator) -> pa.Table:
    """Table-level defects; file-level ones (truncated, empty) return the table unchanged."""
    n = table.num_rows
    if defect == "missing_column":
        return table.drop_columns(["sharpness"])
    if defect == "wrong_dtype":
        as_text = pc.cast(table.column("brightness").combine_chunks(), pa.string())
        i = table.schema.get_field_index("brightness")
        return table.set_column(i, pa.field("brightness", pa.string(), nullable=False), as_text)
    if defect == "nulls":
        k = max(1, round(NULL_SHARE * n))
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=k, replace=False)] = True
        values = table.column("confidence_mean").to_numpy()
        i = table.schema.get_field_index("confidence_mean")
        return table.set_column(
            i, pa.field("confidence_mean", pa.float64(), nullable=True), pa.array(values, mask=mask)
        )
    if defect == "out_of_range":
        k = max(1, round(OUT_OF_RANGE_SHARE * n))
        values = table.column("saturation").to_numpy().copy()
        values[rng.choice(n, size=k, replace=False)] = 1.0 + rng.uniform(0.01, 0.5, k)
        i = table.schema.get_field_index("saturation")
        return table.set_column(i, table.schema.field(i), pa.array(values, pa.float64()))
    if defect in ("truncated", "empty"):
        return table
    raise ValueError(f"unknown defect {defect!r}")


def part_key(day: date | str, part: int) -> str:
    return f"{storage.inference_prefix(day)}part-{part:05d}.parquet"


def partition_files(spec: WorldSpec, day_index: int) -> list[tuple[str, bytes]]:
    """``(key, bytes)`` of the day's Parquet parts, defects applied (no ``_SUCCESS``)."""
    day = spec.date_of(day_index)
    table = inference_table(spec, day_index)
    defect = spec.day_params(day_index).defect
    if defect is not None:
        table = apply_table_defect(table, defect, day_rng(spec, day_index, STREAM_DEFECTS))
    bounds = np.linspace(0, table.num_rows, spec.files_per_day + 1).round().astype(int)
    files = [
        (part_key(day, j), to_parquet(table.slice(int(lo), int(hi - lo))))
        for j, (lo, hi) in enumerate(itertools.pairwise(bounds))
    ]
    if defect == "truncated":
        key, data = files[0]
        files[0] = (key, data[: len(data) // 2])
    elif defect == "empty":
        files[0] = (files[0][0], b"")
    return files
