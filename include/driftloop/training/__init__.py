"""Training of the detector: the ``python -m driftloop.training.train`` entrypoint and its helpers.

Runs inside the training image (include/training/Dockerfile) or the local backend's own
virtualenv; torch and ultralytics never enter the Airflow environment. Keep this file free of
imports: ``driftloop.airflow.training_task`` is imported by DAG files at parse time.
"""
