"""``python -m cadastre.simulators reso --port 0 --records 50000 --seed 7``

Starts a simulator in this process, writes one line ``ready http://127.0.0.1:<port>`` to stdout
once it is listening (benchmarks and scripts wait for it), then serves until SIGTERM or SIGINT.
``--faults '<FaultProfile JSON>'``, ``--rate-limit N[/SECONDS]`` (sliding window) and
``--rate-limit-headers x-ratelimit|ietf`` set what ``/admin/faults`` and ``/admin/rate-limit``
can change later.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import orjson

from cadastre.simulators.faults import FaultProfile
from cadastre.simulators.ratelimit import RATE_LIMIT_HEADERS, RateLimit
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
        type=_rate_limit,
        default=DEFAULT_RATE_LIMIT,
        metavar="N[/SECONDS]",
        help="at most N requests on /odata in any SECONDS (default 1) seconds: a sliding window",
    )
    reso.add_argument("--no-rate-limit", action="store_true")
    reso.add_argument(
        "--rate-limit-headers",
        choices=RATE_LIMIT_HEADERS,
        default=None,
        help="tell clients their budget in X-RateLimit-* or IETF draft RateLimit-* headers",
    )
    reso.add_argument(
        "--faults",
        type=_faults,
        default=None,
        metavar="JSON",
        help='a fault profile, e.g. \'{"error_rate": 0.1, "seed": 3}\'',
    )
    return parser


def _rate_limit(text: str) -> RateLimit:
    requests, slash, per = text.partition("/")
    try:
        return RateLimit(requests=int(requests), per=float(per) if slash else 1.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"N or N/SECONDS, N >= 1 and SECONDS > 0: {exc}") from None


def _faults(text: str) -> FaultProfile:
    try:
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a JSON object of FaultProfile fields")
        return FaultProfile.from_json(data)
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise argparse.ArgumentTypeError(str(exc)) from None


async def run(args: argparse.Namespace) -> None:
    limit = None if args.no_rate_limit else args.rate_limit
    simulator = ResoSimulator(
        records=args.records,
        seed=args.seed,
        rate_limit=limit,
        page_size_max=args.page_size_max,
        token_ttl=args.token_ttl,
        bad_record_rate=args.bad_record_rate,
        faults=args.faults,
        rate_limit_headers=args.rate_limit_headers,
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
