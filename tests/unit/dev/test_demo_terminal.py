"""The demo's terminal shows its story; library logs, warnings and child output go to its log."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_only_the_story_reaches_the_terminal(tmp_path):
    log_path = tmp_path / "logs" / "demo.log"
    code = textwrap.dedent(
        f"""
        import logging, subprocess, sys, warnings
        from pathlib import Path
        # a handler bound to stderr before the demo starts, as Airflow's and mlflow's are
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        from driftloop_dev.demo.terminal import emit_json, only_the_story, say

        with only_the_story(Path({str(log_path)!r})):
            say("story: writing the world")
            logging.getLogger("botocore.credentials").info("Found credentials in env")
            logging.getLogger("alembic.runtime.migration").info("Running upgrade")
            warnings.warn("a library warning")
            print("a stray print")
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child\\\\n')"])
            say("story: done")
        say("after")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["story: writing the world", "story: done", "after"]
    assert done.stderr == ""
    logged = log_path.read_text()
    for line in (
        "Found credentials in env",
        "Running upgrade",
        "a library warning",
        "a stray print",
        "child",
    ):
        assert line in logged, line
    assert "story:" not in logged


def test_json_mode_keeps_stdout_for_the_document(tmp_path):
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from driftloop_dev.demo.terminal import emit_json, only_the_story, say

        with only_the_story(Path({str(tmp_path / "demo.log")!r}), story_on_stderr=True):
            say("story line")
            print("library noise")
            emit_json({{"ok": True}})
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == '{\n  "ok": true\n}'
    assert done.stderr.strip() == "story line"


# -- the rollout's story: driven day by day, told with its evidence ----------------------------


class _Row:
    def __init__(self, payload):
        self.payload = payload


def _doc(sequence, stage, champion, subject=None, baseline=None, share=0.0, shadow_share=0.0):
    from driftloop.promotion.routing import RoutingDoc

    return RoutingDoc.from_dict(
        {
            "format": 1,
            "model": "driftloop-detector",
            "sequence": sequence,
            "stage": stage,
            "champion": champion,
            "subject": subject,
            "baseline": baseline,
            "share": share,
            "shadow_share": shadow_share,
            "rollout_id": None if stage == "serving" else f"rollout-{subject}-20261130T000000Z",
            "updated_at": "2026-11-30T00:00:00Z",
            "updated_by": f"test/{sequence}",
            "reason": "test",
        },
        "test",
    )


class _FakeGuard:
    """rollout_guard as the ledger and the routing document see it: each run judges the
    current document with the next scripted verdict."""

    def __init__(self, docs, actions):
        self.docs = list(docs)  # the document after each change
        self.actions = list(actions)
        self.current = self.docs.pop(0)
        self.rows = {}
        self.runs = 0

    def run(self, dag_id, conf):
        self.runs += 1
        run_id = f"manual__{self.runs}"
        action = self.actions.pop(0)
        comparison = {
            "verdict": "hold" if action == "hold" else "pass",
            "frames": 150,
            "labeled_frames": 40,
            "hours": 23.5,
            "reasons": [],
            "checks": [
                {
                    "name": "latency_p95_ratio",
                    "camera": "all",
                    "estimate": 1.02,
                    "low": 0.97,
                    "high": 1.08,
                    "status": "info",
                }
            ],
        }
        self.rows[f"{dag_id}/{run_id}/decide"] = _Row(
            {
                "action": action,
                "reason": "not enough evidence yet" if action == "hold" else "passed",
                "doc": self.current.to_dict(),
                "comparison": comparison,
            }
        )
        if action != "hold":
            self.current = self.docs.pop(0)
        return run_id, 1.0, None

    def settle(self, dag_id):
        pass

    def get(self, key):
        return self.rows.get(key)


def _world(guard, days):
    from driftloop_dev.demo.rollout import RolloutWorld

    class World(RolloutWorld):
        def routing(self):
            return guard.current

    written = []
    world = World(
        s3=None,
        bucket="b",
        book=guard,
        days=iter(days),
        base_frames=150,
        write_traffic=lambda day, n: written.append((day, n)) or n,
        serve=lambda day: {"day": day, "stage": guard.current.stage},
    )
    return world, written


def _policy():
    from driftloop.config.promotion_policy import (
        DEFAULT_PROMOTION_POLICY_PATH,
        load_promotion_policy,
    )

    return load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH)


def test_the_rollout_serves_a_day_per_stage_and_another_while_the_guard_holds(capsys):
    from driftloop_dev.demo.rollout import drive_rollout

    docs = [
        _doc(2, "shadow", "1", "2", "1", shadow_share=1.0),
        _doc(3, "canary", "1", "2", "1", share=0.05, shadow_share=0.05),
        _doc(4, "guard", "2", "2", "1", shadow_share=0.25),
        _doc(5, "serving", "2"),
    ]
    guard = _FakeGuard(docs, ["hold", "to_canary", "promote", "end_guard"])
    world, written = _world(guard, ["d1", "d2", "d3", "d4", "d5"])
    result = drive_rollout(guard, world, _policy())
    assert result["stopped"] is None
    assert result["days"] == ["d1", "d2", "d3", "d4"]
    assert [s["action"] for s in result["steps"]] == ["hold", "to_canary", "promote", "end_guard"]
    assert [s["stage"] for s in result["steps"]] == ["shadow", "shadow", "canary", "guard"]
    # each day sized for the document it is served under (production's minimums here)
    assert written == [("d1", 280), ("d2", 280), ("d3", 2800), ("d4", 560)]
    evidence = result["steps"][0]["evidence"]
    assert evidence["frames"] == 150
    assert evidence["checks"]["latency_p95_ratio"]["low"] == 0.97
    assert "rollout_guard manual__2: to_canary" in capsys.readouterr().out


