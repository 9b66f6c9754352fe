"""Settings: the only code that reads environment variables.

Sources, highest precedence first: keyword arguments to ``Settings(...)``, then
``LINEAGEHUB_*`` environment variables, then the defaults below. Every setting is listed in
the README's configuration table (a test checks it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from lineagehub.services.webhooks import WebhookConfig


def _variable(loc: tuple[Any, ...], given: dict[str, Any]) -> str:
    """The environment variable (or keyword) a pydantic error's location names."""
    field = str(loc[0]) if loc else "?"
    return field if field in given else f"LINEAGEHUB_{field.upper()}"


def default_data_dir() -> Path:
    """The per-user data directory (XDG on Linux, ~/Library on macOS, AppData on Windows)."""
    return Path(platformdirs.user_data_dir("lineagehub", appauthor=False))


class Settings(BaseSettings):
    """LineageHub's configuration. Environment variables are the field names, upper-cased,
    with the ``LINEAGEHUB_`` prefix (``LINEAGEHUB_STORE``, ``LINEAGEHUB_NEO4J_PASSWORD``)."""

    model_config = SettingsConfigDict(env_prefix="LINEAGEHUB_", extra="ignore", frozen=True)

    def __init__(self, **values: Any) -> None:
        # a bad value (LINEAGEHUB_STALE_AFTER=abc) is a ConfigError naming the variable, not
        # pydantic's report of a field (a traceback from every command and every client)
        try:
            super().__init__(**values)
        except ValidationError as e:
            from lineagehub.graph.errors import ConfigError

            problems = "; ".join(
                f"{_variable(err['loc'], values)}: {err['msg']}" for err in e.errors()[:5]
            )
            raise ConfigError(f"bad setting: {problems}") from None

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded store (and by default the artifacts) live.",
    )
    store: str | None = Field(
        default=None,
        description="Graph store URI: sqlite:///path.db, sqlite://, neo4j://host:7687, "
        "bolt://host:7687 (and +s / +ssc). Default: sqlite in data_dir/hub.db.",
    )
    neo4j_user: str = Field(default="neo4j", description="Neo4j user name.")
    neo4j_password: SecretStr | None = Field(
        default=None, description="Neo4j password (never logged)."
    )
    neo4j_database: str | None = Field(
        default=None, description="Neo4j database name (default: the server's default)."
    )
    url: str | None = Field(
        default=None,
        description="A hub server (http://host:8000) for the SDK's remote mode; when set, the SDK "
        "talks to it instead of opening stores.",
    )
    artifacts: str | None = Field(
        default=None,
        description="Artifact store URI: file:///path or s3://bucket/prefix. Default: an "
        "'artifacts' folder beside the embedded store (data_dir/artifacts otherwise).",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for MinIO or another S3-compatible server."
    )
    user: str | None = Field(
        default=None, description="The user recorded as a run's launcher (default: the OS user)."
    )
    audit_key: SecretStr | None = Field(
        default=None,
        description="Key for signing audit log exports and tree heads (HMAC-SHA256; never "
        "logged). Unset: exports and heads are unsigned.",
    )
    audit_checkpoint_every: int = Field(
        default=1000,
        ge=1,
        description="Write a signed tree head of the audit log after this many entries.",
    )
    audit_checkpoint_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Also write one on the first entry this many seconds after the last head "
        "(0: by count only).",
    )
    audit_signing_key: Path | None = Field(
        default=None,
        description="An Ed25519 private key (PEM file) to sign tree heads with as well, so "
        "anyone with the public key can check them (needs the cryptography package).",
    )
    audit_heads: str | None = Field(
        default=None,
        description="Copy every tree head outside the store: file:///heads.jsonl (append-only "
        "JSON lines), git:///path/to/repo (a commit per head) or s3://bucket/prefix (an object "
        "per head; use a bucket with object lock).",
    )
    heartbeat_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between a live run's heartbeats (buffered metrics flush with them).",
    )
    stale_after: float = Field(
        default=300.0,
        gt=0,
        description="Seconds without a heartbeat after which a RUNNING run counts as KILLED.",
    )

    webhooks: SecretStr | None = Field(
        default=None,
        description="Outgoing webhooks: a JSON list of {url, secret, events, max_attempts, "
        'backoff_base, backoff_max, timeout} ("events": a list of event names or "*"). '
        "Secrets are never shown or logged.",
    )
    webhook_queue_size: int = Field(
        default=1000,
        ge=1,
        description="Webhook deliveries that may wait or be retried at once for one endpoint; "
        "beyond it that endpoint's new ones are dropped (and recorded as failed).",
    )

    policies: Path | None = Field(
        default=None,
        description="A TOML file (or .json) of model registry promotion policies for the "
        "server ([[policy]] tables: model, stage, approvals, approvers, "
        "separation_of_duties, require_lineage, forbid_dirty_commit, thresholds). "
        "Unset: no policies.",
    )

    alert_rules: Path | None = Field(
        default=None,
        description="A TOML file (or .json) of monitoring alert rules ([[rule]] tables: name, "
        "expr, for, keep_firing_for, severity, deployment, labels, annotations), evaluated on "
        "every monitoring window reported. Unset: no rules.",
    )

    max_request_bytes: int = Field(
        default=1024 * 1024,
        ge=1024 * 1024,
        description="The largest GraphQL request body the server reads (bytes, at least 1 MiB: "
        "the SDK sends metric points in requests of up to 512 KiB); larger ones get 413. "
        "Artifact uploads stream and are not bounded by it.",
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds the server waits for the next part of a request body (an upload "
        "too) before answering 408: a client sending half a body and waiting held a connection "
        "for ever.",
    )
    max_connections: int = Field(
        default=512,
        ge=8,
        description="Connections (and requests in flight) one server process holds at most; "
        "beyond, 503 at once (one client opening thousands would otherwise use up the "
        "process's file descriptors).",
    )
    caller_threads: int = Field(
        default=16,
        ge=0,
        le=10_000,
        description="Worker threads the requests of one caller (a token's or OIDC user; a client "
        "address on an open hub) may hold at once, of the process's 40 (GraphQL, exports, "
        "uploads, OpenLineage events); its other requests "
        "wait their turn (0: no cap). Forty slow queries from one caller held every thread, "
        "and every other caller's requests waited behind them.",
    )
    request_time_budget: float = Field(
        default=2.0,
        gt=0,
        description="Seconds the server may spend parsing and validating one GraphQL request "
        "(in a worker thread); past it the request is refused.",
    )
    allowed_hosts: str = Field(
        default="localhost,127.0.0.1,::1",
        description="Comma-separated names the server answers to in the Host header "
        "('*.example.com' for subdomains, '*' for any); other hosts get 400, which keeps "
        "DNS-rebinding web pages out.",
    )

    auth: str = Field(
        default="none",
        description="How the server authenticates requests: none, tokens (API tokens), oidc "
        "(bearer JWTs), or tokens,oidc. 'none' is allowed on a loopback address only.",
    )
    oidc_issuer: str | None = Field(
        default=None, description="With auth oidc: the issuer ('iss') tokens must name."
    )
    oidc_audience: str | None = Field(
        default=None, description="With auth oidc: the audience ('aud') tokens must name."
    )
    oidc_jwks_url: str | None = Field(
        default=None, description="With auth oidc: the URL of the issuer's JWKS (signing keys)."
    )
    oidc_username_claim: str | None = Field(
        default=None,
        description="With auth oidc: the claim naming the user (default: preferred_username, "
        "else sub); grants come from the hub's users of that name.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="The API token the SDK and CLI send to a hub server (never shown or logged).",
    )
    token_file: Path | None = Field(
        default=None,
        description="A file holding the API token (mode 0600: refused when group or others can "
        "read it); used when LINEAGEHUB_TOKEN is unset.",
    )
    rate_limit: int = Field(
        default=0,
        ge=0,
        description="Requests per minute the server accepts from one principal (token or user); "
        "beyond it 429 with Retry-After. 0: no limit.",
    )
    cors_origins: str = Field(
        default="",
        description="Comma-separated origins (https://app.example.com) whose web pages may call "
        "the API from a browser (CORS). Unset: none, and browsers refuse cross-origin calls.",
    )
    graphiql: bool = Field(
        default=True,
        description="Serve GraphiQL (the in-browser query editor, from the package's own "
        "files) at /graphql; false: the page and its assets answer 404.",
    )
    explorer: bool = Field(
        default=True,
        description="Serve the lineage explorer (the web page for search, lineage, runs and "
        "the registry, from the package's own files) at /; false: it answers 404.",
    )

    @field_validator("webhooks", mode="before")
    @classmethod
    def _webhooks_json(cls, value: Any) -> Any:
        # A list (of mappings or WebhookConfig) given in Python is kept as JSON text.
        if isinstance(value, (list, tuple)):
            from lineagehub.services.webhooks import WebhookConfig

            items = [
                {
                    "url": v.url,
                    "secret": v.secret.decode() if isinstance(v.secret, bytes) else v.secret,
                    "events": "*" if v.events == "*" else sorted(str(e) for e in v.events),
                    "max_attempts": v.max_attempts,
                    "backoff_base": v.backoff_base,
                    "backoff_max": v.backoff_max,
                    "timeout": v.timeout,
                }
                if isinstance(v, WebhookConfig)
                else v
                for v in value
            ]
            return json.dumps(items)
        return value

    def __repr_args__(self) -> Any:
        # URLs may carry a password (http://user:pass@host): shown redacted, as in logs
        from lineagehub.graph.uri import redact

        for name, value in super().__repr_args__():
            if isinstance(value, str) and name in ("store", "url", "artifacts", "s3_endpoint_url"):
                value = redact(value)
            yield name, value

    def allowed_host_names(self) -> list[str]:
        """``allowed_hosts`` as a list of names."""
        return [n.strip() for n in self.allowed_hosts.split(",") if n.strip()]

    def cors_origin_list(self) -> list[str]:
        """``cors_origins`` as a list (trailing slashes dropped: an origin has no path)."""
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def webhook_configs(self) -> list[WebhookConfig]:
        """The configured endpoints (``ConfigError`` if ``webhooks`` is malformed)."""
        from lineagehub.services.webhooks import parse_webhooks

        if self.webhooks is None:
            return []
        return parse_webhooks(self.webhooks.get_secret_value())

    @property
    def store_uri(self) -> str:
        """The graph store URI in force: ``store``, or the embedded default."""
        if self.store:
            return self.store
        return f"sqlite:///{(self.data_dir / 'hub.db').expanduser().resolve()}"

    @property
    def artifact_uri(self) -> str:
        """The artifact store URI in force: ``artifacts``, or a folder beside the embedded
        store."""
        if self.artifacts:
            return self.artifacts
        uri = self.store_uri
        if uri.startswith("sqlite:///") and uri not in ("sqlite:///:memory:",):
            db = Path(uri[len("sqlite:///") :]).expanduser().resolve()
            return (db.parent / "artifacts").as_uri()
        return (self.data_dir.expanduser().resolve() / "artifacts").as_uri()

    def artifact_options(self) -> dict[str, Any]:
        """Options for :func:`lineagehub.artifacts.open_artifact_store`."""
        if self.artifact_uri.startswith("s3://") and self.s3_endpoint_url:
            return {"endpoint_url": self.s3_endpoint_url}
        return {}

    def store_options(self) -> dict[str, Any]:
        """Backend options for :func:`lineagehub.graph.open_store` (credentials for Neo4j)."""
        from lineagehub.graph.uri import NEO4J_SCHEMES

        scheme = self.store_uri.split(":", 1)[0].lower()
        if scheme not in NEO4J_SCHEMES:
            return {}
        options: dict[str, Any] = {"user": self.neo4j_user}
        if self.neo4j_password is not None:
            options["password"] = self.neo4j_password.get_secret_value()
        if self.neo4j_database:
            options["database"] = self.neo4j_database
        return options

    def auth_methods(self) -> frozenset[str]:
        """``auth`` as a set of methods (empty: none); :class:`ConfigError` if malformed or
        OIDC lacks its settings."""
        from lineagehub.graph import ConfigError

        words = {w.strip().lower() for w in self.auth.split(",") if w.strip()}
        methods = frozenset(words - {"none"})
        unknown = methods - {"tokens", "oidc"}
        if unknown or ("none" in words and methods):
            raise ConfigError(
                f"LINEAGEHUB_AUTH must be none, tokens, oidc or tokens,oidc, not {self.auth!r:.60}"
            )
        if "oidc" in methods:
            missing = [
                f"LINEAGEHUB_OIDC_{name.upper()}"
                for name in ("issuer", "audience", "jwks_url")
                if not getattr(self, f"oidc_{name}")
            ]
            if missing:
                raise ConfigError(f"LINEAGEHUB_AUTH=oidc needs {', '.join(missing)}")
        return methods

    def bearer_token(self) -> str | None:
        """The API token to send: ``token``, else the content of ``token_file`` (a
        :class:`ConfigError` when the file is missing or readable by group or others)."""
        from lineagehub.graph import ConfigError

        if self.token is not None:
            return self.token.get_secret_value().strip() or None
        if self.token_file is None:
            return None
        path = self.token_file.expanduser()
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                raise ConfigError(
                    f"the token file {path} may be read by group or others (mode "
                    f"{mode & 0o777:o}): chmod 600 it"
                )
            return path.read_text(encoding="utf-8").strip() or None
        except OSError as e:
            raise ConfigError(f"cannot read the token file {path}: {e.strerror}") from None
