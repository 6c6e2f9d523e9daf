"""The session's migrated Airflow metadata DB has what the DAGs need to be scheduled."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_the_gpu_pool_exists_once(stack):
    from airflow.models.pool import Pool

    from driftloop_dev.stack import POOLS, ensure_pools

    pool = Pool.get_pool("gpu")
    assert pool is not None
    assert pool.slots == POOLS["gpu"][0]
    conn = stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert ensure_pools(stack.env, Path(conn.removeprefix("sqlite:///"))) == []  # idempotent
