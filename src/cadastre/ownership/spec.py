"""The registry file format (version 1), as pydantic models. Structure only: the checks that need
the contract (entities, fields, ties between rules) are the registry's, in ``registry.py``."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SYSTEM = re.compile(r"^[a-z][a-z0-9_-]*$")


class ConflictPolicy(StrEnum):
    # The owner's value stands: a writer may fill or replace a value only while the field was not
    # last set by the owner.
    OWNER_WINS = "owner_wins"
    # The value with the later source_time stands, whoever wrote it; a write without a
    # source_time loses to a stored one that has it.
    NEWEST_WINS = "newest_wins"


class PlatformAccess(StrEnum):
    """Whether the unified API may accept a platform write of a field (issue 8, write-back)."""

    # The API accepts it and routes it to the field's owner (through its connection).
    ROUTE = "route"
    # The API accepts it in a create (POST) only; a change (PATCH) or delete is refused (422).
    CREATE = "create"
    # The API refuses it (422): the default, and always so for key fields.
    REFUSE = "refuse"


class SystemSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(min_length=3, description="'Entity.Field'; either part may be a wildcard")
    owner: str = Field(description="the one system of record for the matched fields")
    writers: tuple[str, ...] = Field(
        default=(), description="other systems allowed to write, under `conflict`"
    )
    conflict: ConflictPolicy | None = None
    platform: PlatformAccess = Field(
        default=PlatformAccess.REFUSE,
        description="route: the unified API may accept platform writes of the matched fields "
        "and sends them to the owner; create: only in a create (POST), never a change; "
        "refuse (default): it refuses them",
    )
    note: str = ""


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    systems: dict[str, SystemSpec] = Field(min_length=1)
    rules: list[RuleSpec] = Field(min_length=1)

    @field_validator("systems", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        # `core:` with nothing after it reads as None in YAML; treat it as "no description".
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("systems")
    @classmethod
    def _names(cls, value: dict[str, SystemSpec]) -> dict[str, SystemSpec]:
        for name in value:
            if not _SYSTEM.match(name):
                raise ValueError(f"system name {name!r} must be lowercase: letters, digits, - or _")
        return value
