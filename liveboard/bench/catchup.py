"""``liveboard bench catchup``: a member misses M events, reconnects, and re-joins with ``since_seq``.

Each round: a member joins (noting ``seq``), disconnects; M moves are committed through boards'
REST meanwhile; the member reconnects and sends ``join_board {since_seq}``. Measured: the time
from that emit to the ack (the member is current when the ack arrives), whether the ack's
events are exactly ``since_seq+1 … seq`` (gapless, no duplicates) or a snapshot fallback, and
that the next live event continues the sequence. Also times a plain join (snapshot) of the board,
so ``--cards 5000`` measures a big board's load.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .eio import SocketIOClient
from .report import Report
from .run import Deployment

#: Commits in flight while the member is away (one board: they serialize on its row anyway).
COMMITTERS = 8


async def _commit(setup: Any, count: int) -> None:
    fixtures, board, mover = setup.fixtures, setup.boards[0], setup.movers[0]
    todo = list(range(count))

    async def committer() -> None:
        while todo:
            number = todo.pop()
            card = board.cards[number % len(board.cards)]
            await fixtures.move(mover, card, board.columns[number % 2])

    await asyncio.gather(*(committer() for _ in range(min(COMMITTERS, count))))


async def run(deployment: Deployment, args: Any) -> Report:
    report = Report("catchup")
    missed = args.missed
    setup = await deployment.provision(members=1, movers=1, boards=1, cards=max(10, args.cards))
    board = setup.boards[0]
    join = {"board_id": board.id, "organization_id": board.organization_id, "division_id": board.division_id}
    token = setup.members[0].token
    catchup_ms: list[float] = []
    reconnect_ms: list[float] = []
    snapshot_ms: list[float] = []
    gapless = fallbacks = live_ok = 0
    problems: list[str] = []
    for round_number in range(args.repeat):
        began = time.perf_counter()
        member = await SocketIOClient(deployment.realtime_url, token).connect()
        answer = await member.call("join_board", join, timeout=60)
        snapshot_ms.append((time.perf_counter() - began) * 1000)
        if not answer.get("ok"):
            raise RuntimeError(f"join_board failed: {answer}")
        since = answer["data"]["seq"]
        member.close()
        await _commit(setup, missed)

        live: list[int] = []

        def on_event(_client: Any, name: str, payload: Any, _at: int, live: list[int] = live) -> None:
            if name == "task_moved":
                live.append(payload["seq"])

        began = time.perf_counter()
        member = await SocketIOClient(deployment.realtime_url, token, on_event).connect()
        connected = time.perf_counter()
        answer = await member.call("join_board", {**join, "since_seq": since}, timeout=60)
        done = time.perf_counter()
        try:
            if not answer.get("ok"):
                problems.append(f"round {round_number}: {answer.get('error')}")
                continue
            data = answer["data"]
            catchup_ms.append((done - connected) * 1000)
            reconnect_ms.append((done - began) * 1000)
            if "events" in data:
                seqs = [event["seq"] for event in data["events"]]
                if seqs == list(range(since + 1, since + missed + 1)) and data["seq"] == since + missed:
                    gapless += 1
                else:
                    problems.append(
                        f"round {round_number}: got {len(seqs)} events {seqs[:3]}…{seqs[-3:]}, "
                        f"wanted {since + 1}…{since + missed}"
                    )
            else:
                fallbacks += 1
            await _commit(setup, 1)  # the first live event must continue the sequence
            for _ in range(100):
                if live:
                    break
                await asyncio.sleep(0.05)
            if live[:1] == [data["seq"] + 1]:
                live_ok += 1
            else:
                problems.append(f"round {round_number}: first live seq {live[:1]}, wanted {data['seq'] + 1}")
        finally:
            member.close()

    report.add("events missed per round", missed, "missed")
    report.add("rounds", args.repeat, "rounds")
    report.latency("re-join with since_seq → current", "catchup_ms", catchup_ms)
    report.latency("reconnect + re-join → current", "reconnect_ms", reconnect_ms)
    report.add("gapless catch-ups", f"{gapless} / {args.repeat}")
    report.add("snapshot fallbacks (history too long)", fallbacks, "snapshot_fallbacks")
    report.add("next live event continued the sequence", f"{live_ok} / {args.repeat}")
    report.data.update(gapless=gapless, live_continued=live_ok)
    report.latency(f"join with snapshot ({len(board.cards)} cards)", "snapshot_join_ms", snapshot_ms)
    report.add("problems", "; ".join(problems) or "none", "problems")
    return report
