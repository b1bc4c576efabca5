"""Credentials. For now the environment and file providers; the auth-service issue adds the
encrypted vault, OAuth2 flows and rotation behind the same ``CredentialProvider`` port."""

from cadastre.vault.providers import (
    CredentialResolver,
    EnvCredentialProvider,
    FileCredentialProvider,
)

__all__ = ["CredentialResolver", "EnvCredentialProvider", "FileCredentialProvider"]
