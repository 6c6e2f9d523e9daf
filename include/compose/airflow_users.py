"""Writes SimpleAuthManager's password file from .env: one account per person, no shared admin.

Run by include/compose/airflow-init.sh (``python airflow_users.py``) with

* ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS``: ``alice:admin,bob:op,carol:viewer`` (what the
  API server reads; roles of Airflow 3's SimpleAuthManager: viewer < user < op < admin);
* ``AIRFLOW_USER_PASSWORDS``: ``alice:<password>,bob:<password>,...``: exactly one per user;
* ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE``: where the file goes.

Why: the approver of a promotion recorded in the ledger is the Airflow user who answered the
approval, so it must name a person. Shared account names (``admin``, ``airflow``, ``root`` ...)
are refused, as are placeholder or short passwords. The file is rewritten from scratch every
time: a user removed from .env loses access on the next ``docker compose up``.

Exit status 1 with a message naming the variable and user on any problem; no password is ever
printed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping

USERS_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
PASSWORDS_VAR = "AIRFLOW_USER_PASSWORDS"
FILE_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
ROLES = ("viewer", "user", "op", "admin")
#: account names that belong to nobody in particular
SHARED_NAMES = frozenset({"admin", "administrator", "airflow", "root", "user", "operator", "test"})
MIN_PASSWORD_LENGTH = 16
_PLACEHOLDER = re.compile(r"change[-_]?me|replace[-_]?me|placeholder", re.IGNORECASE)
_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")


class UsersError(ValueError):
    """A bad user list or password list; the message names the variable and the user."""


def parse_users(value: str) -> dict[str, str]:
    """``{username: role}`` from ``alice:admin,bob:op``."""
    users: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, role = item.partition(":")
        name, role = name.strip(), role.strip().lower()
        if not sep or not name or not role:
            raise UsersError(f"{USERS_VAR}: {item!r} is not user:role")
        if not _USERNAME.match(name):
            raise UsersError(
                f"{USERS_VAR}: user name {name!r} must be lower case letters, digits, '.', '_' "
                "or '-' (a person's login, e.g. alice or a.smith)"
            )
        if name in SHARED_NAMES:
            raise UsersError(
                f"{USERS_VAR}: {name!r} is a shared account name; give every person their own "
                "user (the approver recorded in the ledger must name a person)"
            )
        if role not in ROLES:
            raise UsersError(f"{USERS_VAR}: user {name!r} has role {role!r}; roles: {ROLES}")
        if name in users:
            raise UsersError(f"{USERS_VAR}: user {name!r} is listed twice")
        users[name] = role
    if not users:
        raise UsersError(f"{USERS_VAR}: no users (e.g. alice:admin,bob:op,carol:viewer)")
    if "admin" not in users.values():
        raise UsersError(f"{USERS_VAR}: at least one user needs the admin role")
    return users


def parse_passwords(value: str, users: Mapping[str, str]) -> dict[str, str]:
    """``{username: password}`` from ``alice:pw,bob:pw``, one for every user and no other."""
    passwords: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, password = item.partition(":")
        name = name.strip()
        if not sep:
            raise UsersError(f"{PASSWORDS_VAR}: an entry for {name!r} is not user:password")
        if name not in users:
            raise UsersError(f"{PASSWORDS_VAR}: {name!r} is not in {USERS_VAR}")
        if name in passwords:
            raise UsersError(f"{PASSWORDS_VAR}: user {name!r} is listed twice")
        if _PLACEHOLDER.search(password):
            raise UsersError(f"{PASSWORDS_VAR}: the password of {name!r} is a placeholder")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UsersError(
                f"{PASSWORDS_VAR}: the password of {name!r} is shorter than "
                f"{MIN_PASSWORD_LENGTH} characters"
            )
        passwords[name] = password
    missing = sorted(set(users) - set(passwords))
    if missing:
        raise UsersError(f"{PASSWORDS_VAR}: no password for {', '.join(missing)}")
    return passwords


def write_password_file(path: str, passwords: Mapping[str, str]) -> None:
    """Atomically replace the file; group-readable only (the containers run as uid:0)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
    with os.fdopen(fd, "w") as fh:
        json.dump(dict(passwords), fh)
        fh.write("\n")
    os.chmod(tmp, 0o660)
    os.replace(tmp, path)


def main(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        for name in (USERS_VAR, PASSWORDS_VAR, FILE_VAR):
            if not env.get(name):
                raise UsersError(f"{name} is not set (set it in .env)")
        users = parse_users(env[USERS_VAR])
        passwords = parse_passwords(env[PASSWORDS_VAR], users)
    except UsersError as err:
        print(f"airflow_users: {err}", file=sys.stderr)
        return 1
    write_password_file(env[FILE_VAR], passwords)
    summary = ", ".join(f"{name} ({role})" for name, role in users.items())
    print(f"airflow_users: password file written for {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
