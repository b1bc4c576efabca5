"""``cadastre demo``: the main job on the embedded default, end to end over real HTTP.

It onboards a demo MLS (a RESO Web API simulator on loopback, with OAuth2 client credentials, a
rate limit and a share of bad records), runs a full and then an incremental sync into SQLite
through the gateway, and serves the read API on port 8700 with a fresh API key and the
operations console with a demo operator (the hub's workers run meanwhile), until interrupted
(``--exit-after-sync`` stops after the syncs, for scripts and tests).
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cadastre.bootstrap import Hub
from cadastre.cli.runtime import console, run
from cadastre.cli.serve import serve_app
from cadastre.cli.sync import print_report, sync_progress
from cadastre.directory import ConnectionSpec
from cadastre.errors import AlreadyExists
from cadastre.ports import ApiKeyScope, Secret

if TYPE_CHECKING:
    from cadastre.sync import SyncReport

TENANT = "demo"
MLS = "demo-mls"
CREDENTIAL = "demo-mls"
OPERATOR = "demo"
# The simulator's own client credentials: demo values, not a secret of anyone's.
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"
MAPPING = f"""\
# The demo MLS's mapping (written by `cadastre demo` when missing). Onboarding an MLS is this:
# one file in the mapping registry folder that extends its family's defaults.
mapping: {MLS}
version: 1
extends: mls/reso
local_prefixes: [ACT_]
"""


LOOPBACK = ("127.0.0.0/8", "::1")


def display_database_url(url: str) -> str:
    """The database URL as the demo prints it: a SQLite file's path, or any other URL with the
    password left out (``postgresql://app@db:5432/cadastre``)."""
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1] if "///" in url else url.split("://", 1)[-1]
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a malformed URL: show only its scheme
        return url.split("://", 1)[0] + "://..." if "://" in url else "(database URL)"
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is not None:
        host = f"{host}:{port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def demo(
    port: int = typer.Option(8700, min=0, max=65535, help="port of the API on 127.0.0.1"),
    records: int = typer.Option(500, min=10, max=200_000, help="listings the MLS holds"),
    seed: int = typer.Option(7, help="seed of the simulated MLS"),
    exit_after_sync: bool = typer.Option(
        False, "--exit-after-sync", help="stop after the syncs instead of serving the API"
    ),
) -> None:
    """Run the main job: sync a simulated MLS into the store and serve the read API."""
    # The demo is its own operator: the simulator it starts lives on loopback, which no vendor URL
    # may reach unless the operator allows it.
    run(lambda hub: _demo(hub, port, records, seed, exit_after_sync),
        overrides={"gateway_allow_hosts": LOOPBACK})  # fmt: skip


