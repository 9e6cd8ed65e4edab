"""``som``: run and operate the subscription order management workers.

This module only assembles the command groups; each lives in ``som/commands/``, and what they
share (consoles, exit codes, errors, settings, the database pool) in ``som/common.py``.

Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 nothing found / not allowed now,
4 the system is not reachable (start it with ``som up``).
"""

from __future__ import annotations

import os
import sys

import typer

from som import chaos
from som.commands import (
    approvals,
    bench,
    billing,
    clock,
    dlq,
    entitlements,
    intake,
    k8s,
    orders,
    run,
    schemas,
    simulate,
    subscriptions,
)
from som.commands import (
    console as console_commands,
)
from som.common import UserError, err

app = typer.Typer(
    help="Subscription order management: Kafka workers for intake, lifecycle, billing and entitlements.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Top-level commands (no group name): up, worker, migrate, topics, bench, schemas, approve, reject, simulate.
for _commands in (run.app, bench.app, schemas.app, approvals.app, simulate.app):
    app.add_typer(_commands)
app.add_typer(dlq.app, name="dlq")
app.add_typer(orders.app, name="orders")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(clock.app, name="clock")
app.add_typer(intake.app, name="intake")
app.add_typer(billing.app, name="billing")
app.add_typer(billing.revenue_app, name="revenue")
app.add_typer(k8s.app, name="k8s")
app.add_typer(entitlements.app, name="entitlements")
app.command("chaos")(chaos.chaos)
app.add_typer(console_commands.app, name="console")
app.add_typer(console_commands.users_app, name="users")


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    try:
        app()
    except UserError as exc:  # raised outside run(): same message and exit code, no traceback
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(exc.code)
    except KeyboardInterrupt:
        sys.exit(130)
