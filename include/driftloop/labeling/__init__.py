"""The daily labeling queue and the import of the labels that come back.

``labeling_queue`` (DAG) picks, of each served day, the frames worth a label and writes them
as a write-once batch under ``labeling/{day}/`` (:mod:`.queue`): Label Studio tasks with the
served model's boxes as pre-annotations and YOLO txt (:mod:`.formats`). The pick is pure
(:mod:`.select`) on four per-frame signals (:mod:`.signals`) read from the day's inference
log, serving records and the drift reference (:mod:`.sources`, :mod:`.reference`).
``driftloop labels import`` (:mod:`.command`, :mod:`.imports`) turns a Label Studio export
of a batch into a labeled day, ``labeled/dt=D/``, with the queue's provenance per frame in
``frames.jsonl``.
"""
