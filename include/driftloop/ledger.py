"""``python -m driftloop.ledger verify|show``: kept because the training image, runbooks and the
README call it by this name; it is ``driftloop ledger …`` (:mod:`driftloop.cli`). The ledger
itself is :mod:`driftloop.audit.ledger`."""

from driftloop.cli import ledger_main as main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
