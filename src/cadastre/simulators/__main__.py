"""``python -m cadastre.simulators reso --port 0 --records 50000 --seed 7``

Starts a simulator in this process, writes one line ``ready http://127.0.0.1:<port>`` to stdout
once it is listening (benchmarks and scripts wait for it), then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from cadastre.simulators.ratelimit import RateLimit
from cadastre.simulators.reso import DEFAULT_RATE_LIMIT, ResoSimulator
from cadastre.simulators.server import serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cadastre.simulators")
    vendors = parser.add_subparsers(dest="vendor", required=True)
    reso = vendors.add_parser("reso", help="a RESO Web API MLS (OAuth2 + OData Property)")
    reso.add_argument("--host", default="127.0.0.1")
    reso.add_argument("--port", type=int, default=0, help="0 picks a free port")
    reso.add_argument("--records", type=int, default=500)
    reso.add_argument("--seed", type=int, default=7)
    reso.add_argument("--page-size-max", type=int, default=1000)
    reso.add_argument("--token-ttl", type=float, default=3600.0)
    reso.add_argument("--bad-record-rate", type=float, default=0.0)
    reso.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULT_RATE_LIMIT.requests,
        metavar="N",
        help="requests per second on /odata (sliding window)",
    )
    reso.add_argument("--no-rate-limit", action="store_true")
    return parser


async def run(args: argparse.Namespace) -> None:
    limit = None if args.no_rate_limit else RateLimit(requests=args.rate_limit, per=1.0)
    simulator = ResoSimulator(
        records=args.records,
        seed=args.seed,
        rate_limit=limit,
        page_size_max=args.page_size_max,
        token_ttl=args.token_ttl,
        bad_record_rate=args.bad_record_rate,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(simulator.app, host=args.host, port=args.port) as running:
        sys.stdout.write(f"ready {running.url}\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(run(args))
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
