"""Where a realtime connection's memory goes: tracemalloc growth per connection, by module.

    .venv/bin/python tests/load/memory_per_connection.py [--connections 1000] [--no-join] [--fast-path off]

Starts embedded NATS + Postgres + auth/boards/audit (``liveboard bench``'s stack), runs the
realtime app *in this process* with tracemalloc on, connects ``--connections`` sockets (joined to
boards of 100) from generator processes, waits for the server to go idle, and prints the
growth per connection grouped by file and by allocation site. ``liveboard bench capacity``
measures the RSS; this shows what it is made of (the RSS is larger: allocator overhead and
memory tracemalloc cannot see, such as C-level buffers).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from libs.common.devstack import free_port  # noqa: E402
from libs.common.settings import load_settings  # noqa: E402
from liveboard.bench.pool import AgentPool, split  # noqa: E402
from liveboard.bench.procstat import quiesce  # noqa: E402
from liveboard.bench.run import Deployment  # noqa: E402
from liveboard.bench.stack import StackOptions, start_stack, stop_stack  # noqa: E402
from liveboard.bench.target import Target  # noqa: E402

SITE_PACKAGES = str(Path(web.__file__).resolve().parents[1]) + "/"


def _where(frame: str) -> str:
    return frame.strip().replace(SITE_PACKAGES, "").replace(str(ROOT) + "/", "")


async def measure(target: Target, env: dict[str, str], args: argparse.Namespace) -> None:
    from services.realtime.app import Settings, create_app

    os.environ.update(env)
    os.environ.update(
        {
            "WEBSOCKET_RATE_LIMIT_CONNECTIONS": "1000000",
            "LOG_LEVEL": "warning",
            "REALTIME_FAST_PATH": "true" if args.fast_path == "on" else "false",
        }
    )
    app = create_app(load_settings(Settings, service_name="realtime"))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    local = Target(f"http://127.0.0.1:{port}", target.auth_url, target.boards_url, target.jwt_secret, target.issuer)
    deployment = Deployment(local, [os.getpid()])
    count = args.connections
    setup = await deployment.provision(members=count, movers=0, boards=max(1, count // 100), cards=1)
    specs = [setup.member_spec(i, setup.boards[min(i // 100, len(setup.boards) - 1)]) for i in range(count)]
    try:
        async with AgentPool(
            "liveboard.bench.agents:MemberAgent", 2, url=local.realtime_url, run_id=setup.run_id
        ) as pool:
            gc.collect()
            tracemalloc.start(args.frames)
            before = tracemalloc.take_snapshot()
            parts = split(count, pool.size)
            await pool.call(
                "connect",
                per_agent=[
                    {"members": specs[sum(parts[:i]) : sum(parts[: i + 1])], "join": not args.no_join}
                    for i in range(pool.size)
                ],
            )
            await asyncio.sleep(1)
            await quiesce([os.getpid()], below=0.2, timeout=120)  # this process also runs the clients' pings
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
    finally:
        await deployment.close()
        await runner.cleanup()
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(
        f"\ntraced growth: {total / count:,.0f} bytes per connection ({count} connections, "
        f"{'connected only' if args.no_join else 'joined to boards of 100'}, fast path {args.fast_path})\n"
    )
    print("bytes/conn  objects/conn  file")
    for stat in after.compare_to(before, "filename")[: args.top]:
        print(f"{stat.size_diff / count:10,.0f}  {stat.count_diff / count:12.1f}  {_where(stat.traceback.format()[0])}")
    print("\nbytes/conn  objects/conn  allocation site (innermost last)")
    for stat in after.compare_to(before, "traceback")[: args.top]:
        frames = [_where(line) for line in stat.traceback.format() if line.strip().startswith("File")]
        print(f"{stat.size_diff / count:10,.0f}  {stat.count_diff / count:12.1f}  {' <- '.join(reversed(frames))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--no-join", action="store_true")
    parser.add_argument("--fast-path", choices=("on", "off"), default="on")
    parser.add_argument("--frames", type=int, default=3, help="traceback depth per allocation site")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if not 1 <= args.connections <= 5000:
        parser.error("--connections must be between 1 and 5000 (tracemalloc is slow)")
    stack, target = start_stack(StackOptions())
    try:
        asyncio.run(measure(target, stack.env, args))
    finally:
        stop_stack(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
