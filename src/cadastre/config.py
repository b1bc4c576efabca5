"""Settings, read from ``CADASTRE_*`` environment variables (and ``.env``), and the strict YAML
loader every configuration file goes through.

The embedded default needs nothing: SQLite under ``./var/``, the in-process bus, in-memory limits.
The distributed mode is the same code with other URLs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

DEFAULT_DATA_DIR = Path("var")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CADASTRE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR, description="where the embedded default keeps files"
    )
    # A SecretStr because PostgreSQL URLs may carry a password; repr() and logs show '**********'.
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means SQLite at <data_dir>/cadastre.db",
    )
    bus: Literal["memory", "nats"] = "memory"
    # SecretStr like database_url: these URLs may carry a password (redis://:pw@host/0).
    nats_url: SecretStr = SecretStr("nats://127.0.0.1:4222")
    nats_stream: str = Field(
        default="CADASTRE", pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the JetStream stream of events (subjects cadastre.>), created if missing",
    )  # fmt: skip
    relay_poll_seconds: float = Field(
        default=0.5, gt=0, le=60,
        description="how often the outbox relay looks for events other processes committed "
        "(commits in its own process wake it at once)",
    )  # fmt: skip
    relay_batch: int = Field(
        default=500, ge=1, le=10_000, description="outbox events the relay publishes at a time"
    )
    consumed_keep_days: float = Field(
        default=7.0, ge=7,
        description="how long bus consumers' de-duplication marks are kept (at least a week: "
        "longer than any redelivery)",
    )  # fmt: skip
    redis_url: SecretStr | None = Field(
        default=None,
        description="distributed mode: rate-limit buckets shared by every worker; unset: in memory",
    )
    rate_limit_workers: int = Field(
        default=1, ge=1,
        description="fewest workers assumed to share a limit when Redis cannot be reached",
    )  # fmt: skip
    conflict_skew_seconds: float = Field(
        default=2.0, ge=0, le=3600,
        description="two concurrent edits of a shared field whose source times are this close "
        "(or that lack one) cannot be ordered: they go to the review queue (docs/ownership.md)",
    )  # fmt: skip
    ownership_file: Path | None = Field(
        default=None, description="system-of-record YAML; unset means the packaged default"
    )
    mappings_dir: Path = Field(
        default=Path("mappings"),
        description="the mapping registry folder: per-MLS and per-connection mapping files",
    )
    vault_master_key: SecretStr | None = Field(
        default=None,
        description="the vault's master key, <key id>:<base64 of 32 bytes>; unset: the key file",
    )
    vault_previous_keys: SecretStr | None = Field(
        default=None,
        description="older master keys still being rotated away from (comma-separated, same form)",
    )
    vault_key_file: Path | None = Field(
        default=None,
        description="JSON keyring of master keys (mode 0600); unset: <data_dir>/vault.keys, "
        "created on first use for the embedded default only",
    )
    vault_rotation_check_seconds: float | None = Field(
        default=3600.0, gt=0,
        description="how often `cadastre serve` rotates the API keys that are due; unset: never",
    )  # fmt: skip
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="where people reach this hub: OAuth2 consent returns to <public_url>"
        "/v1/oauth/callback",
    )
    # NoDecode: the variable is read by _host_list below, so "127.0.0.0/8,::1" works as well as
    # a JSON list, and a malformed value is a validation error naming the variable.
    gateway_allow_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="private networks or host names (comma-separated or a JSON list) that a "
        "connection's gateway.allow_hosts may name; vendor URLs reach nothing private beyond",
    )
    sync_stall_seconds: float | None = Field(
        default=900.0, gt=0,
        description="a sync run with no page committed for this long is stopped; unset: never",
    )  # fmt: skip
    sync_every_seconds: float = Field(
        default=900.0, gt=0,
        description="`cadastre serve` syncs each connection this often, unless its mapping file "
        "declares the MLS's refresh cadence (refresh.every_minutes)",
    )  # fmt: skip
    webhook_poll_seconds: float = Field(
        default=21_600.0, gt=0,
        description="`cadastre serve` syncs a webhook-driven connection (ingestion: webhook) "
        "this often, whatever its MLS's refresh cadence: the slow reconciliation poll that "
        "catches webhooks that never arrived",
    )  # fmt: skip
    reconcile_every_seconds: float | None = Field(
        default=86_400.0, gt=0,
        description="`cadastre serve` reconciles each connection's keys (deletions upstream) "
        "this often; unset: never",
    )  # fmt: skip
    schedule_syncs: bool = Field(
        default=True, description="`cadastre serve` runs the scheduled syncs and reconciliations"
    )
    schedule_parallel: int = Field(
        default=4, ge=1, le=256,
        description="scheduled jobs `cadastre serve` runs at once; a paced mass update holds one "
        "for its whole run, so leave room for the other connections",
    )  # fmt: skip
    sync_max_seconds: float | None = Field(
        default=6 * 3600.0, gt=0, description="a sync run is stopped past this; unset: never"
    )
    webhooks_disable_after_days: float = Field(
        default=5.0, gt=0,
        description="a subscription whose deliveries all failed for this long (no success in "
        "between) is disabled, with an alert",
    )  # fmt: skip
    webhooks_timeout_seconds: float = Field(
        default=15.0, gt=0, description="an outbound webhook attempt with no answer by then fails"
    )
    webhooks_poll_seconds: float = Field(
        default=1.0, gt=0,
        description="how often the delivery sender looks for due retries (new events wake it)",
    )  # fmt: skip
    webhooks_keep_days: float = Field(
        default=30.0, gt=0,
        description="outbound deliveries that will not be sent again (delivered, cancelled, dead "
        "ones of removed subscriptions) are deleted with their attempts after this long",
    )  # fmt: skip
    # write-back (issue 8; docs/writeback.md)
    writeback_poll_seconds: float = Field(
        default=1.0, gt=0,
        description="how often the write-back worker looks for due retries (new writes wake it)",
    )  # fmt: skip
    writeback_lease_seconds: float = Field(
        default=300.0, gt=0,
        description="how long a worker holds a write target it claimed; longer than any vendor "
        "call: a target left sending past it lost its worker and is recovered",
    )  # fmt: skip
    writeback_echo_days: float = Field(
        default=7.0, gt=0,
        description="how long an acknowledged vendor write is recognised when the vendor "
        "reports it back (echo suppression)",
    )  # fmt: skip
    writeback_max_attempts: int = Field(
        default=8, ge=1, description="vendor calls per write target before it fails"
    )  # fmt: skip
    # API idempotency keys (docs/api-idempotency.md): Stripe keeps them 24 h, and clients are
    # promised at least that, so a shorter setting is refused here rather than honoured.
    idempotency_keep_hours: float = Field(
        default=24.0, ge=24,
        description="how long an Idempotency-Key of an API write and its stored response are "
        "kept (at least 24 hours)",
    )  # fmt: skip
    idempotency_lock_seconds: float = Field(
        default=60.0, gt=0, le=3600,
        description="a keyed API write still in flight after this long is taken for dead (its "
        "process crashed): the key may then be retried",
    )  # fmt: skip
    # identity resolution (docs/identity.md): a Contact and a Resident scoring at least
    # identity_auto_link are linked at once; from identity_suggest a person confirms.
    identity_auto_link: float = Field(
        default=0.9, gt=0, le=1,
        description="match score (0..1) at which a contact and a resident are linked at once",
    )  # fmt: skip
    identity_suggest: float = Field(
        default=0.6, gt=0, le=1,
        description="match score (0..1) from which a link is suggested for a person to confirm "
        "(at most identity_auto_link)",
    )  # fmt: skip
    # the operations console (issue 9; docs/console.md)
    console_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30,
        description="how long a console sign-in lasts (on the hub's clock) before the operator "
        "signs in again",
    )  # fmt: skip
    # alerts (issue 9; docs/alerts.md)
    alert_rules: Path | None = Field(
        default=None,
        description="the alert rules YAML file; unset: the packaged default "
        "(cadastre/observe/rules.yaml). `cadastre alerts rules --check FILE` validates one",
    )
    alert_eval_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="how often each tenant's alert rules are evaluated (on the hub's clock)",
    )  # fmt: skip
    # observations by vendor and minute (issue 9; docs/operations.md)
    observe_flush_seconds: float = Field(
        default=15.0, gt=0, le=600,
        description="how often each worker stores the vendor calls and counts it observed and "
        "samples the backlog gauges (on the hub's clock)",
    )  # fmt: skip
    observe_keep_days: float = Field(
        default=14.0, gt=0, le=3650,
        description="how many days of per-minute observations are kept",
    )  # fmt: skip
    log_level: str = "INFO"
    log_json: bool = True
    # monitoring (issue 9; docs/operations.md)
    metrics_token: SecretStr | None = Field(
        default=None,
        description="bearer token that lets clients other than loopback read /metrics; unset: "
        "loopback only",
    )
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        default="none",
        description="where OpenTelemetry spans go: none (ids in the logs only), console "
        "(standard error), otlp (a collector over OTLP/HTTP; the otel extra)",
    )
    # SecretStr like the other URLs: a collector's URL may carry a password.
    otel_endpoint: SecretStr | None = Field(
        default=None,
        description="the OTLP/HTTP collector (http://collector:4318; /v1/traces is added to a "
        "URL without a path); unset: OTEL_EXPORTER_OTLP_ENDPOINT or localhost",
    )

    @field_validator("gateway_allow_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("is neither a JSON list nor comma-separated entries") from None
        return tuple(part.strip() for part in text.split(",") if part.strip())

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}; got {value!r}")
        return level

    def embedded(self) -> bool:
        """The embedded default: SQLite (no database URL given, or a SQLite one)."""
        return self.resolved_database_url().startswith("sqlite")

    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cadastre.db').as_posix()}"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping names the same key twice. Plain YAML loaders keep the last value silently,
    which turns a typo into a different configuration."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only) that refuses duplicate mapping keys.

    Keys that a merge (``<<: *anchor``) brings in may still be overridden: that is what merges
    are for. Only keys written twice in the same mapping are an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen is not None:
                raise DuplicateKeyError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first given at line {seen})",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, *, source: str = "<yaml>") -> Any:
    """Parse one YAML document with ``StrictLoader``: plain data only, and a key given twice in
    one mapping raises ``DuplicateKeyError`` naming the key and both lines.

    Errors are ``yaml.YAMLError``; marked ones carry ``source`` as the file name and the line in
    ``problem_mark``. ``str(error)`` quotes the offending line, so a caller reading a file that
    may hold a secret must report ``problem_mark.line`` only (``DuplicateKeyError.problem`` names
    a key, never a value)."""
    loader = StrictLoader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def describe_validation_error(exc: ValidationError, name: Callable[[str], str] = str) -> str:
    """A pydantic error on one line, ``field: problem; field: problem``, without the input values
    (they may be secrets) or the documentation links. ``name`` renames a field's dotted path."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{name(where)}: {error['msg']}" if where else error["msg"])
    return "; ".join(problems)
