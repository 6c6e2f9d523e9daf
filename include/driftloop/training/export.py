"""ONNX export (FP32) and static INT8 quantization of the detector (training environment).

``export_onnx`` runs Ultralytics' exporter with a fixed opset and a static input shape.
``quantize_int8`` runs onnxruntime's ``quantize_static`` in QDQ format with these choices:

- only ``Conv``/``Gemm``/``MatMul`` are quantized (weights INT8 symmetric, per output
  channel; activations UINT8 asymmetric, MinMax calibration). Quantizing every op type
  (Concat, Sigmoid, Mul, Add, Split, Resize, …) collapses the model: mAP drops to 0.
- the detection head is left in FP32: every node of the last ``Detect`` module, found from
  the graph (:func:`detection_head_prefix`: the ``/model.<i>/`` scope of the nodes that
  produce the graph output, e.g. ``/model.23/`` in yolo11n, ``/model.22/`` in yolov8n). Its
  box branch regresses distributions over 16 bins (DFL) whose softmax expectation, and the
  class logits' sigmoid, are very sensitive to 8-bit steps; its decode (anchors, strides,
  concat of boxes in pixels with scores in [0, 1]) mixes ranges no single scale covers.
- calibration feeds the exact tensors evaluation and serving feed: the letterbox of
  :func:`driftloop.evaluation.detector.load_input` (shared, importable without torch), on images
  from the training data (never the evaluation split).

Command line::

    python -m driftloop.training.export --weights best.pt --imgsz 160 \\
        --calibration-dir DATASET/images/val --out-dir out/
    # prints the FP32 and INT8 paths with their SHA-256 (and JSON with --json)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from driftloop.evaluation.detector import IMAGE_SUFFIXES, load_input

log = logging.getLogger(__name__)

#: ONNX opset of the FP32 export (per-channel QDQ needs >= 13)
OPSET = 17
QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul")
#: file names of the two models (also their MLflow artifact names under ``onnx/``)
FP32_NAME = "model_fp32.onnx"
INT8_NAME = "model_int8.onnx"
DEFAULT_CALIBRATION_IMAGES = 64
_MODULE_SCOPE = re.compile(r"^/model\.(\d+)/")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- FP32 export


def export_onnx(
    weights_path: str | Path,
    imgsz: int,
    *,
    out_path: str | Path | None = None,
    opset: int = OPSET,
) -> Path:
    """Export Ultralytics weights to a static-shape ``[1, 3, imgsz, imgsz]`` FP32 ONNX model
    (opset ``opset``, no NMS in the graph; output ``[1, 4 + nc, N]``), simplified with onnxslim
    when it is installed. Returns the ONNX path (default: next to the weights, ``.onnx``)."""
    import importlib.util

    from driftloop.training import yolo_env

    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"weights {weights_path} not found")
    yolo_env.configure()
    from ultralytics import YOLO

    out_path = Path(out_path) if out_path else weights_path.with_suffix(".onnx")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Ultralytics writes next to the weights: export a private copy, then move the result.
    with tempfile.TemporaryDirectory(prefix="driftloop-export-") as tmp:
        local = Path(tmp) / "model.pt"
        shutil.copyfile(weights_path, local)
        produced = YOLO(str(local)).export(
            format="onnx",
            imgsz=imgsz,
            opset=opset,
            dynamic=False,
            simplify=importlib.util.find_spec("onnxslim") is not None,
            half=False,
            nms=False,
            batch=1,
            device="cpu",
            verbose=False,
        )
        if not produced or not Path(produced).is_file():
            raise RuntimeError(f"Ultralytics export of {weights_path} produced no ONNX file")
        shutil.move(str(produced), out_path)
    return out_path


# --------------------------------------------------------------------------- the head


def detection_head_prefix(model) -> str:
    """The name scope (``/model.<i>/``) of the detection head: the module whose nodes produce
    the graph's (first) output. Fails when the graph does not look like an Ultralytics export."""
    producers = {out: node for node in model.graph.node for out in node.output}
    output = model.graph.output[0].name
    # walk back through scope-less nodes (e.g. a final Identity or Transpose) to a scoped one
    frontier, seen = [output], set()
    while frontier:
        tensor = frontier.pop(0)
        node = producers.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        match = _MODULE_SCOPE.match(node.name)
        if match:
            return f"/model.{match.group(1)}/"
        frontier.extend(node.input)
    raise ValueError(
        f"cannot find the detection head: no '/model.<i>/' node produces output {output!r}"
    )


def detection_head_nodes(model, prefix: str | None = None) -> list[str]:
    """Names of every node of the detection head (see :func:`detection_head_prefix`)."""
    prefix = prefix or detection_head_prefix(model)
    return [node.name for node in model.graph.node if node.name.startswith(prefix)]


# --------------------------------------------------------------------------- calibration


