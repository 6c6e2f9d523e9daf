#!/bin/sh
# One-shot `create-buckets` service of docker-compose.yaml (minio/mc image: POSIX sh and
# coreutils only, no grep).
# Idempotent: creates the data and MLflow buckets, turns on versioning of the data bucket
# (reports, snapshots and quarantined partitions are write-once evidence), and provisions the
# application user that Airflow and the MLflow server use instead of the MinIO root account,
# limited to those two buckets.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${DRIFTLOOP_S3_ACCESS_KEY:?}" "${DRIFTLOOP_S3_SECRET_KEY:?}"
: "${DATA_BUCKET:?}" "${MLFLOW_BUCKET:?}"
MINIO_URL="${MINIO_URL:-http://minio:9000}"
POLICY=driftloop-app

mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

mc mb --ignore-existing "local/$DATA_BUCKET"
mc mb --ignore-existing "local/$MLFLOW_BUCKET"
mc version enable "local/$DATA_BUCKET"

policy_file=/tmp/driftloop-app-policy.json
cat > "$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketVersions",
                 "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$DATA_BUCKET", "arn:aws:s3:::$MLFLOW_BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$DATA_BUCKET/*", "arn:aws:s3:::$MLFLOW_BUCKET/*"]
    }
  ]
}
JSON
mc admin policy create local "$POLICY" "$policy_file"
rm -f "$policy_file"

mc admin user add local "$DRIFTLOOP_S3_ACCESS_KEY" "$DRIFTLOOP_S3_SECRET_KEY"
# attach fails when already attached: check first (no grep in the minimal mc image)
user_info="$(mc admin user info local "$DRIFTLOOP_S3_ACCESS_KEY")"
case "$user_info" in
    *"$POLICY"*) ;;
    *) mc admin policy attach local "$POLICY" --user "$DRIFTLOOP_S3_ACCESS_KEY" ;;
esac

echo "create-buckets: $DATA_BUCKET and $MLFLOW_BUCKET ready, user $DRIFTLOOP_S3_ACCESS_KEY -> $POLICY"
