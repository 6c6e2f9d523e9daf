"""Fault injection on the embedded stack: a loopback proxy in front of S3 and MLflow that a
test switches to refuse, reset, stall or answer 500 (:mod:`.proxy`), the services behind it
(:mod:`.services`), the invariants every case must keep (:mod:`.invariants`) and the harness
that runs each step of the DAGs under each fault, then recovers (:mod:`.harness`)."""

from driftloop_dev.faults.proxy import MODES, Fault, FaultProxy

__all__ = ["MODES", "Fault", "FaultProxy"]
