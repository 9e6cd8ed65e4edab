"""Entitlement handlers: every change re-derives the sets of the whole customer, under its row lock.

A lifecycle change updates one subscription's inputs; an operator grant adds an override; a timer
re-evaluates at a grace end or an override's start or end; reconcile re-evaluates with the current
catalog and policy. Each recomputes every subscription set of the customer and the merged customer
set, publishes those that changed with ``version`` + 1 and ``previous_version``, appends them to
the history with the cause, and schedules one timer at the customer's next pending change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from services.entitlements import metrics
from services.entitlements.domain.entitlements import (
    Override,
    SubscriptionInputs,
    customer_body,
    data_cleanup_due,
    next_boundary,
    scheduled_after,
    subscription_body,
)
from services.entitlements.domain.policy import AccessPolicy
from services.entitlements.store import (
    EntitlementRecord,
    HistoryRow,
    LockedCustomer,
    PgEntitlementStore,
    PgSyncStore,
    PgUserStore,
    SavedCustomer,
    SavedSet,
)
from shared import timekeeping
from shared.catalog import Catalog
from shared.contracts import events as ev
from shared.contracts.envelope import CloudEvent, caused_by
from shared.db.uow import UnitOfWork
from shared.messaging import topics
from shared.messaging.runtime import Incoming

log = logging.getLogger("som.entitlements")
SOURCE = "som/entitlements"
E = TypeVar("E", ev.EntitlementsChanged, ev.CustomerEntitlementsChanged)
BOUNDARY_TIMER = "entitlements_boundary"


class EntitlementHandlers:
    """Handlers of ``subscriptions.events`` and ``entitlements.commands``."""

    def __init__(
        self, catalog: Catalog, policy: AccessPolicy, store: PgEntitlementStore | None = None
    ) -> None:
        self.catalog = catalog
        self.policy = policy
        self.store = store or PgEntitlementStore()
        self.sync = PgSyncStore()
        self.users = PgUserStore()

    async def on_subscription_event(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Apply a lifecycle change to its subscription's inputs and recompute the customer."""
        event = incoming.cloud_event()
        if event.type != ev.SUBSCRIPTION_STATE_CHANGED:
            return
        change: ev.SubscriptionStateChanged = event.payload(ev.SubscriptionStateChanged)
        # Wall time against the broker's timestamp (never business time: test clocks jump).
        metrics.SYNC_LAG.set(max(0.0, time.time() - incoming.timestamp_ms / 1000))
        snap = change.snapshot
        customer_id = snap.customer.customer_id
        state = await self.store.lock_customer_state(uow.conn, customer_id, change.subscription_id)
        locked, subs = state.locked, state.subscriptions
        known = subs.get(change.subscription_id)
        # Not among the customer's sets: new, or stored before customers were recorded.
        previous = (known.version, known.lifecycle_version) if known is not None else state.legacy
        if previous is not None and previous[1] >= change.version:
            log.info("stale lifecycle version %d for %s ignored", change.version, change.subscription_id)
            return
        before = known.inputs if known else None
        owner = snap.customer.email.strip().lower() if snap.customer.email else None
        if previous is None and owner:
            # The ordering customer, as the channel sent it, is the subscription's first user.
            await self.users.set_user(
                uow.conn,
                subscription_id=change.subscription_id,
                customer_id=customer_id,
                email=owner,
                role="owner",
                actor=change.actor,
                reason="ordering customer",
                cause_event_id=event.id,
            )
        if previous is None:
            # The other people the channel named (Azure purchaser ...), audited with the channel as actor.
            named: set[str] = set()
            for user in snap.users:
                email = user.email.strip().lower()
                if email == owner:
                    continue  # the ordering customer is the owner already: the strongest role
                if email in named:
                    await uow.flush_writes()  # its first change is queued: one statement changes a row once
                named.add(email)
                await self.users.set_user(
                    uow.conn,
                    subscription_id=change.subscription_id,
                    customer_id=customer_id,
                    email=email,
                    role=user.role,
                    actor=f"channel:{snap.channel}",
                    reason=f"{user.source or 'user'} named by {snap.channel}",
                    cause_event_id=event.id,
                )
        status_since = (
            before.status_since
            if before is not None and before.status == snap.status
            else change.effective_at
        )
        inputs = SubscriptionInputs(
            subscription_id=change.subscription_id,
            customer_id=customer_id,
            status=snap.status,
            channel=snap.channel,
            plan_id=snap.plan_id,
            quantity=snap.quantity,
            addons=tuple((a.plan_id, a.quantity) for a in snap.addons),
            status_since=status_since,
            grace_ends_at=snap.grace_period_ends_at,
            clock=snap.clock or timekeeping.SYSTEM_CLOCK,
            scheduled=scheduled_after(before.scheduled if before else (), change.events),
            current_period_start=snap.current_period_start,
            started_at=before.started_at if before is not None and before.started_at else change.effective_at,
        )
        await self._recompute(
            uow,
            event,
            customer_id,
            (locked, subs),
            overrides=state.overrides,
            at=change.effective_at,
            cause=(change.command, change.actor),
            changed=(inputs, change.version, previous[0] if previous else 0),
        )

    async def on_command(self, incoming: Incoming, uow: UnitOfWork) -> None:
        """Grants, snapshot requests, reconcile and timer re-evaluations."""
        event = incoming.cloud_event()
        if event.type != ev.ENTITLEMENTS_COMMAND:
            return
        cmd: ev.EntitlementCommand = event.payload(ev.EntitlementCommand)
        state = await self.store.lock_customer_state(uow.conn, cmd.customer_id)
        locked, subs = state.locked, state.subscriptions
        at = cmd.at or await timekeeping.clock_now(uow.conn, _clock_of(r.inputs for r in subs.values()))
        if cmd.command == "snapshot":
            await self._snapshot(uow, event, cmd.customer_id, locked, subs)
            return
        if cmd.command in ("user_add", "user_remove"):
            if (
                cmd.subscription_id is None
                or cmd.email is None
                or (cmd.command == "user_add") != bool(cmd.role)
            ):
                raise ValueError("a user change names a subscription, an email, and a role when adding")
            await self.users.set_user(
                uow.conn,
                subscription_id=cmd.subscription_id,
                customer_id=cmd.customer_id,
                email=cmd.email.strip().lower(),
                role=cmd.role if cmd.command == "user_add" else None,
                actor=cmd.actor,
                reason=cmd.reason,
                cause_event_id=event.id,
            )
            return
        if cmd.command == "grant":
            if cmd.feature is None:
                raise ValueError("a grant names a feature")  # the contract allows it: fail the message
            granted = Override(
                override_id=cmd.command_id,
                customer_id=cmd.customer_id,
                subscription_id=cmd.subscription_id,
                feature=cmd.feature,
                value=cmd.value,
                starts_at=cmd.starts_at or at,
                until=cmd.until,
                reason=cmd.reason or "",
                actor=cmd.actor,
            )
            await self.store.add_override(uow.conn, granted)
        await self._recompute(
            uow,
            event,
            cmd.customer_id,
            (locked, subs),
            overrides=None if cmd.command == "grant" else state.overrides,  # a grant adds one: read again
            at=at,
            cause=(cmd.command, cmd.actor),
            changed=None,
        )

    async def _recompute(
        self,
        uow: UnitOfWork,
        event: CloudEvent,
        customer_id: str,
        state: tuple[LockedCustomer, dict[str, EntitlementRecord]],
        *,
        overrides: list[Override] | None = None,
        at: datetime,
        cause: tuple[str, str],
        changed: tuple[SubscriptionInputs, int, int] | None,
    ) -> None:
        """Recompute the customer's sets at ``at`` (``state``: read under its row lock) and publish what changed.

        ``overrides``: the customer's, when already read under the lock (else read here). The
        sets, the customer's merged set and their history rows are written in one statement.
        """
        locked, subs = state
        customer_version, customer_current = locked.version, locked.body
        if locked.effective_at is not None and locked.effective_at > at:
            at = locked.effective_at  # never before the change already recorded: history stays ordered
        if overrides is None:
            overrides = await self.store.overrides(uow.conn, customer_id)
        history: list[HistoryRow] = []
        saved: list[SavedSet] = []
        bodies: dict[str, dict[str, Any]] = {}
        inputs_of = {sid: rec.inputs for sid, rec in subs.items() if rec.inputs is not None}
        if changed is not None:
            inputs_of[changed[0].subscription_id] = changed[0]
        for sid, inputs in sorted(inputs_of.items()):
            rec = subs.get(sid)
            body = {
                "customer_id": customer_id,
                "status": inputs.status,
                "plan_id": inputs.plan_id,
                **subscription_body(self.catalog, self.policy, inputs, overrides, at),
            }
            bodies[sid] = body
            await self._instructions(uow, event, inputs, rec.body if rec else None, body, at)
            lifecycle_version = rec.lifecycle_version if rec else 0
            version = rec.version if rec else 0
            if changed is not None and changed[0].subscription_id == sid:
                lifecycle_version, version = changed[1], max(version, changed[2])
            if rec is not None and rec.body == body:
                if lifecycle_version != rec.lifecycle_version or rec.inputs != inputs:
                    saved.append(SavedSet(sid, version, lifecycle_version, body, inputs))
                continue
            if rec is not None and int(body["instances"]) < int(rec.body.get("instances", 0)):
                await self._check_allowance(uow, event, sid, customer_id, int(body["instances"]), at)
            new_version = version + 1
            saved.append(SavedSet(sid, new_version, lifecycle_version, body, inputs))
            history.append(
                self._history("subscription", customer_id, sid, new_version, version, body, at, event, cause)
            )
            data = _set_event(
                ev.EntitlementsChanged, {"subscription_id": sid}, new_version, version, body, at
            )
            uow.emit(
                topics.ENTITLEMENTS_CHANGED,
                caused_by(
                    event,
                    type=ev.ENTITLEMENTS_CHANGED,
                    source=SOURCE,
                    subject=sid,
                    data=data,
                    discriminator=str(new_version),
                    time=at,
                ),
            )
        merged = customer_body(self.catalog, customer_id, bodies, overrides, at)
        customer_saved: SavedCustomer | None = None
        if merged != customer_current:
            new_version = customer_version + 1
            customer_saved = SavedCustomer(customer_id, new_version, merged, at)
            history.append(
                self._history(
                    "customer", customer_id, None, new_version, customer_version, merged, at, event, cause
                )
            )
            uow.emit(
                topics.ENTITLEMENTS_CUSTOMERS,
                caused_by(
                    event,
                    type=ev.CUSTOMER_ENTITLEMENTS_CHANGED,
                    source=SOURCE,
                    subject=customer_id,
                    data=_set_event(
                        ev.CustomerEntitlementsChanged,
                        {"customer_id": customer_id},
                        new_version,
                        customer_version,
                        merged,
                        at,
                    ),
                    discriminator=str(new_version),
                    time=at,
                ),
            )
        await self.store.save_all(uow.conn, saved, customer_saved, history)
        await self._schedule_boundary(
            uow, customer_id, locked.next_boundary, [*bodies.values(), merged], inputs_of.values()
        )

    async def _check_allowance(
        self, uow: UnitOfWork, event: CloudEvent, sid: str, customer_id: str, allowed: int, at: datetime
    ) -> None:
        """The allowance shrank (a downgrade, an end): instances already beyond it are a violation."""
        running = await self.sync.running_instances(uow.conn, sid)
        if len(running) <= allowed:
            return
        uow.emit(
            topics.ENTITLEMENTS_VIOLATION,
            caused_by(
                event,
                type=ev.ENTITLEMENTS_VIOLATION,
                source=SOURCE,
                subject=sid,
                data=ev.EntitlementViolation(
                    subscription_id=sid,
                    customer_id=customer_id,
                    allowed=allowed,
                    running=len(running),
                    instance_ids=running,
                    detected_at=at,
                ),
                discriminator=f"allowance:{allowed}",
            ),
        )

    async def _instructions(
        self,
        uow: UnitOfWork,
        event: CloudEvent,
        inputs: SubscriptionInputs,
        before: dict[str, Any] | None,
        after: dict[str, Any],
        at: datetime,
    ) -> None:
        """Tell provisioning to block (or allow again) new instances, and to clean up after the grace period."""
        sid = inputs.subscription_id
        wanted: list[tuple[str, str]] = []
        was = bool(before["can_create_instances"]) if before else False
        now = bool(after["can_create_instances"])
        if before is not None and was and not now and after["access"] != "revoked":
            wanted.append((f"block_new_instances:{sid}:{at.isoformat()}", "block_new_instances"))
        elif before is not None and not was and now:
            wanted.append((f"allow_new_instances:{sid}:{at.isoformat()}", "allow_new_instances"))
        if data_cleanup_due(inputs, at):
            assert inputs.grace_ends_at is not None
            wanted.append((f"data_cleanup:{sid}:{inputs.grace_ends_at.isoformat()}", "data_cleanup"))
        for instruction_id, kind in wanted:
            if not await self.sync.add_instruction(
                uow.conn, instruction_id, kind, sid, inputs.customer_id, at
            ):
                continue  # given before (a data cleanup is due on every later recompute too)
            uow.emit(
                topics.ENTITLEMENTS_INSTRUCTIONS,
                caused_by(
                    event,
                    type=ev.ENTITLEMENTS_INSTRUCTION,
                    source=SOURCE,
                    subject=sid,
                    data=ev.EntitlementInstruction(
                        instruction_id=instruction_id,
                        kind=kind,  # type: ignore[arg-type]
                        subscription_id=sid,
                        customer_id=inputs.customer_id,
                        effective_at=at,
                    ),
                    discriminator=instruction_id,
                    time=at,
                ),
            )

    async def _schedule_boundary(
        self,
        uow: UnitOfWork,
        customer_id: str,
        scheduled: datetime | None,
        bodies: list[dict[str, Any]],
        inputs: Iterable[SubscriptionInputs],
    ) -> None:
        """One timer per customer, at its next pending change: the timer re-evaluates then."""
        due = next_boundary(bodies)
        if due == scheduled:
            return  # the timer that is due then is already there (or none is needed)
        await self.store.set_boundary(uow.conn, customer_id, due)
        if scheduled is not None:
            await timekeeping.cancel_timers(uow, customer_id, [BOUNDARY_TIMER])
        if due is None:
            return
        cmd = ev.EntitlementCommand(
            command="recompute",
            customer_id=customer_id,
            command_id=f"boundary:{customer_id}:{due.isoformat()}",
            at=due,
            actor="system:timer",
        )
        await timekeeping.schedule(
            uow,
            subscription_id=customer_id,
            kind=BOUNDARY_TIMER,
            due_at=due,
            clock=_clock_of(inputs),
            topic=topics.ENTITLEMENTS_COMMANDS,
            event_type=ev.ENTITLEMENTS_COMMAND,
            payload=cmd,
        )

    async def _snapshot(
        self,
        uow: UnitOfWork,
        event: CloudEvent,
        customer_id: str,
        locked: LockedCustomer,
        subs: dict[str, EntitlementRecord],
    ) -> None:
        """Publish the current sets again, versions unchanged (a consumer saw a gap)."""
        version, body = locked.version, locked.body
        at = locked.effective_at or event.time
        for sid, rec in sorted(subs.items()):
            data = _set_event(
                ev.EntitlementsChanged, {"subscription_id": sid}, rec.version, rec.version - 1, rec.body, at
            )
            uow.emit(
                topics.ENTITLEMENTS_CHANGED,
                caused_by(
                    event,
                    type=ev.ENTITLEMENTS_CHANGED,
                    source=SOURCE,
                    subject=sid,
                    data=data,
                    discriminator=f"snapshot:{rec.version}",
                ),
            )
        if version > 0:
            uow.emit(
                topics.ENTITLEMENTS_CUSTOMERS,
                caused_by(
                    event,
                    type=ev.CUSTOMER_ENTITLEMENTS_SNAPSHOT,
                    source=SOURCE,
                    subject=customer_id,
                    data=_set_event(
                        ev.CustomerEntitlementsChanged,
                        {"customer_id": customer_id},
                        version,
                        version - 1,
                        body,
                        at,
                    ),
                    discriminator=f"snapshot:{version}",
                ),
            )

    @staticmethod
    def _history(
        scope: str,
        customer_id: str,
        subscription_id: str | None,
        version: int,
        previous: int,
        body: dict[str, Any],
        at: datetime,
        event: CloudEvent,
        cause: tuple[str, str],
    ) -> HistoryRow:
        return HistoryRow(scope, customer_id, subscription_id, version, previous, body, at, event.id, *cause)


def _set_event(
    model: type[E],
    owner: dict[str, str],
    version: int,
    previous: int,
    body: dict[str, Any],
    at: datetime | None,
) -> E:
    """A published set (a subscription's or the customer's merged one, by ``model``) from its body;
    ``owner`` names whose set it is (``subscription_id`` or ``customer_id``)."""
    return model.model_validate(
        {**body, **owner, "version": version, "previous_version": previous, "effective_at": at}
    )


def _clock_of(inputs: Iterable[SubscriptionInputs | None]) -> str:
    """The business clock of a customer's subscriptions (a test clock if any has one)."""
    clocks = sorted({i.clock for i in inputs if i is not None} - {timekeeping.SYSTEM_CLOCK})
    return clocks[0] if clocks else timekeeping.SYSTEM_CLOCK
