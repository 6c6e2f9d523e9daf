"""The audit trail: an append-only, hash-chained ledger of every decision that moves a model."""
