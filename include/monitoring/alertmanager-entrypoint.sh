#!/bin/sh
# Entrypoint of the `alertmanager` service (docker-compose.yaml). POSIX sh: the
# prom/alertmanager image has only busybox.
#
# Renders include/monitoring/alertmanager.yml with the placeholder webhook URL (the `api_url`
# of both Slack receivers) replaced by $ALERTMANAGER_WEBHOOK_URL (literal replacement: any
# character in the URL is safe), then execs Alertmanager with the rendered file and any extra
# arguments.
#
#   usage: alertmanager-entrypoint.sh [alertmanager args...]
#   env:   ALERTMANAGER_WEBHOOK_URL   the Slack-compatible incoming webhook (optional)
#          ALERTMANAGER_TEMPLATE      config to render (/etc/alertmanager/alertmanager.yml)
#          ALERTMANAGER_RENDERED      where to write it (/alertmanager/alertmanager.rendered.yml)
#          ALERTMANAGER_BIN           binary to exec (/bin/alertmanager)
set -eu

PLACEHOLDER="http://alertmanager-webhook.invalid/driftloop"
TEMPLATE="${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}"
RENDERED="${ALERTMANAGER_RENDERED:-/alertmanager/alertmanager.rendered.yml}"
export ALERTMANAGER_WEBHOOK_URL="${ALERTMANAGER_WEBHOOK_URL:-$PLACEHOLDER}"

# An http(s) URL without the characters RFC 3986 never allows unescaped (quote, backslash,
# whitespace): those are also the only ones that could break the double-quoted YAML string.
case "$ALERTMANAGER_WEBHOOK_URL" in
    *'"'*|*'\'*|*' '*|*"$(printf '\t')"*) echo "ALERTMANAGER_WEBHOOK_URL: invalid character" >&2; exit 2 ;;
    http://?*|https://?*) ;;
    *) echo "ALERTMANAGER_WEBHOOK_URL must be an http(s) URL" >&2; exit 2 ;;
esac

awk -v placeholder="$PLACEHOLDER" '
    {
        line = $0; out = ""
        while ((i = index(line, placeholder)) > 0) {
            out = out substr(line, 1, i - 1) ENVIRON["ALERTMANAGER_WEBHOOK_URL"]
            line = substr(line, i + length(placeholder))
        }
        print out line
    }' "$TEMPLATE" > "$RENDERED.tmp"
mv "$RENDERED.tmp" "$RENDERED"

if [ "$ALERTMANAGER_WEBHOOK_URL" = "$PLACEHOLDER" ]; then
    echo "alertmanager: ALERTMANAGER_WEBHOOK_URL unset, notifications go to the placeholder" >&2
fi

exec "${ALERTMANAGER_BIN:-/bin/alertmanager}" --config.file="$RENDERED" "$@"
