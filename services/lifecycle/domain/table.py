"""THE transition table: for every (status, command) the target status or the reason it is refused.

This is the single place that says which command may move a subscription from which status to
which. ``decide`` looks the cell up before running the command's handler, passes the target status
to it, and the handler only adds guards on the command's values and the clock (quantities, due
dates, grace periods); it never picks another status. The documentation table (docs/lifecycle.md)
is rendered from this data by :func:`render_markdown`.

A cell is a :class:`Status` (allowed, target), a :class:`Deny` (refused, whatever the variant), or
a mapping *variant -> Status | Deny* for commands whose target depends on a variant (see
:data:`VARIANTS` and :func:`variant_of`). The row ``None`` is "no subscription yet".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from services.lifecycle.domain.commands import Approve, Cancel, ChangePlan, ChangeQuantity, Command, Create
from services.lifecycle.domain.model import ENDED_STATUSES, CommandKind, Reason, Status, SubscriptionState


@dataclass(frozen=True)
class Deny:
    """A refused cell: reason code and a message for people."""

    code: Reason
    message: str


Target = Status | Deny
Cell = Target | Mapping[str, Target]
RowKey = Status | None  # None: the subscription does not exist yet

ROWS: Final[tuple[RowKey, ...]] = (None, *Status)

# Commands whose target depends on a variant; every mapping cell of the command has exactly these keys.
VARIANTS: Final[Mapping[CommandKind, tuple[str, ...]]] = MappingProxyType(
    {
        CommandKind.CREATE: ("manual", "trial", "auto"),
        CommandKind.APPROVE: ("trial", "no_trial"),
        CommandKind.CHANGE_PLAN: ("immediate", "period_end"),
        CommandKind.CHANGE_QUANTITY: ("immediate", "period_end"),
        CommandKind.CANCEL: ("immediate", "period_end"),
    }
)

S = Status
_NOT_FOUND = Deny(Reason.SUBSCRIPTION_NOT_FOUND, "no such subscription: create it first")
_EXISTS = Deny(Reason.ALREADY_EXISTS, "the subscription already exists")
_PENDING = Deny(Reason.AWAITING_APPROVAL, "the subscription is waiting for approval")
_ENDED = Deny(Reason.ENDED, "the subscription has ended")
_APPROVED = Deny(Reason.ALREADY_APPROVED, "the subscription was already approved")
_OUTSTANDING = Deny(Reason.PAYMENT_OUTSTANDING, "a payment is outstanding: settle it first")
_SUSPENDED = Deny(Reason.NOT_ALLOWED, "the subscription is suspended: reactivate it first")
_PAUSED = Deny(Reason.NOT_ALLOWED, "the subscription is paused: resume it first")
_NON_RENEWING = Deny(Reason.NOT_ALLOWED, "a cancellation is scheduled: undo it first")
_TRIAL_NO_BILLING = Deny(Reason.NOT_ALLOWED, "a trial has no paid period")
_NOT_IN_TRIAL = Deny(Reason.NOT_IN_TRIAL, "the subscription is not in trial")
_NOT_PAUSED = Deny(Reason.NOT_PAUSED, "the subscription is not paused")


def _already(status: Status) -> Deny:
    return Deny(Reason.ALREADY_IN_STATE, f"the subscription is already {status.value}")


# Per command: the cells that differ from the defaults below. Defaults: no subscription ->
# SUBSCRIPTION_NOT_FOUND, pending_approval -> AWAITING_APPROVAL, ended statuses -> ENDED,
# anything else -> NOT_ALLOWED. Every cell is spelled out in TRANSITIONS.
_RULES: dict[CommandKind, dict[RowKey, Cell]] = {
    CommandKind.CREATE: {
        None: {"manual": S.PENDING_APPROVAL, "trial": S.TRIAL, "auto": S.ACTIVE},
        **{s: _EXISTS for s in Status},
    },
    CommandKind.APPROVE: {
        S.PENDING_APPROVAL: {"trial": S.TRIAL, "no_trial": S.ACTIVE},
        **{s: _APPROVED for s in (S.TRIAL, S.ACTIVE, S.PAUSED, S.PAST_DUE, S.SUSPENDED, S.NON_RENEWING)},
    },
    CommandKind.REJECT: {
        # Refused requests end for good: a cancelled one could be reactivated, bypassing approval.
        S.PENDING_APPROVAL: S.TERMINATED,
        **{s: _APPROVED for s in (S.TRIAL, S.ACTIVE, S.PAUSED, S.PAST_DUE, S.SUSPENDED, S.NON_RENEWING)},
    },
    CommandKind.START_TRIAL: {
        S.ACTIVE: S.TRIAL,
        S.TRIAL: _already(S.TRIAL),
        S.PAUSED: _PAUSED,
        S.PAST_DUE: _OUTSTANDING,
        S.SUSPENDED: _SUSPENDED,
        S.NON_RENEWING: _NON_RENEWING,
    },
    CommandKind.CONVERT_TRIAL: {
        S.TRIAL: S.ACTIVE,
        **{s: _NOT_IN_TRIAL for s in (S.ACTIVE, S.PAUSED, S.PAST_DUE, S.SUSPENDED, S.NON_RENEWING)},
    },
    CommandKind.CHANGE_PLAN: {
        S.TRIAL: {
            "immediate": S.TRIAL,
            "period_end": Deny(Reason.INVALID_TIMING, "a trial has no period end: change immediately"),
        },
        S.ACTIVE: {"immediate": S.ACTIVE, "period_end": S.ACTIVE},
        S.NON_RENEWING: {
            "immediate": S.NON_RENEWING,
            "period_end": Deny(Reason.INVALID_TIMING, "the subscription ends at period end: nothing renews"),
        },
        S.PAUSED: _PAUSED,
        S.PAST_DUE: _OUTSTANDING,
        S.SUSPENDED: _SUSPENDED,
    },
    CommandKind.CHANGE_QUANTITY: {
        S.TRIAL: {
            "immediate": S.TRIAL,
            "period_end": Deny(Reason.INVALID_TIMING, "a trial has no period end: change immediately"),
        },
        S.ACTIVE: {"immediate": S.ACTIVE, "period_end": S.ACTIVE},
        S.NON_RENEWING: {
            "immediate": S.NON_RENEWING,
            "period_end": Deny(Reason.INVALID_TIMING, "the subscription ends at period end: nothing renews"),
        },
        S.PAUSED: _PAUSED,
        S.PAST_DUE: _OUTSTANDING,
        S.SUSPENDED: _SUSPENDED,
    },
    CommandKind.ADD_ADDON: {
        S.TRIAL: S.TRIAL,
        S.ACTIVE: S.ACTIVE,
        S.NON_RENEWING: S.NON_RENEWING,
        S.PAUSED: _PAUSED,
        S.PAST_DUE: _OUTSTANDING,
        S.SUSPENDED: _SUSPENDED,
    },
    CommandKind.REMOVE_ADDON: {
        S.TRIAL: S.TRIAL,
        S.ACTIVE: S.ACTIVE,
        S.NON_RENEWING: S.NON_RENEWING,
        S.PAUSED: _PAUSED,
        S.PAST_DUE: _OUTSTANDING,
        S.SUSPENDED: _SUSPENDED,
    },
    CommandKind.PAUSE: {
        S.ACTIVE: S.PAUSED,
        S.PAUSED: _already(S.PAUSED),
        S.TRIAL: Deny(Reason.NOT_ALLOWED, "a trial cannot be paused"),
        S.PAST_DUE: _OUTSTANDING,
        S.SUSPENDED: _SUSPENDED,
        S.NON_RENEWING: _NON_RENEWING,
    },
    CommandKind.RESUME: {
        S.PAUSED: S.ACTIVE,
        S.ACTIVE: _already(S.ACTIVE),
        **{s: _NOT_PAUSED for s in (S.TRIAL, S.PAST_DUE, S.SUSPENDED, S.NON_RENEWING)},
    },
    CommandKind.MARK_PAST_DUE: {
        S.ACTIVE: S.PAST_DUE,
        S.PAST_DUE: _already(S.PAST_DUE),
        S.TRIAL: _TRIAL_NO_BILLING,
        S.PAUSED: Deny(Reason.NOT_ALLOWED, "nothing is billed while paused"),
        S.SUSPENDED: _SUSPENDED,
        S.NON_RENEWING: Deny(Reason.NOT_ALLOWED, "the subscription ends at period end: nothing renews"),
    },
    CommandKind.PAYMENT_RECOVERED: {
        S.PAST_DUE: S.ACTIVE,
        S.ACTIVE: _already(S.ACTIVE),
        S.TRIAL: _TRIAL_NO_BILLING,
        S.PAUSED: Deny(Reason.NOT_ALLOWED, "the subscription is not past due"),
        S.SUSPENDED: _SUSPENDED,
        S.NON_RENEWING: Deny(Reason.NOT_ALLOWED, "the subscription is not past due"),
    },
    CommandKind.SUSPEND: {
        S.ACTIVE: S.SUSPENDED,
        S.PAST_DUE: S.SUSPENDED,
        S.SUSPENDED: _already(S.SUSPENDED),
        S.TRIAL: Deny(Reason.NOT_ALLOWED, "a trial is not suspended: let it expire or terminate it"),
        S.PAUSED: _PAUSED,
        S.NON_RENEWING: Deny(Reason.NOT_ALLOWED, "a cancellation is scheduled: cancel now or terminate"),
    },
    CommandKind.REACTIVATE: {
        S.SUSPENDED: S.ACTIVE,
        # Restore within the grace period (guarded): a new period starts with a new billing anchor.
        S.CANCELLED: S.ACTIVE,
        S.EXPIRED: S.ACTIVE,
        S.TERMINATED: Deny(Reason.ENDED, "a terminated subscription cannot be reactivated"),
        S.ACTIVE: _already(S.ACTIVE),
        S.TRIAL: Deny(Reason.NOT_ALLOWED, "a trial is not suspended"),
        S.PAUSED: Deny(Reason.NOT_ALLOWED, "the subscription is paused: resume it"),
        S.PAST_DUE: Deny(
            Reason.NOT_ALLOWED, "the subscription is past due: payment_recovered reactivates it"
        ),
        S.NON_RENEWING: Deny(Reason.NOT_ALLOWED, "a cancellation is scheduled: undo it"),
    },
    CommandKind.CANCEL: {
        S.PENDING_APPROVAL: {
            "immediate": S.CANCELLED,
            "period_end": Deny(Reason.INVALID_TIMING, "no term has started: cancel immediately"),
        },
        S.TRIAL: {
            "immediate": S.CANCELLED,
            "period_end": Deny(Reason.INVALID_TIMING, "a trial has no term: cancel immediately"),
        },
        S.ACTIVE: {"immediate": S.CANCELLED, "period_end": S.NON_RENEWING},
        S.PAUSED: {
            "immediate": S.CANCELLED,
            "period_end": Deny(Reason.INVALID_TIMING, "no term runs while paused: cancel immediately"),
        },
        S.PAST_DUE: {"immediate": S.CANCELLED, "period_end": _OUTSTANDING},
        S.SUSPENDED: {"immediate": S.CANCELLED, "period_end": _SUSPENDED},
        S.NON_RENEWING: {"immediate": S.CANCELLED, "period_end": _already(S.NON_RENEWING)},
        S.CANCELLED: _already(S.CANCELLED),
    },
    CommandKind.UNDO_SCHEDULED_CHANGE: {
        S.NON_RENEWING: S.ACTIVE,  # uncancel (a scheduled plan change, if any, stays scheduled)
        # drop the scheduled plan change (guarded: NOTHING_SCHEDULED when there is none)
        S.ACTIVE: S.ACTIVE,
        S.PAST_DUE: S.PAST_DUE,
        S.SUSPENDED: S.SUSPENDED,
        S.PAUSED: S.PAUSED,
        S.TRIAL: Deny(Reason.NOTHING_SCHEDULED, "nothing is scheduled in a trial"),
    },
    CommandKind.RENEW: {
        S.ACTIVE: S.ACTIVE,
        S.PAST_DUE: S.PAST_DUE,  # billing goes on while payment is chased
        S.SUSPENDED: S.SUSPENDED,  # suspension restricts instances, not billing
        S.NON_RENEWING: S.CANCELLED,  # the scheduled cancellation takes effect
        S.TRIAL: Deny(Reason.NOT_ALLOWED, "a trial converts or expires, it does not renew"),
        S.PAUSED: Deny(Reason.NOT_ALLOWED, "nothing renews while paused"),
    },
    CommandKind.EXPIRE: {
        S.TRIAL: S.EXPIRED,  # the trial ran out without conversion (guarded: not before trial end)
        S.PENDING_APPROVAL: S.EXPIRED,  # nobody approved in time
        S.PAST_DUE: S.EXPIRED,  # dunning exhausted
        S.EXPIRED: _already(S.EXPIRED),
        S.ACTIVE: Deny(Reason.NOT_ALLOWED, "an active subscription renews: cancel it"),
        S.PAUSED: _PAUSED,
        S.SUSPENDED: Deny(Reason.NOT_ALLOWED, "the subscription is suspended: cancel or terminate it"),
        S.NON_RENEWING: Deny(Reason.NOT_ALLOWED, "the subscription ends at period end by itself"),
    },
    CommandKind.TERMINATE: {
        **{s: S.TERMINATED for s in Status if s is not S.TERMINATED},
        S.TERMINATED: _already(S.TERMINATED),
    },
}


def _default(row: RowKey) -> Deny:
    if row is None:
        return _NOT_FOUND
    if row is S.PENDING_APPROVAL:
        return _PENDING
    if row in ENDED_STATUSES:
        return _ENDED
    return Deny(Reason.NOT_ALLOWED, f"not allowed in status {row.value}")


def _build() -> Mapping[tuple[RowKey, CommandKind], Cell]:
    table: dict[tuple[RowKey, CommandKind], Cell] = {}
    for kind in CommandKind:
        rules = _RULES[kind]
        for row in ROWS:
            cell = rules.get(row, _default(row))
            if isinstance(cell, Mapping):
                if tuple(cell) != VARIANTS[kind]:
                    raise AssertionError(f"cell ({row}, {kind}) must list the variants {VARIANTS[kind]}")
                cell = MappingProxyType(dict(cell))
            table[(row, kind)] = cell
    return MappingProxyType(table)


TRANSITIONS: Final[Mapping[tuple[RowKey, CommandKind], Cell]] = _build()


def variant_of(state: SubscriptionState | None, command: Command) -> str | None:
    """The variant of ``command`` that selects the target inside a mapping cell (None: no variants)."""
    if isinstance(command, Create):
        if command.approval == "manual":
            return "manual"
        return "trial" if command.effective_trial_days > 0 else "auto"
    if isinstance(command, Approve):
        return "trial" if state is not None and state.requested_trial_days > 0 else "no_trial"
    if isinstance(command, ChangePlan | ChangeQuantity | Cancel):
        return command.timing.value
    return None


def lookup(row: RowKey, kind: CommandKind, variant: str | None) -> Target:
    """The target (or refusal) the table gives for ``row`` x ``kind`` in ``variant``."""
    cell = TRANSITIONS[(row, kind)]
    if isinstance(cell, Mapping):
        if variant is None or variant not in cell:
            raise KeyError(f"{kind} needs one of the variants {tuple(cell)}, got {variant!r}")
        return cell[variant]
    return cell


def allowed_targets(row: RowKey, kind: CommandKind) -> frozenset[Status]:
    """Every status ``kind`` may lead to from ``row`` (empty: always refused)."""
    cell = TRANSITIONS[(row, kind)]
    targets = cell.values() if isinstance(cell, Mapping) else (cell,)
    return frozenset(t for t in targets if isinstance(t, Status))


def _render_target(target: Target) -> str:
    if isinstance(target, Status):
        return f"**{target.value}**"
    return f"rejected: {target.code.value}"


def render_markdown() -> str:
    """The transition table as Markdown: one row per status, one column per command."""
    header = "| status \\ command | " + " | ".join(f"`{k.value}`" for k in CommandKind) + " |"
    lines = [header, "|" + " --- |" * (len(CommandKind) + 1)]
    for row in ROWS:
        cells = []
        for kind in CommandKind:
            cell = TRANSITIONS[(row, kind)]
            if isinstance(cell, Mapping):
                cells.append("<br>".join(f"{v}: {_render_target(t)}" for v, t in cell.items()))
            else:
                cells.append(_render_target(cell))
        name = "*(none)*" if row is None else f"`{row.value}`"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
