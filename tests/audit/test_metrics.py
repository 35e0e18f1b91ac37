"""/metrics parses as Prometheus text and counts what the consumer did."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from libs.common.subjects import BOARD_EVENTS_STREAM, board_events

from .conftest import board_event, consumer_settled, count_rows, new_id, wait_until


async def test_metrics_families_and_values(audit_client, publisher, db):
    org, board = new_id("org"), new_id("board")
    events = [board_event(org, board, task_id=f"card-{n}") for n in range(3)]
    for envelope in events:
        await publisher.board(org, envelope)
    await publisher.board(org, events[0], msg_id=new_id("again"))  # a redelivery: duplicate
    await publisher.raw(board_events(org, board, "task_moved"), b"garbage")  # dead-lettered
    await wait_until(lambda: count_rows(db, org), lambda n: n == 3)
    await wait_until(lambda: consumer_settled(publisher.js, BOARD_EVENTS_STREAM, "audit-board-events"))

    async def families() -> dict:
        response = await audit_client.get("/metrics")
        assert response.status == 200
        return {family.name: family for family in text_string_to_metric_families(await response.text())}

    def value(found: dict, family: str, sample: str, **labels: str) -> float | None:
        for s in found[family].samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None

    board_stream = {"stream": BOARD_EVENTS_STREAM}
    # The lag gauges are refreshed every 0.2 s here; wait until both consumers have reported.
    found = await wait_until(
        families,
        lambda f: (
            "audit_consumer_lag_messages" in f
            and {s.labels["consumer"] for s in f["audit_consumer_lag_messages"].samples}
            == {"audit-board-events", "audit-security-events"}
        ),
    )
    assert {
        "audit_consumer_lag_messages",
        "audit_consumer_ack_pending_messages",
        "audit_events_stored",
        "audit_events_duplicate",
        "audit_events_dead_lettered",
        "audit_events_retried",
        "audit_insert_duration_seconds",
        "audit_rows_pruned",
        "liveboard_dependency_up",
    } <= set(found)
    assert value(found, "audit_events_stored", "audit_events_stored_total", **board_stream) == 3
    assert value(found, "audit_events_duplicate", "audit_events_duplicate_total", **board_stream) == 1
    assert value(found, "audit_events_dead_lettered", "audit_events_dead_lettered_total", **board_stream) == 1
    assert value(found, "audit_insert_duration_seconds", "audit_insert_duration_seconds_count", **board_stream) == 4
    assert (
        value(found, "audit_consumer_lag_messages", "audit_consumer_lag_messages", consumer="audit-board-events") == 0
    )
