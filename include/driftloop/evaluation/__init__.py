"""Scoring a detector, torch-free: ONNX decoding (detector), matching, COCO mAP, paired bootstrap, latency."""
