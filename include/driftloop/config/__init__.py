"""Settings (``DRIFTLOOP_*``) and the two versioned policies (drift, promotion): pydantic models and their YAML."""