async def _demo(hub: Hub, port: int, records: int, seed: int, exit_after_sync: bool) -> None:
    # Imported here, not at the top: the API and the simulator would slow every command's start.
    from cadastre.api import create_app
    from cadastre.simulators import ResoSimulator, serve

    database = display_database_url(hub.settings.resolved_database_url())
    console.print(Panel.fit(f"Cadastre demo on the embedded default ({database})"))
    mapping_file = hub.settings.mappings_dir / f"{MLS}.yaml"
    if not mapping_file.exists():
        hub.settings.mappings_dir.mkdir(parents=True, exist_ok=True)
        mapping_file.write_text(MAPPING, encoding="utf-8")
    simulator = ResoSimulator(
        records=records, seed=seed, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        bad_record_rate=0.01,
    )  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        api = None
        if not exit_after_sync:  # listen first: a port in use fails before the syncs run
            api = await stack.enter_async_context(
                serve_app(create_app(hub), host="127.0.0.1", port=port, handle_signals=True)
            )
            # the workers `cadastre serve` runs: relay, consumers, observations, alerts
            await stack.enter_async_context(hub.running())
        async with serve(simulator.app) as mls:
            await _onboard(hub, mls.url)
            full = await _sync(hub, full=True, label="full sync")
            touched = simulator.touch(count=max(1, records // 100))
            console.print(f"the MLS changed {len(touched)} listings; an incremental sync follows")
            incremental = await _sync(hub, full=False, label="incremental sync")
            violations = simulator.stats.rate_limit_violations
        issued = await hub.keys.create(TENANT, ApiKeyScope.READ, label="demo")
        # What the syncs measured, in the store now rather than at the workers' next round, so
        # the console's fleet view and alerts show them at once.
        await hub.sampler.round()
        await hub.alerts.evaluate(TENANT)
        password = await _operator(hub)
        await _summary(hub, full, incremental, violations)
        if api is None:
            _print_access(f"http://127.0.0.1:{port}", issued.plaintext, password, serving=False)
            return
        _print_access(api.url, issued.plaintext, password, serving=True)
        await api.wait()  # until Ctrl-C or SIGTERM


async def _onboard(hub: Hub, base: str) -> None:
    with contextlib.suppress(AlreadyExists):
        await hub.tenants.create(TENANT, "Demo brokerage")
    # The simulator's client, sealed in the vault like any vendor's.
    with contextlib.suppress(AlreadyExists):
        await hub.vault.add(
            TENANT, CREDENTIAL, "oauth2_client_credentials",
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        )  # fmt: skip
    config = {
        "base_url": f"{base}/odata", "token_url": f"{base}/oauth/token", "mapping": MLS,
        "page_size": 200,
        # The simulator runs on loopback, which vendor URLs may not reach unless allowed, and
        # documents a limit of 30 requests in any second, which the gateway keeps to.
        "gateway": {"allow_hosts": list(LOOPBACK), "rate_limit": {"requests": 30, "per": 1}},
    }  # fmt: skip
    spec = ConnectionSpec(name=MLS, system="mls", connector="mls/reso", credential=CREDENTIAL,
                          config=config)  # fmt: skip
    # A new run's simulator listens on a new port: the connection's next version says so.
    await hub.connections.put(TENANT, spec)


async def _sync(hub: Hub, *, full: bool, label: str) -> SyncReport:
    with sync_progress(f"{MLS} {label}") as progress:
        report = await hub.sync(TENANT, MLS, full=full, progress=progress)
    print_report(report)
    return report


async def _summary(hub: Hub, full: SyncReport, incremental: SyncReport, violations: int) -> None:
    statuses: Counter[str] = Counter()
    async with hub.store.unit_of_work(TENANT, read_only=True) as uow:
        listings = await uow.records.count("Listing")
        quarantined = len(await uow.quarantine.open_items(MLS))
        async for record in uow.records.scan("Listing", limit=1_000_000):
            statuses[str(record.data.get("StandardStatus"))] += 1
    async with hub.store.unit_of_work(TENANT) as uow:
        audit = await uow.audit.verify()
    table = Table("in the store", "count", title="demo tenant")
    table.add_row("Listing records", f"{listings:,}")
    table.add_row("records in quarantine (with reasons)", f"{quarantined:,}")
    table.add_row("audit log entries", f"{audit.entries:,}")
    table.add_row("MLS rate-limit violations", f"{violations:,}")
    console.print(table)
    console.print("listings by StandardStatus", style="bold")
    widest = max(statuses.values(), default=1)
    for status, n in statuses.most_common():
        console.print(f"  {status:<22} {'█' * max(1, round(40 * n / widest))} {n:,}")
    share = incremental.seconds / full.seconds if full.seconds > 0 else 0.0
    console.print(
        f"full sync {full.seconds:.2f} s, incremental {incremental.seconds:.2f} s "
        f"({share:.0%} of full)"
    )
    console.print(f"data: {display_database_url(hub.settings.resolved_database_url())}")
    console.print(f"mapping registry: {hub.settings.mappings_dir / (MLS + '.yaml')}")
    console.print(Text.assemble("audit chain: ", ("intact", "green") if audit.ok else
                                (f"broken at {audit.first_bad_seq}", "red")))  # fmt: skip


async def _operator(hub: Hub) -> str:
    """The demo tenant's console operator, with a new random password each run (shown once;
    only its scrypt hash is stored)."""
    password = secrets.token_urlsafe(12)
    try:
        await hub.operators.add(OPERATOR, Secret(password), tenant=TENANT)
    except AlreadyExists:
        await hub.operators.set_password(OPERATOR, Secret(password))
    return password


def _print_access(api: str, key: str, password: str, *, serving: bool) -> None:
    # soft_wrap: a key or URL broken over two lines cannot be copied
    say = console.print
    say(f"API key (read, shown once): {key}", soft_wrap=True)
    say(f"console: {api}/console/ (operator {OPERATOR}, password {password}, shown once)",
        soft_wrap=True)  # fmt: skip
    say(f"API: {api}/v1/listings", soft_wrap=True)
    say(f"OpenAPI: {api}/docs", soft_wrap=True)
    query = f"{api}/v1/listings?status=Active&limit=5"
    say(f'try: curl -H "Authorization: Bearer {key}" "{query}"', soft_wrap=True)
    if serving:
        say("serving until interrupted (Ctrl-C)")
    else:
        say("serve it with: cadastre serve")
