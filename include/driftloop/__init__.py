"""driftloop: drift monitoring, retraining and gated promotion for a YOLO detector.

Submodules import their heavy dependencies lazily, so ``import driftloop`` stays cheap in
DAG files.
"""

__version__ = "0.1.0"
