"""The drift page's HTML: the events table, two inline SVG charts
(:mod:`driftloop.airflow.drift_charts`: drift scores, mAP), the Retrain / Ignore script.

Pure functions of the views' dicts (:mod:`driftloop.drift.history_views`), standard library
only: the page is self-contained (no CDN, no web font, no external script); every value from
the database is HTML-escaped. The buttons call Airflow's own REST API from the browser with
the signed-in user's session (the ``_token`` cookie, same origin), so a trigger from this
page is authorised and audited like one from the DAG's Trigger form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from driftloop.airflow.drift_charts import performance_chart, score_chart

RETRAIN_DAG = "retrain_detector"
IGNORE_DAG = "drift_ignore_event"
DRIFT_DAG = "drift_monitor"
#: the task of drift_monitor whose page has the "Drift report" button (driftloop_links)
REPORT_TASK = "log_to_mlflow"

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#1a202c}
h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e2e8f0;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f7fafc} .status{font-weight:600;padding:1px 6px;border-radius:4px}
.NEEDS_REVIEW{background:#fefcbf}.ACTIONED{background:#bee3f8}.RETRAINING_FAILED{background:#fed7d7}
.IGNORED,.ACCEPTED{background:#edf2f7}.RESOLVED{background:#c6f6d5}
.crit{color:#c53030;font-weight:600}.warn{color:#b7791f} .muted{color:#718096}
button{margin-right:4px;cursor:pointer} form.filters{margin:8px 0}
.charts{display:flex;flex-wrap:wrap;gap:16px} svg{background:#fff;border:1px solid #e2e8f0}
#result{margin:8px 0;font-size:13px}
"""

_SCRIPT = """
const BASE = JSON.parse(document.getElementById('drift-config').textContent).airflow_base;
async function triggerDag(dagId, conf, what) {
  const out = document.getElementById('result');
  delete out.dataset.state;
  delete out.dataset.runId;
  out.textContent = what + ': triggering ' + dagId + '…';
  const resp = await fetch(BASE + '/api/v2/dags/' + encodeURIComponent(dagId) + '/dagRuns', {
    method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'Accept': 'application/json'},
    body: JSON.stringify({logical_date: null, conf: conf}),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    out.textContent = what + ' refused by Airflow (HTTP ' + resp.status + '): ' +
      JSON.stringify(body.detail || body);
    out.dataset.state = 'error';
    return;
  }
  const link = document.createElement('a');
  link.href = BASE + '/dags/' + encodeURIComponent(dagId) + '/runs/' +
    encodeURIComponent(body.dag_run_id);
  link.textContent = dagId + ' ' + body.dag_run_id;
  out.textContent = what + ': started ';
  out.appendChild(link);
  out.append(' (' + body.state + ')');
  out.dataset.state = 'ok';
  out.dataset.runId = body.dag_run_id;
}
document.addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-action]');
  if (!b) return;
  const id = parseInt(b.dataset.event, 10);
  const note = document.querySelector('input[data-note="' + id + '"]').value.trim();
  if (b.dataset.action === 'retrain') {
    const reason = note || ('drift page: retrain for drift event ' + id);
    triggerDag('__RETRAIN_DAG__', {drift_event_id: id, reason: reason}, 'Retrain');
  } else if (note.length < 3) {
    const out = document.getElementById('result');
    out.textContent = 'Ignore drift event ' + id + ': say why in the note first';
    out.dataset.state = 'error';
  } else {
    triggerDag('__IGNORE_DAG__', {event_id: id, note: note}, 'Ignore');
  }
});
""".replace("__RETRAIN_DAG__", RETRAIN_DAG).replace("__IGNORE_DAG__", IGNORE_DAG)


def airflow_url(base: str, *parts: str) -> str:
    """A path in the Airflow UI (``base`` is Airflow's root path, "" at the host's root)."""
    return base + "/" + "/".join(quote(str(p), safe="") for p in parts)


def _features(event: Mapping[str, Any]) -> str:
    shown = ", ".join(
        f'<span class="{"crit" if f["level"] == "critical" else "warn"}">'
        f"{escape(f['feature'])}</span>"
        for f in event["top_features"]
    )
    more = event["n_features"] - len(event["top_features"])
    return shown + (f' <span class="muted">+{more}</span>' if more > 0 else "")


