"""``som console`` (the operator web console) and ``som users`` (its local users)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from som.common import EXIT_FAILED, EXIT_USAGE, console, db_pool, fail, resolved_settings, run

app = typer.Typer(help="The operator web console.", invoke_without_command=True)
users_app = typer.Typer(help="Console users (local, argon2-hashed passwords).", no_args_is_help=True)


@app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (default SOM_CONSOLE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SOM_CONSOLE_PORT, 8080).")] = None,
) -> None:
    """Serve the console (log in with a user made by `som users add`)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from som.console.app import create_app

    settings = resolved_settings()
    host = host or settings.console_host
    port = port if port is not None else settings.console_port
    console.print(f"console on http://{host}:{port}/  (users: `som users add NAME --role ROLE`)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", proxy_headers=False)


@app.command("screenshots")
def screenshots(
    out: Annotated[Path, typer.Option(help="Where the PNGs go.")] = Path("docs/screenshots"),
) -> None:
    """Regenerate a screenshot of every page (runs the browser test with screenshots on)."""
    test = Path(__file__).resolve().parents[2] / "tests" / "integration" / "test_console_browser.py"
    if not test.exists():
        fail("the screenshots come from the browser test: run this from a source checkout", EXIT_USAGE)
    env = dict(os.environ, SOM_CONSOLE_SCREENSHOTS=str(out.resolve()))
    code = subprocess.call(
        [sys.executable, "-m", "pytest", "-x", "-q", str(test), "-k", "walkthrough"],
        env=env,
        cwd=test.parents[2],
    )
    if code != 0:
        fail("the browser walkthrough failed; no screenshots written", EXIT_FAILED)
    console.print(f"screenshots in {out}")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="viewer | operator | approver | admin")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a console user (or set a new role and password for an existing one)."""
    from shared import operators
    from som.console.security import hash_password

    if role not in operators.ROLES:
        fail(f"unknown role {role!r}; one of {', '.join(operators.ROLES)}", EXIT_USAGE)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        fail("the password needs at least 8 characters", EXIT_USAGE)
    settings = resolved_settings()

    async def go() -> bool:
        async with db_pool(settings) as pool:
            return await operators.upsert_user(pool, name, role, hash_password(password))

    created = run(go())
    console.print(f"user {name} {'created' if created else 'updated'} with role {role}")


@users_app.command("list")
def users_list() -> None:
    """Console users and their roles."""
    from shared import operators

    settings = resolved_settings()

    async def go() -> list[dict[str, object]]:
        async with db_pool(settings) as pool:
            return await operators.users(pool)

    for u in run(go()):
        console.print(f"{u['name']}\t{u['role']}")
