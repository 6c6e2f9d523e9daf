"""The data contracts: the inference-log schema, the S3 layout with write-once objects, day windows."""
