"""Process settings from environment variables, with defaults that work for the dev stack.

Each process builds one `Settings` in its entry point and passes it down; nothing here is read
at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(".data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/courseplatform"
    db_pool_size: int = 10
    db_max_overflow: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A connection attempt to PostgreSQL gives up after this (libpq connect_timeout, >= 2).
    db_connect_timeout_s: int = 5
    # gRPC health follows the database: `SELECT 1` this often, NOT_SERVING when it fails or
    # takes longer than the timeout (libs/health_watch.py).
    health_check_interval_s: float = 2.0
    health_check_timeout_s: float = 1.0

    # Where each gRPC service listens, and where clients find it.
    identity_port: int = 50051
    catalog_port: int = 50052
    learning_port: int = 50053
    identity_target: str = "127.0.0.1:50051"
    catalog_target: str = "127.0.0.1:50052"
    learning_target: str = "127.0.0.1:50053"
    grpc_bind_host: str = "127.0.0.1"
    # Deadline applied to every outgoing gRPC call that does not set its own.
    grpc_client_timeout_s: float = 5.0
    # How long a SIGTERM'd server lets in-flight calls finish.
    grpc_shutdown_grace_s: float = 10.0

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # Gateway processes (uvicorn workers sharing the port). One Python process uses one core at
    # a time; 2 doubles token_verify on a 2-core machine (docs/benchmarks.md).
    gateway_workers: int = 2
    max_body_bytes: int = 1_048_576

    # Token signing: identity keeps private keys in this directory and writes the public JWKS
    # next to them; every verifier reads only the JWKS file.
    jwt_keys_dir: Path = DATA_DIR / "keys"
    jwt_issuer: str = "courseplatform-identity"
    jwt_audience: str = "courseplatform"
    jwt_access_ttl_s: int = 900
    jwt_refresh_ttl_s: int = 14 * 24 * 3600
    jwt_leeway_s: int = 30

    # argon2id cost; see README "Password hashing" for the measurement behind these numbers.
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19 * 1024
    argon2_parallelism: int = 1

    log_level: str = "INFO"
    # None: JSON lines unless stderr is a terminal, then coloured human-readable lines
    # (libs/logging.py); LOG_JSON=true/false decides regardless of the terminal.
    log_json: bool | None = None
    # Bench diagnostics: count SQL statements per call and report them as the `x-sql-statements`
    # gRPC trailer / HTTP header (libs/sql_counting.py). Off: no listener, no cost.
    sql_statement_counting: bool = False

    # Notifier
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = 10.0
    mail_from: str = "Course Platform <no-reply@courseplatform.local>"
    mail_dir: Path = DATA_DIR / "mail"
    notifier_consumer: str | None = Field(default=None, description="consumer name in the group")
    # 20 deliveries, one per reclaim idle time: an SMTP outage of ~5 min before dead letters.
    notifier_max_attempts: int = 20
    # Reclaim idle 15 s and lease 10 s (renewed every third): a dead notifier's mail is taken
    # over within ~19 s; see docs/notifier.md "A notifier that dies".
    notifier_reclaim_idle_ms: int = 15_000
    notifier_health_port: int = 8001
    notifier_health_host: str = "127.0.0.1"
    # Quick retries inside one delivery (exponential backoff from this base) before the message
    # is left pending for a later delivery; see docs/notifier.md "Retries".
    notifier_retry_backoff_s: float = 0.5
    notifier_retries_per_delivery: int = 2
    # How long a SIGTERM'd notifier lets the mail in flight finish.
    notifier_shutdown_grace_s: float = 30.0
    notifier_lease_s: float = 10.0
    # How long recording `sent` after SMTP accepted is retried through a database outage.
    notifier_record_sent_retry_s: float = 30.0

    # Outbox relay
    outbox_poll_interval_s: float = 1.0
    outbox_batch_size: int = 100
    stream_maxlen: int = 100_000

    # Learning's copy of each course's lessons: even a fresh-looking copy is confirmed with the
    # catalog once it is this old (bounds a lost last CourseChanged event; docs/learning.md).
    lesson_copy_max_age_s: float = 300.0
    # Gateway cache of published courses and student list pages (gateway/course_cache.py,
    # docs/gateway.md "Course cache"), per worker process.
    course_cache_enabled: bool = True
    course_cache_max_entries: int = 1000
    course_cache_max_pages: int = 100
    # JSON bytes each of the two sides (courses, pages) may hold.
    course_cache_max_bytes: int = 64 * 1024 * 1024
    # An entry is dropped this long after its catalog read began, events or not: the bound on
    # staleness when catalog's relay is late to publish an event.
    course_cache_max_age_s: float = 1.0
    # The cache serves only while a stream read asked within this long has come back; each
    # XREAD blocks at most course_cache_block_ms, so a live reader answers often.
    course_cache_fresh_s: float = 0.75
    course_cache_block_ms: int = 250

    # `make run` (libs/devstack.py): the port of the embedded Redis it starts when REDIS_URL is
    # unset, and how long it waits for the gateway's /readyz/ before saying what it still lacks.
    embedded_redis_port: int = 6380
    devstack_ready_notice_s: float = 30.0

    # Accounts (docs/identity.md "Login throttling", "Password reset").
    # Failed logins per account (normalised email) and per client address within the window;
    # counted in Redis so every replica shares them.
    login_account_max_failures: int = 5
    login_ip_max_failures: int = 100
    login_window_s: int = 900
    # Gateway: comma-separated addresses/CIDRs of reverse proxies whose X-Forwarded-For is
    # believed; empty: the connection's address is the client's.
    trusted_proxies: str = ""
    # Identity: gRPC peers (comma-separated addresses/CIDRs) whose `x-client-address` metadata
    # is believed (the gateways); any other caller is throttled by its own peer address.
    trusted_gateways: str = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
    password_reset_ttl_s: int = 1800
    password_reset_mails_per_hour: int = 3
    # Links in mails point here (the reset page reads `?code=`).
    public_base_url: str = "http://localhost:8000"
    # Metrics (libs/metrics.py, README "Observing it"). METRICS_PORT, when set, is where the
    # process reading it serves /metrics (one port per pod); otherwise each gRPC service has its
    # own default and the gateway serves /metrics on its REST port unless GATEWAY_METRICS_PORT is
    # set. The notifier serves /metrics on its health port. METRICS_ENABLED=false: no metrics at
    # all (the bench's "metrics off").
    metrics_enabled: bool = True
    metrics_port: int | None = None
    identity_metrics_port: int = 9101
    catalog_metrics_port: int = 9102
    learning_metrics_port: int = 9103
    gateway_metrics_port: int | None = None
    # How often the outbox backlog (count, oldest age) is sampled for its gauges.
    metrics_sample_interval_s: float = 5.0
    # Traces (libs/tracing.py): exported over OTLP when the standard OTEL_EXPORTER_OTLP_ENDPOINT is
    # set; TRACING_ENABLED=true makes spans without exporting them (log trace ids, the bench).
    otel_exporter_otlp_endpoint: str | None = None
    tracing_enabled: bool = False
    # Notifier degraded health: SMTP failing for this long, or a dead letter within the interval.
    notifier_degraded_smtp_s: float = 60.0
    notifier_degraded_interval_s: float = 600.0
    # Overload (docs/overload.md). Deadline the gateway gives each request; every hop passes on
    # what is left of it (libs/deadlines.py). 0: none (each call then gets GRPC_CLIENT_TIMEOUT_S).
    request_deadline_s: float = 5.0
    # Requests one gateway worker works on at once; the excess is answered 503 + Retry-After at
    # once (gateway/load_shedding.py). 0: unlimited.
    gateway_max_in_flight: int = 64
    # Calls one gRPC service process works on at once; the excess gets RESOURCE_EXHAUSTED at once
    # (libs/concurrency_limit.py). Health and reflection are never counted. 0: unlimited.
    grpc_max_concurrent_calls: int = 64
    # Retry-After (seconds) of an overload answer.
    overload_retry_after_s: int = 1
    # Longest wait for a pooled database connection before the call answers UNAVAILABLE.
    db_pool_timeout_s: float = 2.0
    # statement_timeout of every database connection: bounds statements outside any deadline
    # (transactions inside one get the time left, SET LOCAL). 0: none.
    db_statement_timeout_s: float = 5.0
    # Password hashes (argon2id, threads) identity runs at once, and how many more may wait;
    # past that a login or registration answers 503 at once (services/identity/passwords.py).
    password_hash_concurrency: int = 2
    password_hash_queue: int = 32

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, value: str) -> str:
        return to_sqlalchemy_url(value)


def to_sqlalchemy_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as every other tool writes them) and pick psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def to_libpq_url(url: str) -> str:
    """The same URL without the SQLAlchemy driver suffix, for psycopg and command-line tools."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
