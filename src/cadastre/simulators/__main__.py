"""``python -m cadastre.simulators reso --port 0 --records 50000 --seed 7 [--dialect mlsgrid]``, or
``python -m cadastre.simulators auth --port 0 --rotation single_use --token-ttl 1800``, or
``python -m cadastre.simulators rets --port 0 --max-rows 100 --ignore-offset``, or
``python -m cadastre.simulators buildium --port 0 --units 40 --seed 7``

Starts a simulator in this process, writes one line ``ready http://127.0.0.1:<port>`` to stdout
once it is listening (benchmarks and scripts wait for it), then serves until SIGTERM or SIGINT.
``--faults '<FaultProfile JSON>'``, ``--rate-limit N[/SECONDS]`` (sliding window) and
``--rate-limit-headers x-ratelimit|ietf`` set what ``/admin/faults`` and ``/admin/rate-limit``
can change later (``auth`` has no rate limit unless one is given). ``reso --dialect NAME`` picks
a regional dialect (its page sizes, rate-limit windows and token lifetime are the defaults of
``--page-size-max``, ``--rate-limit`` and ``--token-ttl``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING, Literal

import orjson

from cadastre.simulators.auth import DEFAULT_REDIRECT_URI, ROTATIONS, AuthSettings, AuthSimulator
from cadastre.simulators.buildium import BuildiumSimulator
from cadastre.simulators.faults import FaultProfile
from cadastre.simulators.quickbooks import DEFAULT_REALM, QuickBooksSimulator
from cadastre.simulators.ratelimit import RATE_LIMIT_HEADERS, RateLimit
from cadastre.simulators.reso import ResoSimulator, dialect_names, load_dialect
from cadastre.simulators.rets import RetsSimulator
from cadastre.simulators.server import serve

if TYPE_CHECKING:
    from cadastre.simulators.base import Simulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cadastre.simulators")
    vendors = parser.add_subparsers(dest="vendor", required=True)
    reso = vendors.add_parser("reso", help="a RESO Web API MLS (OAuth2 + OData Property)")
    reso.add_argument("--host", default="127.0.0.1")
    reso.add_argument("--port", type=int, default=0, help="0 picks a free port")
    reso.add_argument("--records", type=int, default=500)
    reso.add_argument("--seed", type=int, default=7)
    reso.add_argument(
        "--dialect",
        choices=dialect_names(),
        default="default",
        help="the regional dialect: "
        + "; ".join(f"{name}: {load_dialect(name).description}" for name in dialect_names()),
    )
    reso.add_argument(
        "--page-size-max", type=int, default=None, help="the largest $top (the dialect's)"
    )
    reso.add_argument("--token-ttl", type=float, default=None, help="seconds (the dialect's)")
    reso.add_argument("--bad-record-rate", type=float, default=0.0)
    reso.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=None,
        metavar="N[/SECONDS]",
        help="at most N requests on /odata in any SECONDS (default 1) seconds: a sliding window "
        "instead of the dialect's windows",
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
    _auth_parser(vendors)
    _rets_parser(vendors)
    _buildium_parser(vendors)
    _hubspot_parser(vendors)
    _quickbooks_parser(vendors)
    return parser


def _hubspot_parser(vendors: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hubspot = vendors.add_parser("hubspot", help="a HubSpot CRM (OAuth2, contacts and deals)")
    hubspot.add_argument("--host", default="127.0.0.1")
    hubspot.add_argument("--port", type=int, default=0, help="0 picks a free port")
    hubspot.add_argument("--contacts", type=int, default=0)
    hubspot.add_argument("--deals", type=int, default=0)
    hubspot.add_argument("--client-id", default="demo-client")
    hubspot.add_argument("--client-secret", default="demo-secret")
    hubspot.add_argument("--token-ttl", type=float, default=1800.0)
    hubspot.add_argument("--faults", type=_faults, default=None, metavar="JSON")


def _rets_parser(vendors: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rets = vendors.add_parser("rets", help="a legacy RETS 1.x MLS (Digest login, DMQL2, COMPACT)")
    rets.add_argument("--host", default="127.0.0.1")
    rets.add_argument("--port", type=int, default=0, help="0 picks a free port")
    rets.add_argument("--records", type=int, default=200)
    rets.add_argument("--seed", type=int, default=7)
    rets.add_argument("--max-rows", type=int, default=None, help="rows answered per search")
    rets.add_argument("--ignore-offset", action="store_true", help="a server that ignores Offset")
    rets.add_argument("--session-idle", type=float, default=1800.0)
    rets.add_argument("--timezone", default="America/Chicago")
    rets.add_argument("--username", default="demo-user")
    rets.add_argument("--password", default="demo-password")
    rets.add_argument("--rate-limit", type=_rate_limit, default=None, metavar="N[/SECONDS]")
    rets.add_argument("--faults", type=_faults, default=None, metavar="JSON")


def _buildium_parser(vendors: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pms = vendors.add_parser("buildium", help="a Buildium PMS account (units, leases, tenants)")
    pms.add_argument("--host", default="127.0.0.1")
    pms.add_argument("--port", type=int, default=0, help="0 picks a free port")
    pms.add_argument("--units", type=int, default=40)
    pms.add_argument("--seed", type=int, default=7)
    pms.add_argument("--client-id", default="demo-client-id")
    pms.add_argument("--client-secret", default="demo-client-secret")
    pms.add_argument("--rate-limit", type=_rate_limit, default=None, metavar="N[/SECONDS]",
                     help="instead of the vendor's 10 requests a second")  # fmt: skip
    pms.add_argument("--no-rate-limit", action="store_true")
    pms.add_argument("--faults", type=_faults, default=None, metavar="JSON")


def _quickbooks_parser(vendors: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    qbo = vendors.add_parser("quickbooks", help="QuickBooks Online (OAuth2, CDC, SyncToken)")
    qbo.add_argument("--host", default="127.0.0.1")
    qbo.add_argument("--port", type=int, default=0, help="0 picks a free port")
    qbo.add_argument("--realm", action="append", default=None, help="repeatable company id")
    qbo.add_argument("--client-id", default="qbo-client")
    qbo.add_argument("--client-secret", default="qbo-secret")
    qbo.add_argument("--per-minute", type=int, default=500, help="requests a minute per realm")
    qbo.add_argument("--per-second", type=int, default=10, help="a second per realm and app")
    qbo.add_argument("--rotate-after", type=float, default=86400.0, help="refresh token age")
    qbo.add_argument("--faults", type=_faults, default=None, metavar="JSON")


def _auth_parser(vendors: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = vendors.add_parser(
        "auth", help="a vendor authorization server (OAuth2, API keys, Basic/Digest, sessions)"
    )
    defaults = AuthSettings()
    auth.add_argument("--host", default="127.0.0.1")
    auth.add_argument("--port", type=int, default=0, help="0 picks a free port")
    auth.add_argument("--rotation", choices=ROTATIONS, default=defaults.rotation)
    auth.add_argument(
        "--rotate-every",
        type=int,
        default=defaults.rotate_every,
        help="with --rotation sometimes: a new refresh token every Nth refresh",
    )
    auth.add_argument("--token-ttl", type=float, default=defaults.token_ttl)
    auth.add_argument("--refresh-token-ttl", type=float, default=None)
    auth.add_argument("--code-ttl", type=float, default=defaults.code_ttl)
    auth.add_argument("--key-overlap", type=float, default=defaults.key_overlap)
    auth.add_argument("--nonce-ttl", type=float, default=defaults.nonce_ttl)
    auth.add_argument("--session-idle", type=float, default=defaults.session_idle)
    auth.add_argument("--client-id", default="demo-client")
    auth.add_argument("--client-secret", default="demo-secret")
    auth.add_argument(
        "--redirect-uri",
        action="append",
        default=None,
        help=f"repeatable; default {DEFAULT_REDIRECT_URI}",
    )
    auth.add_argument("--username", default="demo-user")
    auth.add_argument("--password", default="demo-password")
    auth.add_argument("--api-key", action="append", default=[], help="repeatable")
    auth.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=None,
        metavar="N[/SECONDS]",
        help="at most N requests in any SECONDS (default 1) seconds",
    )
    auth.add_argument("--rate-limit-headers", choices=RATE_LIMIT_HEADERS, default=None)
    auth.add_argument("--faults", type=_faults, default=None, metavar="JSON")


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


def build_simulator(args: argparse.Namespace) -> Simulator:
    if args.vendor == "auth":
        settings = AuthSettings(
            rotation=args.rotation,
            rotate_every=args.rotate_every,
            token_ttl=args.token_ttl,
            refresh_token_ttl=args.refresh_token_ttl,
            code_ttl=args.code_ttl,
            key_overlap=args.key_overlap,
            nonce_ttl=args.nonce_ttl,
            session_idle=args.session_idle,
        )
        return AuthSimulator(
            settings=settings,
            rate_limit=args.rate_limit,
            faults=args.faults,
            rate_limit_headers=args.rate_limit_headers,
            client_id=args.client_id,
            client_secret=args.client_secret,
            redirect_uris=args.redirect_uri or (DEFAULT_REDIRECT_URI,),
            username=args.username,
            password=args.password,
            api_keys=args.api_key,
        )
    if args.vendor == "buildium":
        return BuildiumSimulator(
            units=args.units, seed=args.seed, client_id=args.client_id,
            client_secret=args.client_secret, faults=args.faults,
            rate_limit=None if args.no_rate_limit else (args.rate_limit or "vendor"),
        )  # fmt: skip
    if args.vendor == "hubspot":
        from cadastre.simulators.hubspot import HubSpotSimulator

        return HubSpotSimulator(
            client_id=args.client_id, client_secret=args.client_secret,
            token_ttl=args.token_ttl, contacts=args.contacts, deals=args.deals,
            faults=args.faults,
        )  # fmt: skip
    if args.vendor == "quickbooks":
        return QuickBooksSimulator(
            realms=tuple(args.realm or (DEFAULT_REALM,)), client_id=args.client_id,
            client_secret=args.client_secret, per_minute=args.per_minute,
            per_second=args.per_second, rotate_after=args.rotate_after, faults=args.faults,
        )  # fmt: skip
    if args.vendor == "rets":
        return RetsSimulator(
            records=args.records, seed=args.seed, username=args.username,
            password=args.password, timezone=args.timezone, max_rows=args.max_rows,
            ignore_offset=args.ignore_offset, session_idle=args.session_idle,
            rate_limit=args.rate_limit, faults=args.faults,
        )  # fmt: skip
    limit: RateLimit | Literal["dialect"] | None = "dialect"
    if args.no_rate_limit:
        limit = None
    elif args.rate_limit is not None:
        limit = args.rate_limit
    return ResoSimulator(
        dialect=args.dialect,
        records=args.records,
        seed=args.seed,
        rate_limit=limit,
        page_size_max=args.page_size_max,
        token_ttl=args.token_ttl,
        bad_record_rate=args.bad_record_rate,
        faults=args.faults,
        rate_limit_headers=args.rate_limit_headers,
    )


async def run(args: argparse.Namespace) -> None:
    simulator = build_simulator(args)
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
