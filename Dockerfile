# syntax=docker/dockerfile:1
# Airflow image for driftloop (docker-compose.yaml: api-server, scheduler, dag-processor,
# triggerer, airflow-init). The training code does NOT live here: torch and ultralytics have
# their own image (include/training/Dockerfile) that the KubernetesPodOperator runs.
#
#   docker build -t driftloop-airflow:dev .
FROM apache/airflow:3.3.2-python3.11

USER airflow
WORKDIR /opt/airflow

# 1. Third-party dependencies. requirements.txt is a complete lock (uv pip compile of
#    requirements.in, apache-airflow==3.3.2 included), so no Airflow constraints file is used;
#    pinning apache-airflow to the image's own version makes pip fail rather than silently
#    upgrade or downgrade Airflow if the two ever disagree.
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt \
 && python -c "import psycopg2, airflow.providers.amazon, airflow.providers.cncf.kubernetes, mlflow"

# 2. The driftloop package (include/driftloop), installed in editable mode so that the
#    ./include bind mount of docker-compose.yaml is what actually runs during development.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
 && python -c "import driftloop, driftloop.config.settings"

# 3. DAGs and plugins (also bind-mounted by docker-compose.yaml for development).
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/

# SimpleAuthManager password file lives here (named volume `airflow-auth`); group 0 writable
# because the containers run as ${AIRFLOW_UID}:0.
RUN mkdir -p /opt/airflow/auth && chmod 0770 /opt/airflow/auth
