"""``python -m cadastre.simulators reso``: prints ``ready <url>``, serves, and exits on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx


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
        assert limit == {"requests": 2, "per": 1.0, "window": "sliding"}
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), timeout=10)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
