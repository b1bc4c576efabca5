from __future__ import annotations

import pytest
import yaml

from cadastre.directory import ConnectionService, ConnectionSpec, TenantService
from cadastre.errors import AlreadyExists, ConfigurationError, NotFound
from cadastre.ports import ConnectionStatus
from cadastre.testing import FakeClock, FakeStore

SPEC = ConnectionSpec(
    name="austin-mls",
    system="mls",
    connector="mls/reso",
    credential="austin-mls",
    config={"base_url": "https://mls.example/odata", "page_size": 200},
)


@pytest.fixture
async def service():
    store = FakeStore()
    for tenant in ("acme", "globex"):
        await TenantService(store).create(tenant)
    return ConnectionService(store, FakeClock())


async def test_add_show_pause_resume_and_every_change_is_a_version(service) -> None:
    added = await service.add("acme", SPEC)
    assert (added.version, added.status) == (1, ConnectionStatus.ACTIVE)
    paused = await service.pause("acme", "austin-mls")
    assert (paused.version, paused.status) == (2, ConnectionStatus.PAUSED)
    assert (await service.pause("acme", "austin-mls")).version == 2  # already paused: no version
    resumed = await service.resume("acme", "austin-mls")
    assert (resumed.version, resumed.status) == (3, ConnectionStatus.ACTIVE)
    history = await service.history("acme", "austin-mls")
    assert [(h.connection.version, h.change) for h in history] == [
        (1, "added"),
        (2, "paused"),
        (3, "resumed"),
    ]
    with pytest.raises(AlreadyExists):
        await service.add("acme", SPEC)


@pytest.mark.parametrize(
    "config",
    [
        {"client_secret": "abc"},
        {"auth": {"password": "x"}},
        {"API_KEY": "k"},
        {"oauth": {"refresh_token": "t"}},
    ],
)
async def test_a_secret_in_the_config_is_refused_and_nothing_is_written(service, config) -> None:
    spec = SPEC.model_copy(update={"config": config})
    with pytest.raises(ConfigurationError, match="never store secrets"):
        await service.add("acme", spec)
    assert await service.all("acme") == []


