"""One scenario's fixture: the stack, an organization with six users on three boards, their
clients (three homed on each realtime replica) and the running workload; all stopped afterwards,
also when the test failed."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Tokens

from .stack import ChaosStack
from .workload import ChaosClient, Workload, board, new_user, organization

#: Where the last scenario's service, NATS and Postgres logs are kept.
LOGS = Path(__file__).resolve().parents[2] / "test-output" / "chaos-logs"


@dataclass
class Scenario:
    stack: ChaosStack
    workload: Workload
    org: str
    boards: list[str]
    tokens: Tokens
    session: aiohttp.ClientSession


@pytest.fixture
async def scenario(tmp_path: Path, tokens: Tokens) -> AsyncIterator[Scenario]:
    stack = await ChaosStack.start(tmp_path / "stack")
    session = aiohttp.ClientSession()
    workload: Workload | None = None
    try:
        users = [new_user(tokens, f"chaos{index}") for index in range(6)]
        org = await organization(session, stack.url("auth"), tokens, users)
        boards = [await board(session, stack.url("boards"), org, users[0]) for _ in range(3)]
        replicas = [stack.url("realtime-1"), stack.url("realtime-2")]
        clients = [
            ChaosClient(
                f"c{index}-{uuid.uuid4().hex[:4]}",
                user,
                replicas if index % 2 == 0 else replicas[::-1],
                dict.fromkeys(boards, org),
            )
            for index, user in enumerate(users)
        ]
        workload = Workload(clients, [user.id for user in users])
        workload.start()
        yield Scenario(stack, workload, org, boards, tokens, session)
    finally:
        if workload is not None:
            await workload.stop()
        await session.close()
        await stack.close()
        # pytest keeps only its last few temp roots (shared with everyone's runs): keep the logs.
        shutil.rmtree(LOGS, ignore_errors=True)
        shutil.copytree(stack.root, LOGS, ignore=shutil.ignore_patterns("jetstream", "nats-image-*"))
