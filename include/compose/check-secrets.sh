#!/bin/sh
# Refuses placeholder secrets before a service of docker-compose.yaml starts.
#
#   check-secrets.sh VAR [VAR ...] [-- command [args ...]]
#
# Each VAR names an environment variable holding a secret. The script exits 1, naming every
# offending variable on stderr (never its value), when a value
#   - is empty or unset (compose's ${VAR:?} refuses only that),
#   - still holds a placeholder from .env.example (change-me, changeme, replace-me, ...),
#   - is a well-known default (admin, password, minioadmin, ...), or
#   - is shorter than DRIFTLOOP_MIN_SECRET_LENGTH characters (default 16).
# With `-- command ...` it then execs the command (a service's real entrypoint), so the check
# runs in the service's own container, with the values that service actually receives.
#
# POSIX sh only: it runs in the minio/mc, postgres, grafana, MLflow and Airflow images.
set -eu

min_length="${DRIFTLOOP_MIN_SECRET_LENGTH:-16}"
case "$min_length" in
    '' | *[!0-9]*)
        echo "check-secrets: DRIFTLOOP_MIN_SECRET_LENGTH must be a number, got '$min_length'" >&2
        exit 2
        ;;
esac

checked=0
failed=0
while [ "$#" -gt 0 ]; do
    name="$1"
    shift
    if [ "$name" = "--" ]; then
        break
    fi
    case "$name" in
        '' | [0-9]* | *[!A-Za-z0-9_]*)
            echo "check-secrets: '$name' is not an environment variable name" >&2
            exit 2
            ;;
    esac
    checked=$((checked + 1))
    # indirect expansion without eval of the value: the name was validated above
    eval "is_set=\${$name+x}"
    if [ -z "$is_set" ]; then
        echo "check-secrets: $name is not set (set it in .env)" >&2
        failed=1
        continue
    fi
    eval "value=\${$name}"
    lowered="$(printf '%s' "$value" | tr '[:upper:]' '[:lower:]')"
    case "$lowered" in
        '')
            echo "check-secrets: $name is empty (set it in .env)" >&2
            failed=1
            continue
            ;;
        *change-me* | *changeme* | *change_me* | *replace-me* | *replaceme* | *placeholder*)
            echo "check-secrets: $name still holds the .env.example placeholder: replace it" >&2
            failed=1
            continue
            ;;
        admin | password | secret | minioadmin | airflow | mlflow | postgres | root | test)
            echo "check-secrets: $name is a well-known default value: replace it" >&2
            failed=1
            continue
            ;;
    esac
    if [ "${#value}" -lt "$min_length" ]; then
        echo "check-secrets: $name is shorter than $min_length characters" >&2
        failed=1
    fi
done

if [ "$checked" -eq 0 ]; then
    echo "check-secrets: no variable named (usage: check-secrets.sh VAR... [-- command])" >&2
    exit 2
fi
if [ "$failed" -ne 0 ]; then
    echo "check-secrets: refusing to start; generate values with" \
        "python -c \"import secrets; print(secrets.token_urlsafe(32))\"" >&2
    exit 1
fi
echo "check-secrets: $checked secret(s) accepted"
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
