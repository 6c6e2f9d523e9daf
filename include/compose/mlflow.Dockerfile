# MLflow tracking server for docker-compose.yaml: PostgreSQL backend store, artifacts proxied
# to S3/MinIO (--serve-artifacts). Same MLflow version as requirements.txt (the Airflow side's
# client), plus the PostgreSQL driver and boto3 that the stock MLflow image lacks, and the
# basic-auth app's extra (mlflow[auth]); /mlflow-auth holds its user store (a volume).
FROM python:3.11-slim-bookworm

ARG MLFLOW_VERSION=3.17.2
RUN pip install --no-cache-dir \
        "mlflow[auth]==${MLFLOW_VERSION}" \
        "psycopg2-binary==2.9.13" \
        "boto3==1.44.5" \
 && useradd --create-home --uid 1000 mlflow \
 && mkdir /mlflow-auth && chown mlflow /mlflow-auth

USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
