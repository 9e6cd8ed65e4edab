"""Typed configuration, read once from the environment (prefix ``SOM_``); defaults run out of the box."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        default=20, description="longest a poll waits for records when none are buffered"
    )
    consumer_lanes: int = Field(
        default=6,
        description="partition lanes of one worker processed concurrently (each in its own transaction)",
    )
    consumer_max_poll_interval_ms: int = Field(
        default=1_800_000,
        description="how long a member may hold a batch (a lane waiting out a database outage) and stay in its group",
    )
    consumer_fetch_max_wait_ms: int = Field(
        default=20, description="longest a fetch waits for data; bounds the latency added per hop"
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

    # STACKIT Marketplace poller (STACKIT has no webhooks)
    stackit_base_url: str | None = Field(
        default=None, description="vendor API base URL; set = the vendor API is polled in the background"
    )
    stackit_token: str | None = Field(default=None, description="bearer token for the STACKIT vendor API")
    stackit_project_id: str | None = Field(default=None, description="the vendor's STACKIT project id")
    stackit_poll_seconds: float = Field(default=60.0, description="pause between two polls of the vendor API")
    stackit_page_size: int = Field(default=100, description="subscriptions per list request (cursor paging)")
    stackit_timeout_seconds: float = Field(default=10.0, description="HTTP timeout of one vendor API request")

    def group(self, service: str) -> str:
        """Consumer group of a service, inside the namespace."""
        return f"{self.topic_namespace}som.{service}"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
