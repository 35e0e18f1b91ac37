"""``liveboard bench soak``: a short real run with its own stack and faults ends with every invariant
held and the summary table; the invariant checks catch what they are for; a broken one makes
the exit status non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liveboard.bench.invariants import Check, Verdict, _acked_committed, _applied_once, _no_refusals
from liveboard.bench.soak import render, summarize
from liveboard.bench.workload import Op, User, Workload, WorkloadClient
from tests.conftest import ISSUER, JWT_SECRET, ROOT


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_short_soak_with_faults_holds_every_invariant(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "liveboard",
            "bench",
            "soak",
            "--start-stack",
            "--seconds",
            "20",
            "--fault-every",
            "5",
            "--clients",
            "4",
            "--boards",
            "2",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    table = done.stdout
    for row in ("ops attempted", "ops acked ok", "ops retried", "faults injected", "ready after", "result"):
        assert row in table, table
    assert "all invariants held" in table and "BROKEN" not in table, table
    result = json.loads(table.strip().splitlines()[-1])
    assert result == json.loads(out.read_text())
    assert result["mode"] == "soak" and result["held"] and result["own_stack"]
    assert result["acked"] > 50 and result["ops"] >= result["acked"]
    assert len(result["faults"]) >= 2  # kill -9 boards, then a realtime replica, ...
    assert [f["fault"] for f in result["faults"][:2]] == ["kill_boards", "kill_realtime_1"]
    assert all(f["ready_s"] is not None and f["ready_s"] < 60 for f in result["faults"])
    assert result["events"] == result["audited"] > 0
    assert {c["key"] for c in result["invariants"]} >= {
        "acked_committed",
        "seq_gapless",
        "applied_once",
        "clients_match",
        "audit_once",
        "chain_verifies",
    }
    assert all(c["held"] for c in result["invariants"])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_soak_against_a_running_deployment_injects_nothing_and_checks_everything(bench_stack, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "liveboard",
            "bench",
            "soak",
            "--seconds",
            "6",
            "--clients",
            "3",
            "--boards",
            "2",
            "--realtime-url",
            bench_stack.realtime.url,
            "--auth-url",
            bench_stack.auth.url,
            "--boards-url",
            bench_stack.boards.url,
            "--audit-url",
            bench_stack.audit.url,
            "--jwt-secret",
            JWT_SECRET,
            "--issuer",
            ISSUER,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "none (not a stack of ours)" in done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["held"] and not result["own_stack"] and result["faults"] == []
    assert result["acked"] > 10 and result["events"] == result["audited"]


# --- the checks catch what they are for (no stack) ----------------------------------------------


def _workload(*ops: Op) -> Workload:
    client = WorkloadClient("c0", User("u0", "u0@example.com", "t"), ["http://127.0.0.1:1"], {"b": "org"})
    workload = Workload([client], ["u0"])
    workload.ops.extend(ops)
    return workload


def _op(op_id: str, event: str = "task_moved", **result: object) -> Op:
    op = Op(op_id, "c0", "u0", event, "b", {})
    op.outcome, op.result = "ok", dict(result)
    return op


def _event(seq: int, op_id: str | None, event_type: str = "task_moved") -> dict[str, object]:
    return {"seq": seq, "event_id": f"e{seq}", "event_type": event_type, "correlation_id": op_id}


def test_an_acked_op_whose_event_is_not_committed_is_reported() -> None:
    events = {"b": [_event(1, None, "board_created"), _event(2, "op-1")]}
    fine, lost, elsewhere = Check("acked_committed"), Check("acked_committed"), Check("acked_committed")
    _acked_committed(fine, _workload(_op("op-1", event_id="e2", seq=2)), events)
    _acked_committed(lost, _workload(_op("op-2", event_id="e9", seq=3)), events)
    _acked_committed(elsewhere, _workload(_op("op-3", event_id="e2", seq=2)), events)
    assert fine.held
    assert lost.count == 1 and "op-2" in lost.problems[0]
    assert elsewhere.count == 1 and "op-1" in elsewhere.problems[0]  # seq 2 is another op's


def test_an_op_applied_twice_is_reported() -> None:
    once = {"b": [_event(1, "op-1"), _event(2, "op-1", "column_rebalanced"), _event(3, "op-2")]}
    twice = {"b": [_event(1, "op-1"), _event(2, "op-2"), _event(3, "op-1")]}
    workload = _workload(_op("op-1"), _op("op-2"))
    held, broken = Check("applied_once"), Check("applied_once")
    _applied_once(held, workload, once)
    _applied_once(broken, workload, twice)
    assert held.held
    assert broken.count == 1 and "op-1" in broken.problems[0]


def test_refused_and_unanswered_ops_are_reported() -> None:
    refused, unanswered, deleted = _op("op-1"), _op("op-2"), _op("op-3")
    refused.outcome, unanswered.outcome, deleted.outcome = "internal", None, "not_found"
    check = Check("no_refusals")
    _no_refusals(check, _workload(refused, unanswered, deleted))
    assert check.count == 2


def test_a_broken_invariant_is_in_the_table_and_the_result() -> None:
    workload = _workload(_op("op-1", event_id="e2", seq=2))
    broken = Check("seq_gapless")
    broken.fail("b: seq 3 at position 2 of 3")
    verdict = Verdict([Check("acked_committed"), broken], events=3, audited=3)
    fault = {"fault": "kill_boards", "at_s": 5.0, "in_flight": 1, "what": "kill -9", "ready_s": 0.7, "_at": 0.0}
    result = summarize(workload, verdict, [fault], 10.0, 10.0, 2, 1, True)
    assert not result["held"]
    rows = dict(render(result).rows)
    assert rows["invariant: seq 1..N on every board"] == "BROKEN (1)"
    assert rows["invariant: every acked op is committed (its event, its seq, its id)"] == "held"
    assert rows["result"].endswith("exit status 1")
    assert rows["faults injected"] == "1 (kill_boards x1)"


def test_the_soak_section_of_reliability_md_is_rendered_and_kept() -> None:
    from tests.chaos.report import kept_soak, render, render_soak

    workload = _workload(_op("op-1", event_id="e2", seq=2))
    fault = {"fault": "kill_boards", "at_s": 60.0, "in_flight": 1, "what": "kill -9 boards, restarted"}
    result = summarize(
        workload,
        Verdict([Check("seq_gapless")], 2, 2),
        [{**fault, "ready_s": 0.7, "_at": 0.0}],
        1800.0,
        1800.0,
        2,
        3,
        True,
    )
    result.update(command=".venv/bin/liveboard bench soak --start-stack --minutes 30", fault_every_s=60.0)
    section = render_soak(result)
    assert "## Soak: 30 minutes of mixed traffic with faults" in section
    assert ".venv/bin/liveboard bench soak --start-stack --minutes 30" in section
    assert "| `kill_boards` (kill -9 boards, restarted) | 1 | 0.70 / 0.70 s |" in section
    assert "**Result: every invariant held.**" in section
    chaos = {"faults": [], "workload": {"ops": 0, "outcomes": {}, "retried": 0, "reconnects": 0, "by_type": {}}}
    page = render({**chaos, "seconds": 1.0}, section)
    assert kept_soak(page) == section  # regenerating the chaos table keeps the soak section
    assert page.index("## Soak") < page.index("## What we do not survive")
