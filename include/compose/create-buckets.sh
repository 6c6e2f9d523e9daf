#!/bin/sh
# One-shot `create-buckets` service of docker-compose.yaml (minio/mc image: POSIX sh and
# coreutils only, no grep). Idempotent.
#
# Buckets: the data bucket is created with object locking (`mc mb --with-lock`, which MinIO
# allows only at creation and which turns versioning on): reports, snapshots, quarantined
# partitions and the ledger's audit anchors (audit/anchors/) are write-once evidence, and an
# overwritten or deleted object keeps its old versions. An existing bucket keeps its settings
# (versioning is still switched on). The MLflow artifact bucket is versioned too.
#
# One least-privilege user per service, never the MinIO root account; no user may delete a
# bucket, delete an object version, change versioning, locks or policies:
#   airflow  (DRIFTLOOP_S3_ACCESS_KEY): the data bucket only; reads everything, writes everything
#            but the inputs (inference/ and labeled/ are the serving side's), deletes nothing
#   mlflow   (MLFLOW_S3_ACCESS_KEY): the MLflow artifact bucket only (it proxies artifacts)
#   trainer  (TRAINER_S3_ACCESS_KEY): reads datasets/ of the data bucket, writes nothing (its
#            results go to MLflow)
set -eu

sh "${DRIFTLOOP_CHECK_SECRETS:-/opt/driftloop/check-secrets.sh}" \
    MINIO_ROOT_PASSWORD DRIFTLOOP_S3_SECRET_KEY MLFLOW_S3_SECRET_KEY TRAINER_S3_SECRET_KEY
: "${MINIO_ROOT_USER:?}" "${DRIFTLOOP_S3_ACCESS_KEY:?}" "${MLFLOW_S3_ACCESS_KEY:?}"
: "${TRAINER_S3_ACCESS_KEY:?}" "${DATA_BUCKET:?}" "${MLFLOW_BUCKET:?}"
MINIO_URL="${MINIO_URL:-http://minio:9000}"
policy_dir="$(mktemp -d)"
trap 'rm -rf "$policy_dir"' EXIT

mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

mc mb --ignore-existing --with-lock "local/$DATA_BUCKET"
mc mb --ignore-existing "local/$MLFLOW_BUCKET"
mc version enable "local/$DATA_BUCKET"
mc version enable "local/$MLFLOW_BUCKET"

# Read-only bucket actions every user needs on its own bucket(s).
list_actions='"s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"'
upload_actions='"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"'

cat > "$policy_dir/driftloop-airflow.json" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": [$list_actions],
     "Resource": ["arn:aws:s3:::$DATA_BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", $upload_actions],
     "Resource": ["arn:aws:s3:::$DATA_BUCKET/*"]},
    {"Effect": "Deny", "Action": ["s3:PutObject"],
     "Resource": ["arn:aws:s3:::$DATA_BUCKET/inference/*", "arn:aws:s3:::$DATA_BUCKET/labeled/*"]}
  ]
}
JSON

cat > "$policy_dir/driftloop-mlflow.json" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": [$list_actions],
     "Resource": ["arn:aws:s3:::$MLFLOW_BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:DeleteObject", $upload_actions],
     "Resource": ["arn:aws:s3:::$MLFLOW_BUCKET/*"]}
  ]
}
JSON

cat > "$policy_dir/driftloop-trainer.json" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation"],
     "Resource": ["arn:aws:s3:::$DATA_BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:ListBucket"],
     "Resource": ["arn:aws:s3:::$DATA_BUCKET"],
     "Condition": {"StringLike": {"s3:prefix": ["datasets/*"]}}},
    {"Effect": "Allow", "Action": ["s3:GetObject"],
     "Resource": ["arn:aws:s3:::$DATA_BUCKET/datasets/*"]}
  ]
}
JSON

provision() {  # user secret policy
    mc admin policy create local "$3" "$policy_dir/$3.json"
    mc admin user add local "$1" "$2"
    # attach fails when already attached: check first (no grep in the minimal mc image)
    user_info="$(mc admin user info local "$1")"
    case "$user_info" in
        *"$3"*) ;;
        *) mc admin policy attach local "$3" --user "$1" ;;
    esac
}

provision "$DRIFTLOOP_S3_ACCESS_KEY" "$DRIFTLOOP_S3_SECRET_KEY" driftloop-airflow
provision "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY" driftloop-mlflow
provision "$TRAINER_S3_ACCESS_KEY" "$TRAINER_S3_SECRET_KEY" driftloop-trainer

echo "create-buckets: $DATA_BUCKET (object lock) and $MLFLOW_BUCKET ready;" \
    "users $DRIFTLOOP_S3_ACCESS_KEY, $MLFLOW_S3_ACCESS_KEY, $TRAINER_S3_ACCESS_KEY"
