"""What DAG files import: Assets, Params, the HITL operator, extra links, the training task.

Airflow and the standard library only, cheap at parse time (ruff TID253 bans heavy modules here).
"""