def event_row(event: Mapping[str, Any], base: str) -> str:
    eid = int(event["id"])
    window = event["window"]
    window_text = f"{window['start']} … {window['end']}" if window["end"] else "—"
    run = airflow_url(base, "dags", DRIFT_DAG, "runs", event["run_id"])
    report = airflow_url(base, "dags", DRIFT_DAG, "runs", event["run_id"], "tasks", REPORT_TASK)
    links = [f'<a href="{escape(run)}">drift check run</a>']
    if event.get("mlflow_run_id"):
        links.append(
            f'<a href="{escape(report)}" title="the task with the Drift report '
            f'button (MLflow run {escape(event["mlflow_run_id"])})">report</a>'
        )
    if event.get("resolved_model_version"):
        links.append(f"resolved by v{escape(str(event['resolved_model_version']))}")
    actions = ""
    if event["open"]:
        # no window.prompt: the UI embeds the page in a sandboxed iframe without modals
        actions = (
            f'<input data-note="{eid}" size="18" placeholder="why (kept in the ledger)" '
            f'aria-label="note for drift event {eid}">'
            f'<button data-action="retrain" data-event="{eid}">Retrain</button>'
            f'<button data-action="ignore" data-event="{eid}">Ignore</button>'
        )
    who = escape(event.get("actor") or "")
    note = escape(event.get("note") or "")
    return (
        f'<tr data-event-id="{eid}" data-status="{escape(event["status"])}">'
        f"<td>{eid}</td>"
        f'<td><span class="status {escape(event["status"])}">{escape(event["status"])}</span></td>'
        f"<td>{escape(event['kind'])}</td><td>{escape(event['severity'])}</td>"
        f"<td>{escape(window_text)}</td><td>{_features(event)}</td>"
        f"<td>{escape(str(event['created_at'])[:16])}</td>"
        f'<td>{who}<div class="muted">{note}</div></td>'
        f"<td>{' · '.join(links)}</td><td>{actions}</td></tr>"
    )


def _filters(statuses, kinds, status: str | None, kind: str | None) -> str:
    def select(name: str, options, chosen) -> str:
        opts = ['<option value="">all</option>'] + [
            f'<option value="{escape(o)}"{" selected" if o == chosen else ""}>{escape(o)}</option>'
            for o in options
        ]
        return f'<label>{name} <select name="{name}">{"".join(opts)}</select></label> '

    return (
        '<form class="filters" method="get">'
        + select("status", statuses, status)
        + select("kind", kinds, kind)
        + '<button type="submit">Filter</button></form>'
    )


def render_page(
    *,
    page: Mapping[str, Any],
    scores: Sequence[Mapping[str, Any]],
    performance: Mapping[str, Sequence[Mapping[str, Any]]],
    airflow_base: str,
    statuses: Sequence[str],
    kinds: Sequence[str],
    status: str | None = None,
    kind: str | None = None,
) -> str:
    """The whole page: filters, events table (with paging), the two charts, the script."""
    rows = "".join(event_row(e, airflow_base) for e in page["events"]) or (
        '<tr><td colspan="10" class="muted">no drift events</td></tr>'
    )
    limit, offset, total = page["limit"], page["offset"], page["total"]
    nav = []
    query = {k: v for k, v in (("status", status), ("kind", kind)) if v}
    if offset > 0:
        prev = urlencode({**query, "offset": max(offset - limit, 0), "limit": limit})
        nav.append(f'<a href="?{escape(prev)}">newer</a>')
    if offset + limit < total:
        nxt = urlencode({**query, "offset": offset + limit, "limit": limit})
        nav.append(f'<a href="?{escape(nxt)}">older</a>')
    shown = f"{offset + 1}–{offset + len(page['events'])} of {total}" if total else "0"
    config = json.dumps({"airflow_base": airflow_base}).replace("<", "\\u003c")
    head = "<th>id</th><th>status</th><th>kind</th><th>severity</th><th>window</th>"
    head += "<th>top features</th><th>opened</th><th>by / note</th><th>links</th><th></th>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Drift events · driftloop</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Drift events</h1>"
        + _filters(statuses, kinds, status, kind)
        + '<div id="result" role="status"></div>'
        f'<table id="events"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        f'<p class="muted">events {shown} {" · ".join(nav)}</p>'
        '<div class="charts">' + score_chart(scores) + performance_chart(performance) + "</div>"
        f'<script type="application/json" id="drift-config">{config}</script>'
        f"<script>{_SCRIPT}</script></body></html>"
    )
