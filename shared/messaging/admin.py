"""Topic creation: every main topic, and the retry and dead-letter topics of each consumer group."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.messaging.topics import TopicSpec

log = logging.getLogger("som.admin")


async def ensure_topics(
    bootstrap: str, specs: list[TopicSpec], *, replication_factor: int = 1, attempts: int = 20
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created now."""
    last: Exception | None = None
    for _ in range(attempts):  # the broker may still be starting
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="som-admin")
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [s for s in specs if s.name not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [
                            NewTopic(
                                s.name, num_partitions=s.partitions, replication_factor=replication_factor
                            )
                            for s in missing
                        ]
                    )
                except TopicAlreadyExistsError:
                    pass  # created concurrently by another worker
            return [s.name for s in missing]
        except (KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.25)
        finally:
            await admin.close()
    raise RuntimeError(f"cannot create topics on {bootstrap}: {last}")