def test_the_rollout_stops_and_says_why_when_a_stage_fails_or_keeps_holding(capsys):
    from driftloop_dev.demo.rollout import drive_rollout

    shadow = _doc(2, "shadow", "1", "2", "1", shadow_share=1.0)
    rejected = _FakeGuard([shadow, _doc(3, "serving", "1")], ["reject"])
    world, _ = _world(rejected, ["d1", "d2"])
    result = drive_rollout(rejected, world, _policy())
    assert result["stopped"].startswith("stage shadow did not to_canary: now #3 serving")
    holding = _FakeGuard([shadow], ["hold", "hold"])
    world, _ = _world(holding, ["d1", "d2", "d3"])
    result = drive_rollout(holding, world, _policy(), max_days=2)
    assert result["stopped"].startswith("stage shadow still holds after 2 days")
    assert result["days"] == ["d1", "d2"]
    nothing = _FakeGuard([_doc(1, "serving", "1")], [])
    world, _ = _world(nothing, ["d1"])
    assert drive_rollout(nothing, world, _policy())["stopped"].startswith("no challenger in shadow")
    assert "the rollout stopped" in capsys.readouterr().out


def _timeline():
    return [
        _doc(1, "serving", "1").to_dict(),
        _doc(2, "shadow", "1", "2", "1", shadow_share=1.0).to_dict(),
        _doc(3, "canary", "1", "2", "1", share=0.1, shadow_share=0.1).to_dict(),
        _doc(4, "guard", "2", "2", "1", shadow_share=0.25).to_dict(),
        _doc(5, "shadow", "2", "3", "2", shadow_share=1.0).to_dict(),
    ]


def _run(version, promote=True):
    return {"candidate": {"version": version}, "decision": {"promote": promote}}


def test_the_expected_outcomes_come_from_the_routing_history_and_the_aliases():
    from driftloop_dev.demo.summary import OUTCOME_TEXT, expected_outcomes

    checks = [
        {"decision": {"severity": "none"}, "event_id": None},
        {"decision": {"severity": "critical"}, "event_id": 1},
    ]
    happy = dict(
        first=_run("1"),
        checks=checks,
        retrain=_run("2"),
        monthly=_run("3"),
        timeline=_timeline(),
        aliases={"champion": "2", "challenger": "3", "previous-champion": "1"},
        ledger_ok=True,
    )
    outcomes = expected_outcomes(**happy)
    assert list(outcomes) == list(OUTCOME_TEXT)
    assert all(outcomes.values()), outcomes
    # a challenger rejected in canary: no promotion, the old champion stays
    rejected = expected_outcomes(
        **{**happy, "timeline": _timeline()[:3], "aliases": {"champion": "1"}}
    )
    assert rejected["shadow_to_canary"]
    assert not rejected["canary_to_champion"]
    assert not rejected["three_aliases"]
    # no monthly challenger: two aliases are not three
    assert not expected_outcomes(**{**happy, "monthly": None})["three_aliases"]
    assert not expected_outcomes(**{**happy, "ledger_ok": False})["ledger_ok"]
    late = [checks[1], checks[1]]
    assert not expected_outcomes(**{**happy, "checks": late})["no_drift_before"]


def test_the_rollout_is_told_with_its_numbers_and_the_demo_stages_are_named(tmp_path, capsys):
    from driftloop.config.promotion_policy import load_promotion_policy
    from driftloop_dev.demo.policy import write_demo_policy
    from driftloop_dev.demo.report import check_text, print_rollout, print_timeline

    assert check_text({"estimate": 1.021, "low": 0.97, "high": 1.081, "status": "info"}) == (
        "1.02 [0.97, 1.08] (info)"
    )
    assert (
        check_text(
            {"estimate": 0.031, "low": None, "high": None, "status": "not_enough_data"}, "+.3f"
        )
        == "+0.031 (not enough data)"
    )
    assert check_text(None) == "-"
    step = {
        "day": "2026-11-20",
        "served": {
            "sequence": 2,
            "stage": "shadow",
            "frames": 150,
            "paired": 150,
            "latency_p95_ms": 5.43,
        },
        "action": "to_canary",
        "reason": "stage shadow passed",
        "evidence": {
            "frames": 150,
            "labeled_frames": 40,
            "hours": 23.4,
            "checks": {
                "agreement_f1": {"estimate": 0.91, "low": 0.89, "high": 0.93, "status": "pass"}
            },
        },
    }
    demo = load_promotion_policy(write_demo_policy(tmp_path))
    print_rollout({"steps": [step], "stopped": None}, demo)
    print_timeline(_timeline(), "driftloop")
    out = capsys.readouterr().out
    assert "shorter than production's" in out
    assert "+demo" in out
    assert "-> rollout_guard: to_canary (stage shadow passed)" in out
    assert "150 paired frames (40 labeled) over 23.4 h" in out
    assert "agreement 0.91 [0.89, 0.93]" in out
    assert "#3  canary   v1        v2       v1           10%" in out
    assert "#5  shadow   v2        v3       v2          100%" in out
