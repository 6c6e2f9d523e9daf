"""Labeled frames of one synthetic day: a pitch with balls and players, YOLO labels.

Pure functions, no I/O. :func:`sample_scene` draws a :class:`Scene` (a plain description:
background, lighting, objects with integer pixel boxes); :func:`render` draws it
deterministically; :func:`yolo_labels` writes its label file. Objects never overlap and
are fully inside the frame, and every drawn pixel of an object lies inside its box with
the box's four edges touched, so labels are tight. Lighting (the scenario's brightness
and contrast of the day) scales the whole frame, objects included. A day's
``upside_down`` share (``confidence-decay`` only) draws that share of the players upside down
(:func:`turn_upside_down`: the same pixels mirrored top to bottom inside the same box, so the
labels and every image statistic stay, while a model that only saw upright players finds
them less well); chosen per player from the scene's own seed, so every other scenario's
scenes and pixels are byte for byte what they were.

Classes follow :data:`driftloop.contracts.schema.CLASS_NAMES`: 0 = ball, 1 = player.

A labeled day (:func:`labeled_files`) is its frames (``images/<stem>.png`` +
``labels/<stem>.txt``), its ``frames.jsonl`` (:mod:`driftloop.contracts.labeled`: each frame's
camera, source ``feedback``) and ``_SUCCESS`` last (a JSON summary: the day is complete).
Frame ``i`` has the camera of traffic frame ``i`` (:mod:`.traffic`): the first draws of the
day's traffic stream (:func:`labeled_cameras`), the cameras and mix of the inference logs.

Camera looks are opt-in (``WorldSpec.camera_looks``): with them a labeled frame is seen
through its camera (:func:`camera_look`: the brightness offset and RGB tint the
inference-log rows use, :data:`.inference.CAMERA_BRIGHTNESS`, :data:`.inference.CAMERA_TINT`).
Off by default because the promotion floors (``promotion_policy.yaml``) and the golden set's
numbers were calibrated with ``bench/model_quality.py`` on frames without a look; a look
changes the training pixels, so that calibration would no longer hold unmeasured.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

from driftloop.contracts import schema, storage
from driftloop.contracts.labeled import LabeledFrameInfo, frames_index_bytes, frames_index_key
from driftloop_dev.synth.inference import (
    CAMERA_BRIGHTNESS,
    CAMERA_TINT,
    STREAM_FRAMES,
    STREAM_TRAFFIC,
    day_rng,
)
from driftloop_dev.synth.scenarios import BRIGHTNESS_MEAN, DayParams, WorldSpec

BALL = schema.CLASS_NAMES.index("ball")
PLAYER = schema.CLASS_NAMES.index("player")

DEFAULT_SIZE = 160
GRASS = ((58, 128, 56), (70, 146, 64))  # mowing stripes
LINE = (112, 178, 104)  # faint pitch markings (lighter green, never white: the ball is white)
BALL_FILL = (238, 238, 238)
BALL_EDGE = (70, 70, 70)
BALL_PATCH = (35, 35, 35)
SHIRTS = ((210, 40, 45), (35, 70, 200), (235, 205, 40), (150, 40, 170))
SHORTS = ((25, 25, 25), (245, 245, 245), (20, 30, 110))
SKIN = ((224, 172, 128), (160, 110, 75), (95, 62, 42))
#: luma of the bare pitch: the lighting scale maps it to the day's brightness
NOMINAL_LUMA = 0.299 * 64 + 0.587 * 137 + 0.114 * 60
LABEL_BRIGHTNESS_SD = 12.0
LABEL_BRIGHTNESS_RANGE = (55.0, 190.0)  # keep objects clearly visible
NOISE_SD = 3.0
GAP = 2  # minimum free pixels between two objects
BALL_RADIUS = (5, 10)
PLAYER_WIDTH = (12, 20)
PLAYER_HEIGHT = (25, 45)


@dataclass(frozen=True)
class SceneObject:
    cls: int  # 0 ball, 1 player
    x0: int  # box in pixels, [x0, x1) x [y0, y1)
    y0: int
    x1: int
    y1: int
    colors: tuple[tuple[int, int, int], ...] = ()  # player: shirt, shorts, skin
    upside_down: bool = False  # drawn mirrored top to bottom (same box, same label)

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def overlaps(self, other: SceneObject, gap: int = 0) -> bool:
        return not (
            self.x1 + gap <= other.x0
            or other.x1 + gap <= self.x0
            or self.y1 + gap <= other.y0
            or other.y1 + gap <= self.y0
        )


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    brightness: float  # target mean luma of the pitch
    contrast: float = 1.0  # scale of deviations from the target luma
    stripe_width: int = 20
    stripe_offset: int = 0
    vertical_stripes: bool = False
    halfway_x: int = 80
    circle_radius: int = 22
    noise_seed: int = 0
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def without_objects(self) -> Scene:
        return replace(self, objects=())


def _place(rng, objects: list[SceneObject], w: int, h: int, W: int, H: int):
    """An (x0, y0) where a w x h box fits inside the frame without touching the others."""
    for _ in range(60):
        x0 = int(rng.integers(1, W - w))
        y0 = int(rng.integers(1, H - h))
        probe = SceneObject(0, x0, y0, x0 + w, y0 + h)
        if not any(probe.overlaps(o, GAP) for o in objects):
            return x0, y0
    return None


def sample_scene(rng: np.random.Generator, params: DayParams, size: int = DEFAULT_SIZE) -> Scene:
    """A random scene under the day's parameters (lighting and class mix)."""
    W = H = size
    ball_framed = rng.random() < params.p_ball_top
    if ball_framed:
        n_balls = 1 + int(rng.random() < 0.2)
        n_players = int(rng.integers(0, 4))
    else:
        n_balls = int(rng.random() < 0.5)
        n_players = int(rng.integers(2, 7))
    objects: list[SceneObject] = []
    kinds = [PLAYER] * n_players + [BALL] * n_balls  # big ones first: they are harder to fit
    for cls in kinds:
        if cls == BALL:
            r = int(rng.integers(BALL_RADIUS[0], BALL_RADIUS[1] + 1))
            w = h = 2 * r
            colors: tuple[tuple[int, int, int], ...] = ()
        else:
            w = int(rng.integers(PLAYER_WIDTH[0], PLAYER_WIDTH[1] + 1))
            h = int(rng.integers(PLAYER_HEIGHT[0], PLAYER_HEIGHT[1] + 1))
            colors = (
                SHIRTS[int(rng.integers(len(SHIRTS)))],
                SHORTS[int(rng.integers(len(SHORTS)))],
                SKIN[int(rng.integers(len(SKIN)))],
            )
        spot = _place(rng, objects, w, h, W, H)
        if spot is not None:
            x0, y0 = spot
            objects.append(SceneObject(cls, x0, y0, x0 + w, y0 + h, colors))
    brightness = float(
        np.clip(
            BRIGHTNESS_MEAN + params.brightness_delta + rng.normal(0.0, LABEL_BRIGHTNESS_SD),
            *LABEL_BRIGHTNESS_RANGE,
        )
    )
    scene = Scene(
        width=W,
        height=H,
        brightness=brightness,
        contrast=params.contrast_scale,
        stripe_width=int(rng.integers(14, 28)),
        stripe_offset=int(rng.integers(0, 28)),
        vertical_stripes=bool(rng.random() < 0.5),
        halfway_x=int(rng.integers(W // 4, 3 * W // 4)),
        circle_radius=int(rng.integers(W // 8, W // 5)),
        noise_seed=int(rng.integers(0, 2**31)),
        objects=tuple(objects),
    )
    return with_players_upside_down(scene, params.upside_down)


def with_players_upside_down(scene: Scene, share: float) -> Scene:
    """``scene`` with each player upside down with probability ``share``, drawn from the
    scene's own seed (``rng``, the day's stream, is not touched: 0 changes nothing)."""
    if share <= 0:
        return scene
    flips = np.random.Generator(np.random.PCG64([scene.noise_seed, 1])).random(len(scene.objects))
    objects = tuple(
        replace(o, upside_down=True) if o.cls == PLAYER and flip < share else o
        for o, flip in zip(scene.objects, flips, strict=True)
    )
    return replace(scene, objects=objects)


def _draw_ball(draw: ImageDraw.ImageDraw, o: SceneObject) -> None:
    draw.ellipse([o.x0, o.y0, o.x1 - 1, o.y1 - 1], fill=BALL_FILL, outline=BALL_EDGE)
    r = max(1, o.width // 5)
    cx, cy = (o.x0 + o.x1) // 2, (o.y0 + o.y1) // 2
    draw.ellipse([cx - r, cy - r, cx + r - 1, cy + r - 1], fill=BALL_PATCH)


def _draw_player(draw: ImageDraw.ImageDraw, o: SceneObject) -> None:
    shirt, shorts, skin = o.colors
    w, h = o.width, o.height
    head = max(5, min(round(0.5 * w), round(0.22 * h)))
    hx0 = o.x0 + (w - head) // 2
    torso_top = o.y0 + head - 1
    shorts_top = torso_top + round(0.38 * h)
    legs_top = shorts_top + round(0.14 * h)
    leg = max(2, w // 4)
    # legs first, full height to the bottom edge; then shorts, torso (full width), head
    draw.rectangle([o.x0 + 1, legs_top, o.x0 + leg, o.y1 - 1], fill=skin)
    draw.rectangle([o.x1 - 1 - leg, legs_top, o.x1 - 2, o.y1 - 1], fill=skin)
    draw.rectangle([o.x0 + 1, o.y1 - 3, o.x0 + leg, o.y1 - 1], fill=shirt)  # socks/boots
    draw.rectangle([o.x1 - 1 - leg, o.y1 - 3, o.x1 - 2, o.y1 - 1], fill=shirt)
    draw.rectangle([o.x0 + 1, shorts_top, o.x1 - 2, legs_top], fill=shorts)
    draw.rectangle([o.x0, torso_top, o.x1 - 1, shorts_top - 1], fill=shirt)
    draw.ellipse([hx0, o.y0, hx0 + head - 1, o.y0 + head - 1], fill=skin)


def render(scene: Scene) -> Image.Image:
    """Draw the scene (deterministic: same scene, same pixels)."""
    W, H = scene.width, scene.height
    coord = np.arange(W if scene.vertical_stripes else H)
    stripe = ((coord + scene.stripe_offset) // scene.stripe_width) % 2
    colors = np.array(GRASS, dtype=np.uint8)[stripe]  # (len, 3)
    base = (
        np.broadcast_to(colors[None, :, :], (H, W, 3))
        if scene.vertical_stripes
        else np.broadcast_to(colors[:, None, :], (H, W, 3))
    )
    img = Image.fromarray(np.ascontiguousarray(base), "RGB")
    draw = ImageDraw.Draw(img)
    draw.line([(scene.halfway_x, 0), (scene.halfway_x, H - 1)], fill=LINE, width=1)
    cy, r = H // 2, scene.circle_radius
    draw.ellipse([scene.halfway_x - r, cy - r, scene.halfway_x + r, cy + r], outline=LINE, width=1)
    turned = [o for o in scene.objects if o.upside_down]
    pitch = np.array(img) if turned else None
    for o in scene.objects:
        (_draw_ball if o.cls == BALL else _draw_player)(draw, o)
    drawn = np.asarray(img)
    if pitch is not None:
        drawn = drawn.copy()
        for o in turned:
            turn_upside_down(drawn, pitch, o)

    # lighting: scale to the target brightness, then the contrast around it; sensor noise
    pixels = drawn.astype(np.float32) * np.float32(scene.brightness / NOMINAL_LUMA)
    pivot = np.float32(scene.brightness)
    pixels = pivot + (pixels - pivot) * np.float32(scene.contrast)
    noise = np.random.Generator(np.random.PCG64(scene.noise_seed)).normal(0.0, NOISE_SD, (H, W, 3))
    pixels = np.clip(np.rint(pixels + noise.astype(np.float32)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def turn_upside_down(drawn: np.ndarray, pitch: np.ndarray, o: SceneObject) -> None:
    """Mirror object ``o`` top to bottom inside its box, in place: its pixels (those of
    ``drawn`` that differ from the bare ``pitch``) move, the pitch behind stays."""
    box = (slice(o.y0, o.y1), slice(o.x0, o.x1))
    sprite, behind = drawn[box], pitch[box]
    mask = (sprite != behind).any(axis=2)[::-1]
    turned = behind.copy()
    turned[mask] = sprite[::-1][mask]
    drawn[box] = turned


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1, optimize=False)
    return buf.getvalue()


def yolo_labels(scene: Scene) -> str:
    """YOLO label file: one ``cls cx cy w h`` line per object, normalised, 6 decimals."""
    W, H = scene.width, scene.height
    lines = [
        f"{o.cls} {(o.x0 + o.x1) / 2 / W:.6f} {(o.y0 + o.y1) / 2 / H:.6f} "
        f"{o.width / W:.6f} {o.height / H:.6f}"
        for o in scene.objects
    ]
    return "".join(line + "\n" for line in lines)


def parse_yolo_labels(text: str) -> list[tuple[int, float, float, float, float]]:
    rows = []
    for line in text.splitlines():
        if line.strip():
            cls, cx, cy, w, h = line.split()
            rows.append((int(cls), float(cx), float(cy), float(w), float(h)))
    return rows


def frame_stem(day: str, i: int) -> str:
    return f"{day}-{i:04d}"


def image_key(day: str, i: int) -> str:
    return f"{storage.labeled_prefix(day)}images/{frame_stem(day, i)}.png"


def label_key(day: str, i: int) -> str:
    return f"{storage.labeled_prefix(day)}labels/{frame_stem(day, i)}.txt"


def labeled_success_key(day: str) -> str:
    return f"{storage.labeled_prefix(day)}{storage.SUCCESS_MARKER}"


def day_scenes(spec: WorldSpec, day_index: int, size: int = DEFAULT_SIZE) -> list[Scene]:
    rng = day_rng(spec, day_index, STREAM_FRAMES)
    params = spec.day_params(day_index)
    return [sample_scene(rng, params, size) for _ in range(spec.labeled_per_day)]


def draw_cameras(rng: np.random.Generator, params: DayParams, n: int) -> list[str]:
    """``n`` cameras from the day's mix (a prefix of a longer draw from the same state is the
    shorter draw: numpy draws one uniform per frame, in order)."""
    probs = np.asarray(params.camera_probs) / sum(params.camera_probs)
    return [params.cameras[i] for i in rng.choice(len(params.cameras), size=n, p=probs)]


def labeled_cameras(spec: WorldSpec, day_index: int) -> list[str]:
    """The camera of each labeled frame of the day: traffic frame ``i``'s camera."""
    rng = day_rng(spec, day_index, STREAM_TRAFFIC)
    return draw_cameras(rng, spec.day_params(day_index), spec.labeled_per_day)


def camera_look(image: Image.Image, camera_id: str) -> Image.Image:
    """``image`` seen through ``camera_id``: its brightness offset and RGB tint added."""
    shift = np.asarray(CAMERA_TINT[camera_id], dtype=np.float32) + np.float32(
        CAMERA_BRIGHTNESS[camera_id]
    )
    pixels = np.asarray(image, dtype=np.float32) + shift
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def labeled_png(spec: WorldSpec, scene: Scene, camera_id: str) -> bytes:
    """A labeled frame's PNG: the scene, through its camera when the world has looks."""
    image = render(scene)
    return to_png(camera_look(image, camera_id) if spec.camera_looks else image)


def labeled_files(
    spec: WorldSpec, day_index: int, size: int = DEFAULT_SIZE
) -> list[tuple[str, bytes, str]]:
    """``(key, bytes, content type)`` of the day's labeled frames, image then label, then the
    day's ``frames.jsonl`` and ``_SUCCESS`` last; [] for a day without labeled frames."""
    day = spec.date_of(day_index).isoformat()
    scenes = day_scenes(spec, day_index, size)
    if not scenes:
        return []
    cameras = labeled_cameras(spec, day_index)
    files: list[tuple[str, bytes, str]] = []
    for i, scene in enumerate(scenes):
        files.append((image_key(day, i), labeled_png(spec, scene, cameras[i]), "image/png"))
        files.append((label_key(day, i), yolo_labels(scene).encode(), "text/plain"))
    infos = [
        LabeledFrameInfo(frame_stem(day, i), cameras[i], "feedback") for i in range(len(scenes))
    ]
    files.append((frames_index_key(day), frames_index_bytes(infos), "application/x-ndjson"))
    summary = {"day": day, "frames": len(scenes), "source": "feedback", "written_by": "synth"}
    files.append((labeled_success_key(day), json.dumps(summary).encode(), "application/json"))
    return files
