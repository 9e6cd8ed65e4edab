"""``som simulate SCENARIO.yaml``: a subscription's life, step by step, through the real workers.

The scenario runs under a test clock: a customer, a plan and a start date, then dated steps
(change plan, change quantity, add-on, pause, resume, cancel, payment failure, advance the
clock). Between steps the clock moves through every timer that falls due (renewals, trial end,
resume dates, dunning retries, month ends), in order. The simulator also plays the payment
provider: it answers every payment request with success, except those a step says must fail.
The result is the timeline of states, invoices, credit notes, journal entries and entitlements.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.lifecycle import views as lifecycle_views
from shared.catalog.conventions import ChargeMode, ProrationConvention
from shared.contracts import commands as wire
from shared.contracts import events as ev
from shared.contracts.commands import CommandParams, Invoice, Timing, TimingInput
from shared.contracts.envelope import derived_id, make_event
from shared.db.pool import create_pool
from shared.messaging import topics
from shared.messaging.offsets import end_offsets, partitions_of
from shared.money import to_decimal
from shared.settings import Settings
from shared.timekeeping import LagProbe, advance_clock, create_clock, wait_quiet
from som.common import send_event
from som.orders import subscription_id_of


class ScenarioError(ValueError):
    """The scenario file is not valid."""


class ScenarioCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = "cus-sim"
    email: str | None = None
    name: str | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2, for tax")
    region: str = "eu"


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChangePlanAction(_Action):
    """``change_plan: {plan, timing?, quantity?, billing_interval?, invoice?}``.

    Without timing the plan-change rule decides. ``billing_interval`` changes the interval (the
    cycle restarts on the change date, or at the period end). ``invoice: now`` invoices the
    proration at once, ``next`` rolls it into the next invoice; unset, the billing policy decides.
    """

    plan: str
    timing: TimingInput | None = None
    quantity: int | None = None
    billing_interval: str | None = None
    invoice: Invoice | None = None


class ChangeQuantityAction(_Action):
    """``change_quantity: {quantity, timing?, invoice?}`` (or just ``change_quantity: N``, immediate)."""

    quantity: int
    timing: TimingInput = Timing.IMMEDIATE
    invoice: Invoice | None = None


class AddAddonAction(_Action):
    """``add_addon: {plan, quantity?}``."""

    plan: str
    quantity: int = 1


class PauseAction(_Action):
    """``pause: {resume_on?}``."""

    resume_on: date | None = None


class CancelAction(_Action):
    """``cancel: {timing?}``: ``immediate`` or ``period_end`` (the old ``end_of_term`` is read as that)."""

    timing: TimingInput = Timing.PERIOD_END


class PaymentFailureAction(_Action):
    """``payment_failure: {times?, reason?}``: the next payment attempts fail."""

    times: int = 1
    reason: str = "card_declined"


class GrantAction(_Action):
    """``grant: {feature, value?, until, reason?}``: an operator override for the customer (entitlements)."""

    feature: str
    value: int | None = None
    until: date
    reason: str = "scenario"


class PriceUpdateAction(_Action):
    """``price_update: {sku, unit_amount, currency?}``: a ``pricing.updated`` event effective at the step."""

    sku: str
    unit_amount: str
    currency: str | None = Field(default=None, description="default: the scenario's currency")


class ExtraSubscription(BaseModel):
    """Another subscription of the scenario's customer, ordered at ``start``; steps name it by ``key``."""

    model_config = ConfigDict(extra="forbid")
    key: str
    plan: str
    quantity: int = 1


