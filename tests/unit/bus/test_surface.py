"""``import cadastre.bus`` stays light: nats-py loads only when the NATS adapter connects; and
``open_bus`` picks the adapter the settings name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cadastre.bus import InProcessBus, NatsJetStreamBus, open_bus
from cadastre.config import Settings


def test_importing_the_bus_does_not_import_nats() -> None:
    code = "import sys, cadastre.bus, cadastre.bootstrap; print('nats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_open_bus_follows_the_settings(tmp_path: Path) -> None:
    memory = open_bus(Settings(data_dir=tmp_path))
    assert isinstance(memory, InProcessBus)
    await memory.close()
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "bus": "nats", "nats_url": "nats://user:pw@127.0.0.1:1"}
    )
    nats = open_bus(settings)  # connects on first use, not here
    assert isinstance(nats, NatsJetStreamBus)
    assert "pw" not in repr(nats)
    await nats.close()
