from __future__ import annotations

from pathlib import Path

import pytest

from cadastre.errors import CredentialError
from cadastre.observe import redact_text
from cadastre.vault import CredentialResolver, EnvCredentialProvider, FileCredentialProvider


async def test_env_reference_collects_prefixed_fields() -> None:
    env = {"AUSTIN_MLS__CLIENT_ID": "id-123", "AUSTIN_MLS__CLIENT_SECRET": "s3cret-abc", "X": "1"}
    cred = await EnvCredentialProvider(env).resolve("env:austin_mls")
    assert set(cred.fields) == {"client_id", "client_secret"}
    assert cred.fields["client_secret"].reveal() == "s3cret-abc"
    assert "s3cret-abc" not in repr(cred)
    assert "s3cret-abc" not in str(cred.fields["client_secret"])
    # resolved values are scrubbed from logs from now on
    assert "s3cret-abc" not in redact_text("sending s3cret-abc")


async def test_env_reference_without_variables_names_the_reference_only() -> None:
    with pytest.raises(CredentialError, match=r"'env:missing'.*MISSING__<FIELD>"):
        await EnvCredentialProvider({}).resolve("env:missing")


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


async def test_file_reference_reads_its_entry(tmp_path: Path) -> None:
    path = _write(tmp_path / "creds.yaml", "austin:\n  client_id: a\n  client_secret: bbbbbbbb\n")
    cred = await FileCredentialProvider(path).resolve("file:austin")
    assert cred.fields["client_id"].reveal() == "a"


async def test_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "creds.yaml", "austin:\n  k: v\n", mode=0o644)
    with pytest.raises(CredentialError, match="chmod 600"):
        await FileCredentialProvider(path).resolve("file:austin")


async def test_broken_yaml_error_does_not_echo_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "creds.yaml", "austin:\n  secret: [unclosed-TOPSECRET\n")
    with pytest.raises(CredentialError) as info:
        await FileCredentialProvider(path).resolve("file:austin")
    assert "TOPSECRET" not in str(info.value)
    assert "not valid YAML" in str(info.value)


async def test_missing_entry_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "creds.yaml", "other:\n  k: v\n")
    with pytest.raises(CredentialError, match="no entry 'austin'"):
        await FileCredentialProvider(path).resolve("file:austin")
    with pytest.raises(CredentialError, match="does not exist"):
        await FileCredentialProvider(tmp_path / "nope.yaml").resolve("file:austin")


async def test_resolver_dispatches_by_scheme_and_rejects_unknown() -> None:
    resolver = CredentialResolver({"env": EnvCredentialProvider({"A__K": "value-1"})})
    assert (await resolver.resolve("env:a")).fields["k"].reveal() == "value-1"
    with pytest.raises(CredentialError, match="env:NAME"):
        await resolver.resolve("vault:a")
    with pytest.raises(CredentialError):
        await resolver.resolve("env:")


async def test_a_field_given_twice_is_refused_by_line_without_echoing_values(
    tmp_path: Path,
) -> None:
    text = "austin:\n  client_secret: first-TOPSECRET\n  client_secret: second-TOPSECRET\n"
    path = _write(tmp_path / "creds.yaml", text)
    with pytest.raises(CredentialError, match=r"near line 3.*given twice") as info:
        await FileCredentialProvider(path).resolve("file:austin")
    assert "TOPSECRET" not in str(info.value)


async def test_short_fields_are_accepted_and_not_scrubbed_by_value(tmp_path: Path) -> None:
    path = _write(tmp_path / "creds.yaml", "austin:\n  client_id: a1\n  region: us\n")
    cred = await FileCredentialProvider(path).resolve("file:austin")
    assert cred.fields["client_id"].reveal() == "a1"
    assert redact_text("region us, client a1") == "region us, client a1"
