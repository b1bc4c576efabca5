"""Suite-wide settings.

``CADASTRE_SHARED_DIR`` is the one setting that finds the reference data (``../shared`` beside
the project by default). Tests that compare against it use the ``shared_dir`` fixture: in CI
(``CI`` set) a missing folder fails them, elsewhere they skip and say why.

A service the distributed-mode tests need (PostgreSQL) that does not answer fails them in CI and
whenever ``scripts/test.sh`` ran (it starts the services and lists them in
``CADASTRE_TEST_SERVICES``); only a bare ``pytest`` elsewhere skips them, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="run heavy trials (kill loops, soaks, property tests) at their full count",
    )


@pytest.fixture(scope="session")
def full_trials(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--full"))


def service_missing(service: str, message: str) -> NoReturn:
    started = os.environ.get("CADASTRE_TEST_SERVICES", "").split(",")
    if os.environ.get("CI") or service in started:
        pytest.fail(message)
    pytest.skip(message)


def shared_dir_setting() -> Path:
    return Path(os.environ.get("CADASTRE_SHARED_DIR", PROJECT_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_dir_setting()
    if not (path / "reso").is_dir():
        message = f"reference data not found at {path} (set CADASTRE_SHARED_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