def calibration_images(
    sources: Iterable[str | Path], *, limit: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0
) -> list[Path]:
    """Image files from folders and/or files, a seeded random sample of at most ``limit``."""
    found: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            found.extend(p for p in sorted(source.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
        elif source.is_file():
            found.append(source)
        else:
            raise FileNotFoundError(f"calibration source {source} does not exist")
    if not found:
        raise FileNotFoundError(f"no calibration images in {[str(s) for s in sources]}")
    if len(found) > limit:
        found = sorted(random.Random(seed).sample(found, limit))
    return found


class LetterboxCalibrationReader:
    """onnxruntime ``CalibrationDataReader``: one letterboxed image per call, exactly as
    :func:`driftloop.evaluation.detector.evaluate_model` preprocesses them."""

    def __init__(self, images: Sequence[str | Path], imgsz: int, input_name: str):
        self.images = [Path(p) for p in images]
        self.imgsz = imgsz
        self.input_name = input_name
        self._iter = iter(self.images)

    def get_next(self):
        path = next(self._iter, None)
        if path is None:
            return None
        tensor, _ = load_input(path, self.imgsz)
        return {self.input_name: tensor}

    def rewind(self) -> None:
        self._iter = iter(self.images)


# --------------------------------------------------------------------------- INT8


def quantize_int8(
    fp32_path: str | Path,
    calibration_images: Sequence[str | Path],
    imgsz: int,
    out_path: str | Path,
    *,
    exclude_head: bool = True,
    per_channel: bool = True,
    op_types: Sequence[str] = QUANTIZED_OP_TYPES,
) -> Path:
    """Static INT8 quantization (QDQ) of an FP32 ONNX detector; returns ``out_path``.

    The model is first pre-processed (shape inference, graph optimisation) as onnxruntime
    recommends; the detection head's nodes are looked up in the pre-processed graph."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not calibration_images:
        raise ValueError("quantize_int8 needs calibration images")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="driftloop-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        except Exception as err:  # pre-processing is an optimisation, not a requirement
            log.warning("quant_pre_process failed (%s); quantizing the model as exported", err)
            shutil.copyfile(fp32_path, prepared)
        model = onnx.load(str(prepared))
        input_name = model.graph.input[0].name
        excluded = detection_head_nodes(model) if exclude_head else []
        if exclude_head and not excluded:
            raise ValueError(f"no detection-head nodes found in {fp32_path}")
        log.info(
            "quantizing %s: op types %s, excluding %d head nodes under %s",
            fp32_path.name,
            list(op_types),
            len(excluded),
            detection_head_prefix(model) if exclude_head else "-",
        )
        reader = LetterboxCalibrationReader(calibration_images, imgsz, input_name)
        quantize_static(
            str(prepared),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=excluded,
            per_channel=per_channel,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return out_path


def quantization_report(fp32_path: str | Path, int8_path: str | Path) -> dict:
    """What was quantized: head scope, excluded/quantized node counts (for logs and tests)."""
    import onnx

    fp32 = onnx.load(str(fp32_path))
    int8 = onnx.load(str(int8_path))
    prefix = detection_head_prefix(fp32)
    dq_inputs = {node.output[0] for node in int8.graph.node if node.op_type == "DequantizeLinear"}
    # Conv/Gemm: quantized when the weight (input 1) is dequantized; MatMul: both operands.
    # (An FP32 node may still read a dequantized activation from a quantized producer.)
    quantized = [
        node.name
        for node in int8.graph.node
        if node.op_type in QUANTIZED_OP_TYPES
        and len(node.input) > 1
        and (
            all(i in dq_inputs for i in node.input[:2])
            if node.op_type == "MatMul"
            else node.input[1] in dq_inputs
        )
    ]
    return {
        "head_prefix": prefix,
        "head_nodes": len(detection_head_nodes(fp32, prefix)),
        "quantized_nodes": len(quantized),
        "quantized_in_head": [n for n in quantized if n.startswith(prefix)],
        "qdq_pairs": sum(1 for n in int8.graph.node if n.op_type == "QuantizeLinear"),
    }


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop.training.export",
        description="Export Ultralytics weights to ONNX FP32 and a static INT8 (QDQ) model.",
    )
    parser.add_argument("--weights", required=True, help="Ultralytics .pt weights")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument(
        "--calibration-dir",
        action="append",
        required=True,
        help="folder (searched recursively) or image file for INT8 calibration; repeatable",
    )
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    weights = Path(args.weights)
    if not weights.is_file():
        parser.error(f"--weights {weights} is not a file")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        images = calibration_images(args.calibration_dir, limit=args.calibration_images)
    except FileNotFoundError as err:
        parser.error(str(err))

    began = time.perf_counter()
    fp32 = export_onnx(weights, args.imgsz, out_path=out_dir / FP32_NAME, opset=args.opset)
    exported = time.perf_counter()
    int8 = quantize_int8(fp32, images, args.imgsz, out_dir / INT8_NAME)
    done = time.perf_counter()
    result = {
        "fp32": {"path": str(fp32), "sha256": sha256_file(fp32)},
        "int8": {"path": str(int8), "sha256": sha256_file(int8)},
        "calibration_images": len(images),
        "quantization": quantization_report(fp32, int8),
        "seconds": {"export": round(exported - began, 2), "quantize": round(done - exported, 2)},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"fp32 {result['fp32']['path']} sha256={result['fp32']['sha256']}")
        print(f"int8 {result['int8']['path']} sha256={result['int8']['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
