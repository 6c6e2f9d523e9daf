"""The steps of ``retrain_detector`` before the gate: plan, dataset snapshot, training, registration, evaluation, model card."""
