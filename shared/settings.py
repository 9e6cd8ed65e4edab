"""Typed configuration, read once from the environment (prefix ``SOM_``); defaults run out of the box."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messaging.topics import consumer_group


class Settings(BaseSettings):
    """Every knob of the workers. Environment variables override, e.g. ``SOM_KAFKA_BOOTSTRAP``."""

    model_config = SettingsConfigDict(env_prefix="SOM_", env_file=None, extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset = start the embedded broker"
    )
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset = start the embedded PostgreSQL"
    )
    data_dir: Path = Field(default=Path(".som"), description="where the embedded database keeps its files")
    embedded_kafka_port: int = 0  # 0 = pick a free port
    embedded_database_preload: tuple[str, ...] = Field(
        default=(), description="libraries the embedded PostgreSQL loads at start (pg_stat_statements)"
    )
    topic_namespace: str = Field(
        default="", description="prefix for every topic and consumer group (isolates tests and tenants)"
    )
    default_partitions: int = 6
    topic_replication_factor: int = Field(default=1, description="3 on a production cluster")

    # Consumption and delivery
    retry_max_attempts: int = Field(default=4, description="attempts in all, the first one included")
    retry_backoff_seconds: tuple[float, ...] = (0.5, 2.0, 8.0)
    relay_poll_seconds: float = Field(default=1.0, description="outbox safety-net poll interval")
    relay_batch_size: int = 500
    relay_linger_ms: int = Field(
        default=1,
        description=(
            "how long the producer waits to fill a batch of retry and dead-letter copies (the relay "
            "builds and closes its own batches, which go out at once)"
        ),
    )
    relay_max_batch_bytes: int = Field(
        default=262_144,
        ge=16_384,
        le=1_048_576,
        description=(
            "largest record batch per partition of the relay's producer. aiokafka's default (16 KiB, "
            "about ten events) split a 500-row outbox batch into a produce request every few rows: "
            "3,700 produce requests for a 12,000-order bench against 210 at 256 KiB. At most the "
            "producer's request limit (1 MiB)"
        ),
    )

    consumer_session_timeout_ms: int = Field(
        default=10_000, description="group session timeout; the embedded broker delays a join by about half"
    )
    consumer_heartbeat_ms: int = 3_000
    consumer_concurrency: int = Field(
        default=1,
        description=(
            "group members per worker process; partitions already run in parallel as lanes inside one "
            "member, so more members only add rebalances"
        ),
    )
    consumer_batch_max_records: int = Field(
        default=500,
        description="most records one poll hands to the worker (one transaction per partition lane)",
    )
    consumer_batch_timeout_ms: int = Field(
        default=500,
        description="longest a poll waits for records when none are buffered (it ends when records arrive)",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="event loop of a worker process (asyncio: the standard library's)"
    )
    consumer_lanes: int | None = Field(
        default=None,
        ge=1,
        description="partition lanes of one worker processed concurrently, each in its own transaction "
        "(default: one per two CPU cores, at least one)",
    )
    consumer_max_poll_interval_ms: int = Field(
        default=1_800_000,
        description="how long a member may hold a batch (a lane waiting out a database outage) and stay in its group",
    )
    consumer_fetch_max_wait_ms: int = Field(
        default=100,
        description=(
            "longest an empty fetch waits for data. Apache Kafka answers early when records arrive; "
            "the embedded broker (Tansu) answers only at the end of the wait, so there it adds up to "
            "this much latency per hop (measured p50 30 ms at 100 ms). A short wait makes every idle "
            "consumer poll the broker (at 20 ms Tansu spent 15 % of a core on four idle consumers; at "
            "100 ms, 5 %)"
        ),
    )

    consumer_quiet_partition_ms: int = Field(
        default=1_000,
        ge=0,
        description=(
            "a partition whose records stopped this long ago is quiet: a worker's fetches name it only "
            "once per `consumer_quiet_sweep_ms` (0: every fetch names every partition). Intake's fetches "
            "name every channel's 66 partitions, each encoded and decoded by the worker and the broker "
            "(an idle Tansu spends about 0.05-0.14 ms on each); at 200 orders/s this cut the partitions "
            "named by 60 %"
        ),
    )
    consumer_quiet_sweep_ms: int = Field(
        default=100,
        ge=1,
        description=(
            "how often a worker's fetch also names its quiet partitions: the most a record on a quiet "
            "partition waits beyond one fetch while other partitions are busy (an idle worker sweeps "
            "on every fetch)"
        ),
    )
    retry_fetch_max_wait_ms: int = Field(
        default=2_000,
        description=(
            "longest an empty fetch of the retry topics waits for data. Retries wait their backoff "
            "anyway; on the embedded broker, which may answer only at the end of the wait, each "
            "fetch costs about 2-4 ms of its CPU, so an idle retry consumer at 500 ms cost it 6-15 ms a second"
        ),
    )

    scheduler_poll_seconds: float = Field(default=0.25, description="how often due timers are looked for")

    # Observability
    health_port_base: int = Field(
        default=0, description="first port of the workers' health/metrics servers; 0 = disabled"
    )
    health_port: int | None = Field(
        default=None, description="health/metrics port of a single worker (overrides the base, e.g. in a pod)"
    )
    log_level: str = "INFO"
    log_json: bool = True

    # Domain configuration
    catalog_path: Path | None = None
    entitlement_policy_path: Path | None = Field(
        default=None, description="access policy YAML of the entitlements worker (default: the packaged one)"
    )
    entitlement_ack_timeout_seconds: float | None = Field(
        default=None,
        description="an entitlement change or instruction not acknowledged this long is re-published "
        "(unset: provisioning does not acknowledge, nothing is re-published)",
    )
    charge_policy_path: Path | None = Field(
        default=None,
        validation_alias="SOM_BILLING_POLICY_PATH",
        description="SOM_BILLING_POLICY_PATH: another billing_policy.yaml for the billing worker (and its previews)",
    )

    # Channel webhook signatures (several secrets, comma-separated, are accepted during a rotation)
    stripe_webhook_secret: str | None = Field(
        default=None,
        description="Stripe endpoint secret(s) (whsec_...); set = unsigned or forged events are rejected",
    )
    shopify_webhook_secret: str | None = Field(
        default=None, description="Shopify app secret(s); set = X-Shopify-Hmac-Sha256 is required and checked"
    )

    # Bearer-JWT checks (RS256). Keys: a JWKS document (JSON) or PEM public keys / certificates.
    # Unset keys = no check for that channel (deliveries are taken as the receiver forwarded them).
    azure_webhook_keys: str | None = Field(
        default=None,
        description="Microsoft identity signing keys (JWKS JSON or PEM) for the Azure webhook JWT",
    )
    azure_webhook_audience: str | None = Field(
        default=None, description="the `aud` the Azure webhook JWT must carry (the app's client id)"
    )
    azure_webhook_issuers: str | None = Field(
        default=None,
        description="accepted `iss` values, comma-separated (e.g. https://sts.windows.net/<tenant>/)",
    )
    azure_webhook_check: Literal["jwt", "get_operation", "both"] = Field(
        default="jwt",
        description=(
            "how an Azure webhook is authenticated: its JWT (with azure_webhook_keys), a `get operation`"
            " call that confirms the operation exists (needs azure_fulfillment_base_url), or both"
        ),
    )
    gcp_push_keys: str | None = Field(
        default=None, description="Google signing keys (JWKS JSON or PEM) for the Pub/Sub push OIDC token"
    )
    gcp_push_audience: str | None = Field(default=None, description="the `aud` of the Pub/Sub push token")
    gcp_push_email: str | None = Field(
        default=None, description="the push subscription's service account (`email` claim, email_verified)"
    )
    gcp_push_issuers: str = Field(
        default="https://accounts.google.com,accounts.google.com", description="accepted `iss` values"
    )
    aws_sns_verify: bool = Field(default=False, description="verify AWS SNS message signatures (v1 and v2)")
    aws_sns_certificates: str | None = Field(
        default=None,
        description="JSON object SigningCertURL -> PEM, pinned certificates used instead of fetching them",
    )

    # STACKIT Marketplace poller (STACKIT has no webhooks)
    stackit_base_url: str | None = Field(
        default=None, description="vendor API base URL; set = the vendor API is polled in the background"
    )
    stackit_token: str | None = Field(default=None, description="bearer token for the STACKIT vendor API")
    stackit_project_id: str | None = Field(default=None, description="the vendor's STACKIT project id")
    stackit_poll_seconds: float = Field(default=60.0, description="pause between two polls of the vendor API")
    stackit_page_size: int = Field(default=100, description="subscriptions per list request (cursor paging)")
    stackit_timeout_seconds: float = Field(default=10.0, description="HTTP timeout of one vendor API request")
    stackit_test_clock: str | None = Field(
        default=None, description="test clock the polled STACKIT subscriptions join (tests, simulations)"
    )

    # Vendor APIs: lookups and outbound fulfilment (docs/intake-vendors.md). A channel's client exists
    # when its base URL is set. Credentials are SecretStr: never printed, never logged.
    azure_fulfillment_base_url: str | None = Field(
        default=None, description="SaaS Fulfillment API v2 base URL (https://marketplaceapi.microsoft.com)"
    )
    azure_fulfillment_token: SecretStr | None = Field(default=None, description="Entra ID bearer token")
    azure_patch_deadline_seconds: float = Field(
        default=10.0,
        description="Azure auto-accepts a ChangePlan/ChangeQuantity not PATCHed this long after its timeStamp",
    )
    gcp_procurement_base_url: str | None = Field(
        default=None,
        description="Partner Procurement API base URL (https://cloudcommerceprocurement.googleapis.com)",
    )
    gcp_procurement_token: SecretStr | None = Field(default=None, description="OAuth bearer token")
    gcp_provider_id: str | None = Field(default=None, description="the partner's provider id")
    aws_marketplace_base_url: str | None = Field(
        default=None, description="AWS Marketplace endpoint (entitlement, agreement, metering)"
    )
    aws_marketplace_token: SecretStr | None = Field(default=None, description="credential for the endpoint")
    aws_access_key_id: str | None = Field(
        default=None, description="set (with the secret): AWS Marketplace calls are SigV4-signed"
    )
    aws_secret_access_key: SecretStr | None = Field(default=None, description="AWS secret access key")
    aws_session_token: SecretStr | None = Field(default=None, description="temporary credentials' token")
    aws_region: str = Field(default="us-east-1", description="region of the SigV4 credential scope")
    aws_metered_dimensions: dict[str, str] = Field(
        default_factory=dict,
        description="catalog plan -> AWS metering dimension; a plan listed here is metered",
    )
    shopify_admin_base_url: str | None = Field(
        default=None, description="https://<shop>.myshopify.com: Admin GraphQL lookups of contracts"
    )
    shopify_admin_token: SecretStr | None = Field(default=None, description="Admin API access token")
    stackit_fulfilment: bool = Field(
        default=False,
        description="approve/reject STACKIT subscriptions by the lifecycle's decision (not the poller's policy)",
    )
    vendor_timeout_seconds: float = Field(default=10.0, description="timeout of one vendor API request")
    vendor_backoff_seconds: tuple[float, ...] = Field(
        default=(0.2, 1.0, 3.0), description="pauses between attempts of one vendor request"
    )
    fulfilment_delivery: bool = Field(
        default=True,
        description="run the vendor call delivery task in the intake worker (false: run it elsewhere)",
    )
    fulfilment_poll_seconds: float = Field(
        default=1.0, description="how often due vendor calls are looked for"
    )
    fulfilment_retry_seconds: tuple[float, ...] = Field(
        default=(1.0, 5.0, 30.0, 120.0), description="pauses before a failed vendor call is made again"
    )
    fulfilment_lease_seconds: float = Field(
        default=60.0, description="a call in flight this long is taken over (its maker died)"
    )

    # Operator console (som console)
    console_host: str = Field(default="127.0.0.1", description="address the console listens on")
    console_port: int = Field(default=8080, description="console port; `som up` starts it there (0 = not)")
    console_session_hours: float = Field(default=8.0, description="a console login lasts this long")
    console_login_limit: int = Field(
        default=5, description="failed logins per user and client address per minute before 429"
    )
    traces_url: str | None = Field(
        default=None, description="Jaeger UI base URL; set = the console links each audit row to its trace"
    )
    console_public_url: str | None = Field(
        default=None,
        description="the console's URL as browsers reach it (OIDC redirect); unset = the request's",
    )
    oidc_issuer: str | None = Field(
        default=None, description="OIDC issuer; set with client id and secret = SSO login"
    )
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = Field(default=None, repr=False)
    oidc_username_claim: str = Field(
        default="preferred_username", description="ID-token claim that names the console user"
    )

    def lanes(self) -> int:
        """Partition lanes processed at once: the setting, else one per two CPU cores (on a 2-core
        machine, where the workers, PostgreSQL and the broker share the cores, one measured fastest)."""
        return self.consumer_lanes or max(1, (os.cpu_count() or 2) // 2)

    def group(self, service: str) -> str:
        """Consumer group of a service, inside the namespace."""
        return consumer_group(self.topic_namespace, service)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
