"""Exhaustive: every (status, command, variant) is tried and does exactly what the transition table says."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from services.lifecycle.domain import (
    ENDED_STATUSES,
    TRANSITIONS,
    VARIANTS,
    CommandKind,
    Decision,
    Deny,
    Reason,
    Rejection,
    Status,
    decide,
    invariant_violations,
    lookup,
    render_markdown,
    timers_for,
    variant_of,
)
from services.lifecycle.domain.model import DEFAULT_CONFIG
from services.lifecycle.domain.table import ROWS, RowKey, allowed_targets

from .builders import arrange

# Variants chosen by the command itself are tried in every row; the approval variant comes from the
# state (did the request ask for a trial?), so it is tried where the cell depends on it.
_COMMAND_VARIANTS = {
    CommandKind.CREATE,
    CommandKind.CHANGE_PLAN,
    CommandKind.CHANGE_QUANTITY,
    CommandKind.CANCEL,
}


def _variants(row: RowKey, kind: CommandKind) -> tuple[str | None, ...]:
    cell = TRANSITIONS[(row, kind)]
    if isinstance(cell, Mapping) or kind in _COMMAND_VARIANTS:
        return VARIANTS[kind]
    return (None,)


CASES = [
    pytest.param(row, kind, variant, id="-".join(x for x in (row or "none", kind, variant) if x))
    for row in ROWS
    for kind in CommandKind
    for variant in _variants(row, kind)
]


def test_the_product_is_complete() -> None:
    # 11 rows (no subscription + 10 statuses) x 20 commands, every cell defined.
    assert len(ROWS) == 11 and len(CommandKind) == 20
    assert set(TRANSITIONS) == {(row, kind) for row in ROWS for kind in CommandKind}
    pairs = {(row, kind) for row, kind, _ in (case.values for case in CASES)}
    assert len(pairs) == 11 * 20


@pytest.mark.parametrize(("row", "kind", "variant"), CASES)
def test_every_status_command_pair(row: RowKey, kind: CommandKind, variant: str | None) -> None:
    arranged = arrange(row, kind, variant)
    state, command, at = arranged.state, arranged.command, arranged.at
    assert (state.status if state else None) == row
    if variant is not None:
        assert variant_of(state, command) == variant
    before = state.model_dump() if state is not None else None

    expected = lookup(row, kind, variant_of(state, command))
    result = decide(state, command, now=at)

    if isinstance(expected, Deny):
        assert isinstance(result, Rejection), f"table refuses {row}/{kind}/{variant} but decide accepted"
        assert result.code == expected.code and result.message == expected.message
        assert result.state is state and result.command is command
        assert (state.model_dump() if state is not None else None) == before  # nothing changed
        return

    assert isinstance(result, Decision), f"table allows {row}/{kind}/{variant}: {result}"
    new = result.state
    assert new.status is expected
    assert invariant_violations(new) == []
    # exactly one audit entry, saying what happened
    audit = result.audit
    assert (audit.from_status, audit.to_status, audit.command) == (row, expected, kind)
    assert (audit.actor, audit.reason) == (command.actor, command.reason)
    assert audit.idempotency_key == command.idempotency_key
    assert audit.effective_at == at and audit.recorded_at == at
    # events: past tense, consistent with the transition
    assert result.events
    for event in result.events:
        assert (event.from_status, event.to_status, event.command) == (row, expected, kind)
        assert event.effective_at == at and event.actor == command.actor
        assert event.type.endswith(("ed", "Recovered", "Due")), event.type
    # timers: applying the changes to the old timers gives the new state's timers
    timers = dict(timers_for(state, DEFAULT_CONFIG))
    for kind_ in result.timers_to_cancel:
        del timers[kind_]
    for timer in result.timers_to_set:
        timers[timer.kind] = timer.due_at
    assert timers == timers_for(new, DEFAULT_CONFIG)
    # the input state is untouched
    assert (state.model_dump() if state is not None else None) == before


def test_terminated_accepts_nothing() -> None:
    for kind in CommandKind:
        assert allowed_targets(Status.TERMINATED, kind) == frozenset(), kind


def test_ended_statuses_only_leave_by_reactivate_or_terminate() -> None:
    for row in ENDED_STATUSES:
        leaving = {kind for kind in CommandKind if allowed_targets(row, kind) - {row}}
        assert leaving <= {CommandKind.REACTIVATE, CommandKind.TERMINATE}


def test_only_create_works_without_a_subscription() -> None:
    for kind in CommandKind:
        cell = TRANSITIONS[(None, kind)]
        if kind is CommandKind.CREATE:
            assert allowed_targets(None, kind) == {Status.PENDING_APPROVAL, Status.TRIAL, Status.ACTIVE}
        else:
            assert isinstance(cell, Deny) and cell.code is Reason.SUBSCRIPTION_NOT_FOUND


def test_every_status_is_reachable_and_every_non_final_status_can_end() -> None:
    reachable = {t for row in ROWS for kind in CommandKind for t in allowed_targets(row, kind)}
    assert reachable == set(Status)
    for row in Status:
        if row is not Status.TERMINATED:
            assert Status.TERMINATED in allowed_targets(row, CommandKind.TERMINATE)


def test_no_op_commands_are_refused_not_silent() -> None:
    # Commands whose target would be the very status they are sent in, and that change nothing
    # else, are refused ALREADY_IN_STATE.
    for status, kind in [
        (Status.PAUSED, CommandKind.PAUSE),
        (Status.ACTIVE, CommandKind.RESUME),
        (Status.PAST_DUE, CommandKind.MARK_PAST_DUE),
        (Status.SUSPENDED, CommandKind.SUSPEND),
        (Status.CANCELLED, CommandKind.CANCEL),
        (Status.EXPIRED, CommandKind.EXPIRE),
        (Status.TERMINATED, CommandKind.TERMINATE),
        (Status.ACTIVE, CommandKind.REACTIVATE),
        (Status.TRIAL, CommandKind.START_TRIAL),
    ]:
        cell = TRANSITIONS[(status, kind)]
        assert isinstance(cell, Deny) and cell.code is Reason.ALREADY_IN_STATE, (status, kind)


def test_docs_show_the_table_from_the_code() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "lifecycle.md"
    assert render_markdown() in docs.read_text(), "docs/lifecycle.md is out of date: paste render_markdown()"


def test_readme_has_the_current_transition_table() -> None:
    readme = Path(__file__).resolve().parents[3] / "README.md"
    assert render_markdown() in readme.read_text(), "README.md is out of date: paste render_markdown()"
