"""Moving the champion: the gate, the MLflow registry and its aliases, retention, rollback."""
