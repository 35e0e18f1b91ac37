"""Artillery against Liveboard in one command: fixtures, npm install, run, report.

    .venv/bin/python tests/load/artillery/run.py --start-stack          # its own embedded stack
    .venv/bin/python tests/load/artillery/run.py --realtime-url http://127.0.0.1:8000 \\
        --auth-url http://127.0.0.1:8001 --boards-url http://127.0.0.1:8002   # a running one

Creates an organization, ``--users`` users, ``--boards`` boards with one card per user through
the public REST (as ``liveboard bench`` does), writes ``fixtures.csv`` next to a copy of
``scenario.yml`` in a temporary folder, installs Artillery 2 from npm into
``$TMPDIR/liveboard-artillery`` (once; never committed) and runs the scenario: each virtual
user connects, joins its board and moves its card ``--moves`` times each way. Bounded by
``--duration`` x ``--arrival-rate`` virtual users.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from liveboard.bench.stack import StackOptions, start_stack, stop_stack  # noqa: E402
from liveboard.bench.target import Fixtures, Target, credentials  # noqa: E402

HERE = Path(__file__).resolve().parent
NPM_FOLDER = Path(tempfile.gettempdir()) / "liveboard-artillery"
ARTILLERY = "artillery@2"


def install_artillery() -> Path:
    binary = NPM_FOLDER / "node_modules" / ".bin" / "artillery"
    if not binary.exists():
        NPM_FOLDER.mkdir(parents=True, exist_ok=True)
        (NPM_FOLDER / "package.json").write_text('{"name": "liveboard-artillery", "private": true}\n')
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")  # its browser engine is not used
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", ARTILLERY],
            cwd=NPM_FOLDER,
            env=env,
            check=True,
        )
    return binary


async def make_fixtures(target: Target, users: int, boards: int, path: Path) -> None:
    async with Fixtures(target) as fixtures:
        members = await fixtures.organization(users)
        made = [await fixtures.board(cards=-(-users // boards), columns=2) for _ in range(boards)]
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["token", "organization_id", "board_id", "card_id", "column_a", "column_b"])
            for index, user in enumerate(members):
                board = made[index % boards]
                card = board.cards[index // boards]
                writer.writerow([user.token, board.organization_id, board.id, card, *board.columns[:2]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start-stack", action="store_true")
    parser.add_argument("--realtime-url", default="http://127.0.0.1:8000")
    parser.add_argument("--auth-url", default="http://127.0.0.1:8001")
    parser.add_argument("--boards-url", default="http://127.0.0.1:8002")
    parser.add_argument("--jwt-secret")
    parser.add_argument("--issuer")
    parser.add_argument("--users", type=int, default=100, help="distinct users (one CSV row each)")
    parser.add_argument("--boards", type=int, default=5)
    parser.add_argument("--duration", type=int, default=20, help="seconds of arrivals")
    parser.add_argument("--arrival-rate", type=int, default=5, help="virtual users per second")
    parser.add_argument("--moves", type=int, default=10, help="round trips of the card per virtual user")
    args = parser.parse_args()
    if args.duration * args.arrival_rate > 5000:
        parser.error("keep it bounded: --duration x --arrival-rate must be at most 5000 virtual users")

    binary = install_artillery()
    stack = None
    workdir = Path(tempfile.mkdtemp(prefix="liveboard-artillery-run-"))
    try:
        if args.start_stack:
            stack, target = start_stack(StackOptions())
        else:
            secret, issuer = credentials(args.jwt_secret, args.issuer)
            target = Target(args.realtime_url, args.auth_url, args.boards_url, secret, issuer)
        asyncio.run(make_fixtures(target, args.users, args.boards, workdir / "fixtures.csv"))
        shutil.copy(HERE / "scenario.yml", workdir / "scenario.yml")
        env = dict(
            os.environ,
            ARTILLERY_DURATION=str(args.duration),
            ARTILLERY_ARRIVAL_RATE=str(args.arrival_rate),
            ARTILLERY_MOVES=str(args.moves),
            ARTILLERY_DISABLE_TELEMETRY="true",
        )
        done = subprocess.run(
            [
                str(binary),
                "run",
                "--target",
                target.realtime_url,
                "--output",
                str(workdir / "report.json"),
                "scenario.yml",
            ],
            cwd=workdir,
            env=env,
            check=False,
        )
        print(f"artillery report: {workdir / 'report.json'}")
        return done.returncode
    finally:
        if stack is not None:
            stop_stack(stack)


if __name__ == "__main__":
    sys.exit(main())
