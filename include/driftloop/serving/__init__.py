"""The reference batch scorer: what serving does to a day of frames, with real model outputs.

``driftloop serve-batch --day D`` (:mod:`.command`) loads the versions the routing document
(``rollout/routing.json``) needs by their MLflow aliases (:mod:`.models`), scores the day's
frames (``frames/dt=D/``) in order (:mod:`.scorer`: image features from the pixels
(:mod:`.features`), detections, an embedding from the model (:mod:`.embedding`), latency) and
writes the day's inference log (the contract of :mod:`driftloop.contracts.schema`) and its
serving records (:mod:`.records`), then ``_SUCCESS`` (:mod:`.batch`). Runtime side: numpy,
PIL, pyarrow and onnxruntime, never torch.
"""