async def test_yaml_round_trip_is_configuration_as_code(service) -> None:
    await service.add("acme", SPEC)
    await service.add("acme", SPEC.model_copy(update={"name": "crm", "system": "crm",
                                                      "connector": "crm/hubspot"}))  # fmt: skip
    exported = await service.export_yaml("acme")
    assert "credential: austin-mls" in exported
    # importing what was exported changes nothing
    assert await service.import_yaml("acme", exported) == {"austin-mls": "unchanged",
                                                            "crm": "unchanged"}  # fmt: skip
    document = yaml.safe_load(exported)
    document["connections"][0]["config"]["page_size"] = 500
    document["connections"].append(
        {"name": "books", "system": "accounting", "connector": "accounting/quickbooks"}
    )
    outcome = await service.import_yaml("globex", yaml.safe_dump(document))
    assert outcome == {"austin-mls": "added", "crm": "added", "books": "added"}
    outcome = await service.import_yaml("acme", yaml.safe_dump(document))
    assert outcome == {"austin-mls": "updated to v2", "crm": "unchanged", "books": "added"}
    assert (await service.get("acme", "austin-mls")).config["page_size"] == 500


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("connections: [ {name: a", "not valid YAML"),
        ("connections:\n  - {name: Bad Name, system: mls, connector: mls/reso}", "name"),
        ("connections:\n  - {name: a, system: mls}", "connector"),
        ("connections:\n  - {name: a, system: mls, connector: mls/reso, extra: 1}", "extra"),
        (
            "connections:\n  - {name: a, system: mls, connector: mls/reso}\n"
            "  - {name: a, system: mls, connector: mls/reso}",
            "more than once",
        ),
        (
            "connections:\n  - {name: ok, system: mls, connector: mls/reso}\n"
            "  - {name: b, system: mls, connector: mls/reso, config: {token: t}}",
            "never store secrets",
        ),
    ],
)
async def test_bad_files_get_a_clear_error_and_write_nothing(service, text, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await service.import_yaml("acme", text)
    assert await service.all("acme") == []


async def test_tenants_do_not_see_each_others_connections(service) -> None:
    await service.add("acme", SPEC)
    assert await service.all("globex") == []
    with pytest.raises(NotFound):
        await service.get("globex", "austin-mls")
    with pytest.raises(NotFound):
        await service.pause("globex", "austin-mls")


@pytest.mark.parametrize(
    "config",
    [
        {"auth": [{"password": "hunter2"}]},
        {"base_url": "https://bob:hunter2@mls.example/odata"},
        {"mirrors": ["https://mls.example", "redis://:hunter2@cache:6379/0"]},
        {"headers": {"Authorization": "Bearer abc"}},
        {"headers": {"X-Auth": "Basic dXNlcjpodW50ZXIy"}},
        {"headers": [{"name": "Authorization", "value": "Token abc"}]},
        {"pwd": "x"},
        {"ssh": {"passphrase": "x"}},
        {"cookie": "sid=1"},
        {"credentials": {"user": "u"}},
        {"aws": {"access_key": "AKIA"}},
        {"oauth": {"client_secret": "s"}},
        {"session_token": "t"},
        {"token_url": "https://bob:hunter2@idp.example/token"},  # allowed name, secret value
    ],
)
async def test_secrets_hidden_in_lists_urls_and_headers_are_refused(service, config) -> None:
    spec = SPEC.model_copy(update={"config": config})
    with pytest.raises(ConfigurationError, match="never store secrets") as caught:
        await service.add("acme", spec)
    assert "hunter2" not in str(caught.value)
    assert "abc" not in str(caught.value)
    assert await service.all("acme") == []


async def test_settings_that_only_name_secret_things_are_allowed(service) -> None:
    config = {
        "base_url": "https://mls.example/odata",
        "auth": {
            "type": "oauth2",
            "token_url": "https://idp.example/oauth/token",
            "auth_url": "https://idp.example/oauth/authorize",
            "authorization_url": "https://idp.example/oauth/authorize",
            "token_endpoint": "https://idp.example/token",
            "token_uri": "https://idp.example/token",
            "api_key_header": "X-Api-Key",
            "secret_name": "austin-mls",
            "session_timeout_seconds": 30,
            "token_ttl": 3600,
            "password_path": "/run/secrets/mls",
            "scopes": ["read", "write"],
        },
        "mirrors": ["https://user@mls.example/odata", "https://mls.example:8443/x@y"],
        "note": "Bearer tokens are fetched by the gateway",
    }
    added = await service.add("acme", SPEC.model_copy(update={"config": config}))
    assert added.config == config


async def test_a_tenant_that_does_not_exist_is_not_found_and_nothing_is_written(service) -> None:
    with pytest.raises(NotFound, match="nobody"):
        await service.add("nobody", SPEC)
    with pytest.raises(NotFound, match="nobody"):
        await service.import_yaml(
            "nobody", "connections:\n  - {name: a, system: mls, connector: mls/reso}\n"
        )
    assert await service.all("nobody") == []


async def test_a_yaml_error_names_the_line_but_never_echoes_the_text(service) -> None:
    text = "connections:\n  - name: a\n    config: {note: hunter2-canary\n"
    with pytest.raises(ConfigurationError, match=r"not valid YAML near line \d+") as caught:
        await service.import_yaml("acme", text)
    assert "hunter2-canary" not in str(caught.value)


async def test_a_key_given_twice_in_the_connections_file_is_refused(service) -> None:
    text = (
        "connections:\n"
        "  - name: a\n"
        "    system: mls\n"
        "    connector: mls/reso\n"
        "    connector: crm/hubspot\n"
    )
    with pytest.raises(ConfigurationError, match=r"line 5.*duplicate key 'connector'"):
        await service.import_yaml("acme", text)
    assert await service.all("acme") == []