class Step(BaseModel):
    """One dated step. Exactly one action key besides ``at`` (and ``before_renewal``, and
    ``subscription``, which names the target among ``more_subscriptions``; default the scenario's own).

    ``at`` is a date (the step acts at noon, after that day's midnight renewals) or a date
    and time in UTC (``2025-02-01T09:30:00Z``). ``before_renewal: true`` makes the step act
    at 00:00 of its day *before* that day's renewal runs (a change effective at the start
    of the new period is billed on that period's renewal invoice).
    """

    model_config = ConfigDict(extra="forbid")
    at: datetime | date
    before_renewal: bool = False
    subscription: str | None = None
    grant: GrantAction | None = None
    change_plan: ChangePlanAction | None = None
    change_quantity: int | ChangeQuantityAction | None = None
    add_addon: AddAddonAction | None = None
    remove_addon: str | None = None
    pause: PauseAction | None = None
    resume: bool | None = None
    cancel: CancelAction | None = None
    undo_cancel: bool | None = None
    payment_failure: PaymentFailureAction | None = None
    payment_method_updated: bool | None = None
    skip_delivery: bool | None = None  # replenishment: skip the next delivery
    delay_delivery: int | None = Field(
        default=None, ge=1, description="replenishment: days to delay the next one"
    )
    price_update: PriceUpdateAction | None = None
    advance: bool | None = None  # only move the clock

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        actions = [k for k, v in self.__dict__.items() if k not in _NOT_ACTIONS and v is not None]
        if len(actions) != 1:
            raise ValueError(f"step at {self.at} needs exactly one action, got {actions or 'none'}")
        if self.before_renewal and isinstance(self.at, datetime):
            raise ValueError(f"step at {self.at}: before_renewal takes a date, not a time")
        return self

    @property
    def action(self) -> str:
        return next(k for k, v in self.__dict__.items() if k not in _NOT_ACTIONS and v is not None)

    @property
    def day(self) -> date:
        """The business date of the step."""
        return self.at.astimezone(UTC).date() if isinstance(self.at, datetime) else self.at

    @property
    def moment(self) -> datetime:
        """When the step acts: its time, 00:00 before the renewal, or noon."""
        if isinstance(self.at, datetime):
            return self.at.astimezone(UTC) if self.at.tzinfo else self.at.replace(tzinfo=UTC)
        if self.before_renewal:
            return datetime.combine(self.at, time(0), tzinfo=UTC)
        return _at(self.at)

    @property
    def clock_target(self) -> datetime:
        """How far the test clock moves before the step acts (just short of midnight before a renewal)."""
        if self.before_renewal:
            return self.moment - timedelta(microseconds=1)
        return self.moment


_NOT_ACTIONS = ("at", "before_renewal", "subscription")


class ScenarioAccount(BaseModel):
    """``account: {billing_day}``: the account's billing cycle day (Kill Bill's BCD), 1..31."""

    model_config = ConfigDict(extra="forbid")
    billing_day: int | None = Field(default=None, ge=1, le=31)


class ScenarioConventions(BaseModel):
    """``conventions:``: the billing conventions the scenario's workers run with.

    ``proration`` replaces the catalog's convention (``day_count``, ``change_day_used``,
    ``rounding``); ``charge_mode`` sets plans' billing mode (``{pro: in_arrears}``); ``policy``
    is merged into the billing policy file (``{quantity_change: {presentation: difference}}``).
    """

    model_config = ConfigDict(extra="forbid")
    proration: ProrationConvention | None = None
    charge_mode: dict[str, ChargeMode] = Field(default_factory=dict)
    policy: dict[str, Any] = Field(default_factory=dict)
    plans: list[dict[str, Any]] = Field(
        default_factory=list,
        description="further catalog plans (a worked example's own prices), in the catalog file's format",
    )


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def convention_files(conventions: ScenarioConventions, folder: Path) -> dict[str, str]:
    """Write the catalog and billing policy the scenario asks for; the workers' environment for them.

    Raises :class:`ScenarioError` when a plan is unknown or the merged policy is not valid.
    """
    from services.billing.domain.policy import DEFAULT_POLICY_PATH, BillingPolicy
    from shared.catalog import DEFAULT_CATALOG_PATH, Catalog

    catalog = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    if conventions.proration is not None:
        catalog["proration"] = conventions.proration.model_dump()
    known = {p["id"] for p in catalog["plans"]}
    if clash := sorted(known & {str(p.get("id")) for p in conventions.plans}):
        raise ScenarioError(f"conventions.plans: plans already in the catalog {clash}")
    catalog["plans"].extend(conventions.plans)
    known |= {str(p.get("id")) for p in conventions.plans}
    if unknown := sorted(set(conventions.charge_mode) - known):
        raise ScenarioError(f"conventions.charge_mode: unknown plans {unknown}")
    for plan in catalog["plans"]:
        if plan["id"] in conventions.charge_mode:
            plan["charge_mode"] = conventions.charge_mode[plan["id"]]
    try:
        Catalog.model_validate(catalog)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ScenarioError(
            f"conventions.plans: {'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
        ) from exc
    policy = _merged(yaml.safe_load(DEFAULT_POLICY_PATH.read_text()), conventions.policy)
    try:
        BillingPolicy.model_validate(policy)
    except ValidationError as exc:
        raise ScenarioError(f"conventions.policy: {exc.errors()[0]['msg']}") from exc
    catalog_path, policy_path = folder / "catalog.yaml", folder / "billing_policy.yaml"
    catalog_path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return {"SOM_CATALOG_PATH": str(catalog_path), "SOM_BILLING_POLICY_PATH": str(policy_path)}


