"""``python -m driftloop.ledger verify|show``: kept because the training image, runbooks and the
README call it by this name. The ledger itself is :mod:`driftloop.audit.ledger`."""

from driftloop.audit.ledger import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
