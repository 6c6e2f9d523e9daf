"""Every step of ``drift_monitor``, in order: run (the window) → validation (expectations,
partition_read, quarantine) → profiling (reference, sketch) → compare (stats) → verdict
(decision, history) → publish (report, tracking, metrics) → events (warning, approval)."""
