"""How long each DAG file takes to parse, the way Airflow's DAG processor parses it.

The DAG processor pre-imports the ``airflow.*`` modules a DAG file names before it parses the
file (``[dag_processor] parsing_pre_import_modules``), so the cost that belongs to the file is
what is left: its own code and what ``driftloop`` pulls in. Each file is parsed in a fresh
interpreter: pre-import its Airflow modules, then time ``exec`` of the file, several times
(the best run is reported; a first parse in a fresh process is what the processor pays).

Run: ``.venv/bin/python bench/dag_parse_time.py``. Target: ≤ 0.3 s per file, and no heavy
library (boto3, pandas, mlflow, …) imported at parse time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = [
    "boto3",
    "botocore",
    "pandas",
    "numpy",
    "pyarrow",
    "mlflow",
    "evidently",
    "great_expectations",
    "onnxruntime",
    "kubernetes",
    "torch",
    "ultralytics",
    "sqlalchemy",
    "scipy",
]

# Runs in the child: pre-import the file's Airflow modules as the DAG processor does, then
# time the parse of the file itself and list the heavy top-level packages it added.
CHILD = r"""
import importlib, importlib.util, json, sys, time
from airflow.utils.file import iter_airflow_imports
path = sys.argv[1]
for name in iter_airflow_imports(path):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
before = set(sys.modules)
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
seconds = time.perf_counter() - start
added = {name.split(".")[0] for name in set(sys.modules) - before}
print(json.dumps({"seconds": seconds, "added": sorted(added)}))
"""


def parse_once(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process parses per file")
    args = parser.parse_args()
    summary = {}
    for path in sorted((REPO / "dags").glob("*.py")):
        runs = [parse_once(path) for _ in range(args.repeat)]
        best = min(r["seconds"] for r in runs)
        heavy = sorted(set(runs[0]["added"]) & set(HEAVY))
        print(f"{path.name:28s} best {best:.3f} s of {args.repeat}; heavy at parse: {heavy or '-'}")
        summary[f"{path.stem}_s"] = round(best, 3)
        summary[f"{path.stem}_heavy"] = len(heavy)
    print("summary: " + " ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