class Scenario(BaseModel):
    """A scenario file."""

    model_config = ConfigDict(extra="forbid")
    name: str
    source: str | None = Field(default=None, description="where the worked example comes from")
    customer: ScenarioCustomer = Field(default_factory=ScenarioCustomer)
    account: ScenarioAccount | None = None
    calendar_billing: bool = False
    conventions: ScenarioConventions | None = None
    backdate: date | None = Field(
        default=None, description="the subscription starts on this earlier date; it is created on `start`"
    )
    plan: str
    quantity: int = 1
    billing_interval: str = "P1M"
    currency: str = "USD"
    start: date
    trial: bool = False
    until: date | None = Field(default=None, description="advance the clock to this date after the last step")
    steps: list[Step] = Field(default_factory=list)
    more_subscriptions: list[ExtraSubscription] = Field(default_factory=list)
    entitlements_at: list[datetime] = Field(
        default_factory=list,
        description="instants the customer's entitlements are answered for from the history",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Scenario:
        dates = [self.start] + [s.day for s in self.steps]
        if dates != sorted(dates):
            raise ValueError("steps must be in date order, on or after start")
        keys = {m.key for m in self.more_subscriptions}
        unknown = {s.subscription for s in self.steps if s.subscription is not None} - keys
        if unknown:
            raise ValueError(f"steps name unknown subscriptions {sorted(unknown)}")
        if self.backdate is not None and self.backdate >= self.start:
            raise ValueError(f"backdate {self.backdate} must be before start {self.start}")
        return self


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        return Scenario.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"cannot read {path}: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ScenarioError(f"{path}: {where}: {first['msg']}") from exc


def step_command(step: Step) -> CommandParams | None:
    """The lifecycle command a step sends; ``None`` for steps that are no command (payments, advance)."""
    if step.change_plan is not None:
        c = step.change_plan
        return wire.ChangePlanParams(
            plan_id=c.plan,
            quantity=c.quantity,
            timing=c.timing,
            billing_interval=c.billing_interval,
            invoice=c.invoice,
        )
    if step.change_quantity is not None:
        q = step.change_quantity
        if isinstance(q, int):
            q = ChangeQuantityAction(quantity=q)
        return wire.ChangeQuantityParams(quantity=q.quantity, timing=q.timing, invoice=q.invoice)
    if step.add_addon is not None:
        return wire.AddAddonParams(addon_plan_id=step.add_addon.plan, quantity=step.add_addon.quantity)
    if step.remove_addon is not None:
        return wire.RemoveAddonParams(addon_plan_id=step.remove_addon)
    if step.pause is not None:
        return wire.PauseParams(resume_on=step.pause.resume_on)
    if step.resume:
        return wire.ResumeParams()
    if step.cancel is not None:
        return wire.CancelParams(timing=step.cancel.timing)
    if step.undo_cancel:
        return wire.UndoScheduledChangeParams()
    return None


def _at(day: date) -> datetime:
    # Steps happen at noon on their day: after that day's midnight renewals, as a person would act.
    return datetime.combine(day, time(12), tzinfo=UTC)


@dataclass
class _PlannedFailures:
    """Payment failures a step asked the simulated payment provider to return."""

    left: int = 0
    reason: str = "card_declined"


class Timeline:
    """Everything the workers published about the subscription, in order."""

    def __init__(self, subscription_id: str, others: tuple[str, ...] = ()) -> None:
        self.subscription_id = subscription_id
        self.subjects = {subscription_id, *others}  # more subscriptions, the customer (entitlements)
        self.entries: list[dict[str, Any]] = []

    def add(self, topic: str, event: dict[str, Any]) -> None:
        if event.get("subject") not in self.subjects:
            return
        data = event.get("data", {})
        kind = topic.rsplit(".", 2)[-2] + "." + topic.rsplit(".", 1)[-1] if "." in topic else topic
        entry: dict[str, Any] = {"time": event.get("time"), "topic": kind, "type": event.get("type")}
        if event["type"] == ev.SUBSCRIPTION_STATE_CHANGED:
            snap = data["snapshot"]
            if len(self.subjects) > 1:
                entry["subscription"] = data["subscription_id"]
            entry.update(
                what=f"{data['from_status'] or '-'} -> {data['to_status']}",
                command=data["command"],
                plan=snap["plan_id"],
                quantity=snap["quantity"],
                period=f"{snap.get('current_period_start') or ''}..{snap.get('current_period_end') or ''}",
                events=[e["type"] for e in data["events"]],
            )
        elif event["type"] in (ev.INVOICE_ISSUED, ev.CREDIT_NOTE_ISSUED):
            entry.update(
                what=f"{data['document_type']} {data['document_number']}",
                total=data["total"],
                amount_due=data["amount_due"],
                currency=data["currency"],
                issue_date=data["issue_date"],
                lines=[
                    {
                        k: line.get(k)
                        for k in (
                            "kind",
                            "description",
                            "service_period_start",
                            "service_period_end",
                            "amount",
                            "tax_amount",
                        )
                    }
                    | ({"price_basis": line["price_basis"]} if line.get("price_basis") else {})
                    for line in data["lines"]
                ],
            )
        elif event["type"] == ev.REPLENISHMENT_ORDER_CREATED:
            entry.update(
                what=f"replenishment order {data['order_id']} ({data['status']})",
                due_date=data["due_date"],
                quantity_ordered=data["quantity_ordered"],
                quantity_delivered=data["quantity_delivered"],
                subtotal=data["subtotal"],
                invoice_number=data["invoice_number"],
                lines=[
                    {k: line[k] for k in ("quantity", "unit_amount", "amount", "price_basis")}
                    for line in data["lines"]
                ],
            )
        elif event["type"] == ev.REPLENISHMENT_CYCLE_DELAYED:
            entry.update(
                what=f"replenishment delayed ({data['reason']})",
                due_date=data["due_date"],
                next_due=data["next_due"],
            )
        elif event["type"] == ev.ENTITLEMENTS_CHANGED:
            entry.update(
                what=f"entitlements v{data['version']} ({data['status']})",
                features=data["features"],
                can_create_instances=data["can_create_instances"],
            )
            if len(self.subjects) > 1:
                entry.update(
                    subscription=data["subscription_id"],
                    access=data.get("access"),
                    limits=data.get("limits"),
                    pending=data.get("pending", []),
                )
        elif event["type"] == ev.CUSTOMER_ENTITLEMENTS_CHANGED:
            entry.update(
                what=f"customer entitlements v{data['version']} ({data['access']})",
                features=data["features"],
                limits=data["limits"],
                overrides=data["overrides"],
                pending=data["pending"],
            )
        elif event["type"] == ev.JOURNAL_ENTRY_POSTED:
            entry.update(what=f"journal {data.get('kind', '')}".strip(), lines=data.get("lines"))
        else:
            entry.update(what=event["type"], data=data)
        self.entries.append(entry)


async def run_scenario(settings: Settings, scenario: Scenario) -> dict[str, Any]:
    """Run ``scenario`` against the running workers of ``settings`` (a fresh namespace)."""
    assert settings.kafka_bootstrap and settings.database_url
    ns = settings.topic_namespace
    bootstrap = settings.kafka_bootstrap
    clock = f"{ns}sim-{uuid.uuid4().hex[:6]}"
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    await create_clock(pool, clock, _at(scenario.start))
    order: dict[str, Any] = {
        "order_id": f"sim-{uuid.uuid4().hex[:10]}",
        "customer": {
            "id": scenario.customer.id,
            "email": scenario.customer.email,
            "name": scenario.customer.name,
            "region": scenario.customer.region,
        },
        "plan": scenario.plan,
        "quantity": scenario.quantity,
        "billing_interval": scenario.billing_interval,
        "currency": scenario.currency,
        "effective_at": _at(scenario.start).isoformat().replace("+00:00", "Z"),
        "trial": scenario.trial,
    }
    # A billing day or calendar billing is a term of the lifecycle's create command, which the
    # direct order format does not carry: such scenarios send the create command themselves.
    direct_create = bool(
        scenario.calendar_billing
        or scenario.backdate is not None
        or (scenario.account is not None and scenario.account.billing_day)
    )
    sub_id = derived_id("simulation", order["order_id"]) if direct_create else subscription_id_of(order)
    extra_orders = {
        m.key: {**order, "order_id": f"sim-{uuid.uuid4().hex[:10]}", "plan": m.plan, "quantity": m.quantity}
        for m in scenario.more_subscriptions
    }
    sub_ids: dict[str | None, str] = {
        None: sub_id,
        **{k: subscription_id_of(o) for k, o in extra_orders.items()},
    }
    customer_id = derived_id("customer", "direct", scenario.customer.id)  # intake's internal id
    about_entitlements = bool(
        scenario.more_subscriptions or scenario.entitlements_at or any(st.grant for st in scenario.steps)
    )
    others = (*(v for k, v in sub_ids.items() if k is not None), customer_id) if about_entitlements else ()
    timeline = Timeline(sub_id, others)
    watched = [
        f"{ns}{t}"
        for t in (
            topics.SUBSCRIPTIONS_EVENTS,
            topics.BILLING_INVOICES,
            topics.ENTITLEMENTS_CHANGED,
            topics.ACCOUNTING_JOURNAL,
            topics.PAYMENTS_REQUESTS,
            topics.SUBSCRIPTIONS_COMMAND_REJECTIONS,
            topics.NOTIFICATIONS,
            topics.ENTITLEMENTS_CUSTOMERS,
            topics.ORDERS_REPLENISHMENT,
        )
    ]
    consumer = AIOKafkaConsumer(
        *watched,
        bootstrap_servers=bootstrap,
        group_id=f"{ns}som.simulator",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        # Tansu answers an empty fetch only when its wait is over: a short one keeps the pump
        # right behind the workers, and a settled step waits for the pump (see ``caught_up``).
        fetch_max_wait_ms=20,
    )
    # Group-less, for the true ends of the watched topics once the system is quiet.
    ends_reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await ends_reader.start()
    # One lag probe for every quiet wait of the scenario (opening one decodes the cluster's metadata).
    probe = LagProbe(bootstrap, ns)
    await probe.__aenter__()
    processed: dict[TopicPartition, int] = {}  # next offset the pump has not handled yet
    await producer.start()
    failures_of = {v: _PlannedFailures() for v in sub_ids.values()}  # each subscription's own
    rejections: list[dict[str, Any]] = []

    async def pump() -> None:
        """Read what the workers publish; answer payment requests like a payment provider."""
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, recs in batch.items():
                for r in recs:
                    event = json.loads(r.value)
                    topic = r.topic.removeprefix(ns)
                    if topic == topics.PAYMENTS_REQUESTS and event.get("subject") in sub_ids.values():
                        await answer_payment(event)
                    if topic == topics.SUBSCRIPTIONS_COMMAND_REJECTIONS and event.get("subject") == sub_id:
                        rejections.append(event["data"])
                    timeline.add(topic, event)
                    processed[tp] = r.offset + 1

    async def answer_payment(request: dict[str, Any]) -> None:
        data = request["data"]
        failures = failures_of[str(request["subject"])]
        failed = failures.left > 0
        if failed:
            failures.left -= 1
        result = ev.PaymentResult.model_validate(
            {
                **{
                    k: data[k]
                    for k in ("subscription_id", "document_number", "amount", "currency", "attempt")
                    if k in data
                },
                "outcome": "failed" if failed else "succeeded",
                "failure_reason": failures.reason if failed else None,
                "processed_at": request["time"],
            }
        )
        paid = str(request["subject"])
        event = make_event(
            type=ev.PAYMENT_RESULT,
            source="som/simulator",
            subject=paid,
            data=result,
            correlation_id=request["correlationid"],
            causation_id=request["id"],
        )
        await send_event(producer, f"{ns}{topics.PAYMENTS_RESULTS}", event)

    async def command(moment: datetime, params: CommandParams, target: str = sub_id) -> None:
        cmd = ev.SubscriptionCommand(
            subscription_id=target,
            idempotency_key=f"sim:{target}:{moment.isoformat()}:{params.command}",
            channel="direct",
            effective_at=moment,
            actor="user:simulator",
            params=params,
        )
        corr = derived_id("simulation", target)
        event = make_event(
            type=ev.SUBSCRIPTION_COMMAND,
            source="som/simulator",
            subject=target,
            data=cmd,
            correlation_id=corr,
            causation_id=derived_id(cmd.idempotency_key),
        )
        await send_event(producer, f"{ns}{topics.SUBSCRIPTIONS_COMMANDS}", event)

    async def caught_up(timeout: float = 30.0) -> None:
        """Wait until the pump has handled every record of the watched topics (their true ends)."""
        ends = await end_offsets(ends_reader, await partitions_of(ends_reader, watched))
        ends_reader.pause(*ends)  # fetched again only by the next check, which assigns them afresh
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(processed.get(tp, 0) < end for tp, end in ends.items()):
            if pumping.done():
                pumping.result()  # the pump's own failure, if it has one
                raise RuntimeError("the simulator's reader stopped")
            if loop.time() > deadline:
                raise TimeoutError("the simulator's reader did not reach the end of the watched topics")
            await asyncio.sleep(0.01)

    async def settle() -> None:
        await wait_quiet(pool, bootstrap, ns, clock, timeout=120, probe=probe)
        # The pump reads what the last step caused (and answers its payment requests, which the
        # next step's wait then sees as work): waited for, not guessed with a pause.
        await caught_up()

    pumping = asyncio.create_task(pump())
    try:
        headers = [("som-test-clock", clock.encode())]
        if scenario.customer.country:
            headers.append(("country", scenario.customer.country.encode()))
        if direct_create:
            c = scenario.customer
            await command(
                _at(scenario.backdate or scenario.start),
                wire.CreateParams(
                    plan_id=scenario.plan,
                    quantity=scenario.quantity,
                    billing_interval=scenario.billing_interval,
                    currency=scenario.currency,
                    customer=wire.Customer(
                        customer_id=c.id, email=c.email, name=c.name, country=c.country, region=c.region
                    ),
                    trial=scenario.trial,
                    clock=clock,
                    cycle_day=scenario.account.billing_day if scenario.account else None,
                    calendar_cycle=scenario.calendar_billing,
                ),
            )
        else:
            await producer.send_and_wait(
                f"{ns}{topics.inbound('direct')}",
                value=json.dumps(order).encode(),
                key=str(order["order_id"]).encode(),
                headers=headers,
            )
        for extra in extra_orders.values():
            await producer.send_and_wait(
                f"{ns}{topics.inbound('direct')}",
                value=json.dumps(extra).encode(),
                key=str(extra["order_id"]).encode(),
                headers=headers,
            )
        await settle()
        for step in scenario.steps:
            await advance_clock(pool, bootstrap, ns, clock, step.clock_target, probe=probe)
            a = step.action
            params = step_command(step)
            if params is not None:
                await command(step.moment, params, sub_ids[step.subscription])
            elif a == "grant":
                assert step.grant is not None
                g = ev.EntitlementCommand(
                    command="grant",
                    customer_id=customer_id,
                    command_id=f"grant:sim:{customer_id}:{step.day}:{step.grant.feature}",
                    feature=step.grant.feature,
                    value=step.grant.value,
                    starts_at=step.moment,
                    until=_at(step.grant.until),
                    reason=step.grant.reason,
                    actor="user:simulator",
                )
                grant_event = make_event(
                    type=ev.ENTITLEMENTS_COMMAND,
                    source="som/simulator",
                    subject=customer_id,
                    data=g,
                    correlation_id=derived_id("simulation", customer_id),
                    causation_id=derived_id(g.command_id),
                )
                await send_event(producer, f"{ns}{topics.ENTITLEMENTS_COMMANDS}", grant_event)
            elif a in ("skip_delivery", "delay_delivery"):
                target = sub_ids[step.subscription]
                r_params: wire.ReplenishmentParams = (
                    wire.DelayNextParams(days=step.delay_delivery)
                    if step.delay_delivery is not None
                    else wire.SkipNextParams()
                )
                r_cmd = ev.ReplenishmentCommand(
                    subscription_id=target,
                    command_id=f"sim:{target}:{step.moment.isoformat()}:{a}",
                    params=r_params,
                )
                r_event = make_event(
                    type=ev.REPLENISHMENT_COMMAND,
                    source="som/simulator",
                    subject=target,
                    data=r_cmd,
                    correlation_id=derived_id("simulation", target),
                    causation_id=derived_id(r_cmd.command_id),
                )
                await send_event(producer, f"{ns}{topics.REPLENISHMENT_COMMANDS}", r_event)
            elif a == "price_update":
                assert step.price_update is not None
                p = step.price_update
                price = ev.PricingUpdated(
                    sku=p.sku,
                    currency=(p.currency or scenario.currency).upper(),
                    unit_amount=to_decimal(p.unit_amount),
                    effective_at=step.moment,
                )
                p_event = make_event(
                    type=ev.PRICING_UPDATED,
                    source="som/simulator",
                    subject=p.sku,
                    data=price,
                    correlation_id=derived_id("simulation", sub_id),
                    causation_id=derived_id("price", p.sku, step.moment.isoformat()),
                )
                await send_event(producer, f"{ns}{topics.PRICING_UPDATED}", p_event)
            elif a == "payment_failure":
                assert step.payment_failure is not None
                failures = failures_of[sub_ids[step.subscription]]
                failures.left += step.payment_failure.times
                failures.reason = step.payment_failure.reason
            elif a == "payment_method_updated":
                update = ev.PaymentMethodUpdated(subscription_id=sub_id, updated_at=step.moment)
                event = make_event(
                    type=ev.PAYMENT_METHOD_UPDATED,
                    source="som/simulator",
                    subject=sub_id,
                    data=update,
                    correlation_id=derived_id("simulation", sub_id),
                    causation_id=derived_id("pmu", sub_id, step.moment.isoformat()),
                )
                await send_event(producer, f"{ns}{topics.PAYMENTS_RESULTS}", event)
            await settle()
        if scenario.until:
            await advance_clock(pool, bootstrap, ns, clock, _at(scenario.until), probe=probe)
            await settle()
        status = await lifecycle_views.status(pool, sub_id)
        history = await _entitlements_at(pool, customer_id, scenario.entitlements_at)
        statuses = {k: await lifecycle_views.status(pool, v) for k, v in sub_ids.items() if k is not None}
    finally:
        pumping.cancel()
        await asyncio.gather(pumping, return_exceptions=True)
        await probe.__aexit__()
        await consumer.stop()
        await ends_reader.stop()
        await producer.stop()
        await pool.close()
    return {
        "scenario": scenario.name,
        "subscription_id": sub_id,
        "final_status": status,
        "timeline": timeline.entries,
        "command_rejections": rejections,
        "totals": _totals(timeline.entries),
        **(
            {
                "customer_id": customer_id,
                "more_subscriptions": {
                    k: {"subscription_id": sub_ids[k], "final_status": v} for k, v in statuses.items()
                },
                "entitlements_at": history,
            }
            if about_entitlements
            else {}
        ),
    }


async def _entitlements_at(pool: Any, customer_id: str, instants: list[datetime]) -> list[dict[str, Any]]:
    """The customer's entitlements at each instant, answered from the append-only history."""
    from services.entitlements import views as entitlement_views

    out = []
    for t in instants:
        when = t if t.tzinfo else t.replace(tzinfo=UTC)
        found = await entitlement_views.set_at(pool, customer_id, when)
        body = dict(found["body"]) if found else {}
        out.append(
            {
                "at": when.isoformat(),
                "version": found["version"] if found else None,
                "access": body.get("access"),
                "features": body.get("features", []),
                "limits": body.get("limits", {}),
                "overrides": body.get("overrides", []),
                "pending": body.get("pending", []),
                "cause": f"{found['cause_command']} by {found['cause_actor']}" if found else None,
            }
        )
    return out


def _totals(entries: list[dict[str, Any]]) -> dict[str, str]:
    from decimal import Decimal

    invoiced = sum(
        (
            Decimal(e["total"])
            for e in entries
            if e.get("type") == ev.INVOICE_ISSUED and Decimal(e["total"]) >= 0
        ),
        Decimal(0),
    )
    credited = sum(
        (
            Decimal(e["total"])
            for e in entries
            if e.get("type") in (ev.INVOICE_ISSUED, ev.CREDIT_NOTE_ISSUED) and Decimal(e["total"]) < 0
        ),
        Decimal(0),
    )
    return {"invoiced": str(invoiced), "credited": str(credited), "net": str(invoiced + credited)}


TimelineFormat = Literal["table", "json"]
