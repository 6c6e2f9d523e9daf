"""Notifications: the Slack messages of the loop's events (:mod:`.messages`), the webhook's
retry policy (:mod:`.retry`) and what a message says, read from the ledger (:mod:`.payloads`).

No Airflow here: the notifier that sends them from tasks and callbacks is
:mod:`driftloop.airflow.notifiers`.
"""
