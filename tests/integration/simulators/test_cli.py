"""``python -m cadastre.simulators reso``: prints ``ready <url>``, serves, and exits on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx
import pytest

from cadastre.simulators import spawn


async def test_the_module_starts_serves_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cadastre.simulators", "reso", "--port", "0", "--records", "250",
        "--seed", "3", "--page-size-max", "100",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("ready http://127.0.0.1:")
        assert line.endswith("\n")
        base = line.split()[1]
        async with httpx.AsyncClient(base_url=base) as client:
            token = await client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("demo-client", "demo-secret"),
            )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            page = await client.get("/odata/Property", params={"$top": "1000"}, headers=headers)
            assert len(page.json()["value"]) == 100  # --page-size-max
            stats = (await client.get("/admin/stats")).json()
            assert stats["requests"] == 2
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
        assert process.returncode == 0
        assert b"Traceback" not in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_rate_limit_flags() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cadastre.simulators", "reso", "--port", "0", "--records", "5",
        "--rate-limit", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        base = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode().split()[1]
        async with httpx.AsyncClient(base_url=base) as client:
            limit = (await client.get("/admin/rate-limit")).json()
        assert limit == {
            "requests": 2,
            "per": 1.0,
            "window": "sliding",
            "also": [],
            "headers": None,
        }
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), timeout=10)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_fault_and_rate_limit_header_flags() -> None:
    faults = '{"error_rate": 1.0, "paths": ["/odata/Property"], "seed": 1}'
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cadastre.simulators", "reso", "--port", "0", "--records", "5",
        "--rate-limit", "2/5", "--rate-limit-headers", "ietf", "--faults", faults,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        base = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode().split()[1]
        async with httpx.AsyncClient(base_url=base) as client:
            limit = (await client.get("/admin/rate-limit")).json()
            profile = (await client.get("/admin/faults")).json()
            metadata = await client.get("/odata/$metadata")
            faulted = await client.get("/odata/Property")
        assert limit == {
            "requests": 2,
            "per": 5.0,
            "window": "sliding",
            "also": [],
            "headers": "ietf",
        }
        assert (profile["error_rate"], profile["paths"], profile["seed"]) == (
            1.0, ["/odata/Property"], 1,
        )  # fmt: skip
        assert metadata.status_code == 200
        assert (metadata.headers["ratelimit-limit"], metadata.headers["ratelimit-remaining"]) == (
            "2", "1",
        )  # fmt: skip
        assert faulted.status_code in (500, 502, 503)
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), timeout=10)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_bad_flags_are_refused_before_serving() -> None:
    for flags in (["--faults", '{"error_rate": "often"}'], ["--faults", "[1]"],
                  ["--rate-limit", "ten/1"], ["--rate-limit-headers", "github"]):  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cadastre.simulators", "reso", "--port", "0", *flags,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 2, flags
        assert stdout == b""
        assert flags[0].encode() in stderr


def test_spawn_runs_a_simulator_process_and_stops_it() -> None:
    with spawn("reso", "--records", "3", "--no-rate-limit") as url:
        assert httpx.get(f"{url}/admin/stats", timeout=10).json()["requests"] == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/admin/stats", timeout=2)


def test_spawn_says_when_the_simulator_did_not_start() -> None:
    with pytest.raises(RuntimeError, match="did not start"), spawn("reso", "--records", "-1"):
        pass


def test_dialect_flag_serves_that_dialect_with_its_limits() -> None:
    with spawn("reso", "--dialect", "mlsgrid", "--records", "20") as url:
        dialect = httpx.get(f"{url}/admin/dialect", timeout=10).json()
        limit = httpx.get(f"{url}/admin/rate-limit", timeout=10).json()
    assert dialect["name"] == "mlsgrid"
    assert dialect["deletion"] == {"style": "flag", "field": "MlgCanView"}
    assert "NWM_SchoolDistrict" in dialect["fields"]
    assert dialect["rate_limit"] == [[2, 1.0], [7200, 3600.0], [40000, 86400.0]]
    assert (limit["requests"], [w["requests"] for w in limit["also"]]) == (2, [7200, 40000])
    with spawn("reso", "--dialect", "bridge", "--records", "5", "--no-rate-limit",
               "--page-size-max", "50") as url:  # fmt: skip
        dialect = httpx.get(f"{url}/admin/dialect", timeout=10).json()
        assert httpx.get(f"{url}/admin/rate-limit", timeout=10).json() is None
    assert dialect["page"]["max"] == 50


async def test_the_help_lists_the_dialects_and_a_wrong_one_is_refused() -> None:
    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cadastre.simulators", "reso", "--help",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(shown.communicate(), timeout=30)
    for name in ("mlsgrid", "trestle", "bridge", "spark", "default"):
        assert name.encode() in stdout
    wrong = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cadastre.simulators", "reso", "--dialect", "atlantis",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(wrong.communicate(), timeout=30)
    assert wrong.returncode == 2
    assert stdout == b""
    assert b"atlantis" in stderr
