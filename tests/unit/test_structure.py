"""The layering rules, checked on the source with ``ast``.

- ``shared/`` imports neither ``services`` nor ``som``, and names no worker (no identifier or
  string that is a service name; domain words such as ``billing_interval`` are listed below).
- ``services/X`` imports no ``services/Y`` (``services/registry.py`` may import every app module).
- ``som/`` has no import cycle and holds no SQL (queries live in the services' ``views.py``).
- Every service has one spec whose topics exist and whose migrations folder is there.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "lifecycle", "billing", "entitlements")

# Identifiers in shared/ that contain a service's name as a word but mean the business concept
# (the billing calendar, the entitlement set) or a wire name that other systems read.
DOMAIN_IDENTIFIERS = frozenset(
    {
        "billing_interval",
        "billing_intervals",
        "billing_anchor",
        "new_billing_anchor",
        "BillingInterval",
        "BILLING_INVOICES",  # topic "billing.invoices": the invoice stream, read outside this system
        "ENTITLEMENTS_CHANGED",  # topic / event type of the entitlement set
        "EntitlementsChanged",
        # The entitlement contracts downstream consumers read: per-customer sets, commands, pending changes
        "ENTITLEMENTS_CUSTOMERS",
        "ENTITLEMENTS_COMMANDS",
        "ENTITLEMENTS_COMMAND",
        "CUSTOMER_ENTITLEMENTS_CHANGED",
        "CUSTOMER_ENTITLEMENTS_SNAPSHOT",
        "CustomerEntitlementsChanged",
        "EntitlementCommand",
        "PendingEntitlementChange",
        "entitlement_policy_path",
        "entitlement_ack_timeout_seconds",
        "ENTITLEMENTS_APPLIED",
        "ENTITLEMENTS_VIOLATION",
        "ENTITLEMENTS_INSTRUCTION",
        "ENTITLEMENTS_INSTRUCTIONS",
        "EntitlementsApplied",
        "EntitlementViolation",
        "EntitlementInstruction",
        "ENTITLEMENTS_USAGE",
    }
)


def _py_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path).split(".")
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_pkg else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.add(mod)
            # `from pkg import module` imports the submodule too
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _words(identifier: str) -> set[str]:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", identifier)
    return {w.lower() for w in snake.split("_") if w}


def test_import_helpers_see_imports() -> None:
    """The checks below rely on these helpers finding what a file imports."""
    imports = _imports(ROOT / "services" / "registry.py")
    assert "services.intake.app" in imports
    assert "shared.messaging.topics" in imports or "shared.messaging" in imports
    assert _words("BillingContext") == {"billing", "context"}


@pytest.mark.parametrize("path", _py_files("shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_imports_no_service_and_no_cli(path: Path) -> None:
    """The common library stands on its own."""
    bad = sorted(m for m in _imports(path) if m.split(".")[0] in {"services", "som"})
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", _py_files("shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_names_no_service(path: Path) -> None:
    """No identifier or string literal in shared/ refers to a worker by name."""
    tree = ast.parse(path.read_text(), str(path))
    problems: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.arg):
            names.append(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            names.append(node.arg)
        elif isinstance(node, ast.alias):
            names.append(node.asname or node.name.split(".")[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip().lower()
            if text in SERVICES or text.startswith(("services.", "services/")):
                problems.append(f"line {node.lineno}: string {node.value!r}")
        for name in names:
            if name not in DOMAIN_IDENTIFIERS and _words(name) & set(SERVICES):
                problems.append(f"line {getattr(node, 'lineno', '?')}: identifier {name}")
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_shared_migrations_hold_no_service_schema() -> None:
    """The shared migrations create only the shared schemas (messaging, timekeeping)."""
    for sql in sorted((ROOT / "shared" / "db" / "migrations").glob("*.sql")):
        text = sql.read_text().lower()
        for service in SERVICES:
            assert not re.search(rf"\b{service}\.", text), f"{sql.name} touches schema {service}"


@pytest.mark.parametrize("path", _py_files("services"), ids=lambda p: str(p.relative_to(ROOT)))
def test_services_import_no_other_service(path: Path) -> None:
    """A service talks to the others only over Kafka, never through their code."""
    rel = path.relative_to(ROOT / "services").parts
    if rel == ("registry.py",) or rel == ("__init__.py",):
        return
    own = rel[0]
    bad = sorted(m for m in _imports(path) if m.startswith("services.") and m.split(".")[1] != own)
    assert not bad, f"{path.relative_to(ROOT)} imports another service: {bad}"
    assert not any(m.split(".")[0] == "som" for m in _imports(path)), f"{path} imports the CLI"


def test_registry_imports_only_app_modules_of_services() -> None:
    """The registry reads specs; it does not reach into handlers or stores."""
    imports = _imports(ROOT / "services" / "registry.py")
    reached = {m for m in imports if m.startswith("services.")}
    assert reached and all(".".join(m.split(".")[:3]).endswith(".app") for m in reached), reached


def _som_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in _py_files("som")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        graph[mod] = {m for m in _imports(path) if m in files and m != mod}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    """The cycle check is not vacuous."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_som_has_no_import_cycle() -> None:
    """The CLI modules form a tree: som.cli assembles, command modules import som.common."""
    graph = _som_graph()
    assert "som.cli" in graph
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


_SQL = re.compile(
    r"\b(SELECT\s+.+?\s+FROM|INSERT\s+INTO|UPDATE\s+\w+(\.\w+)?\s+SET|DELETE\s+FROM)\b",
    re.IGNORECASE | re.DOTALL,
)


def test_sql_pattern_matches_statements() -> None:
    """The SQL check below recognizes the statements it looks for."""
    for sql in ("SELECT a FROM b", "insert into x.y (a) values (1)", "UPDATE t SET a = 1", "DELETE FROM t"):
        assert _SQL.search(sql)
    assert not _SQL.search("the catalog lists every plan")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose may read like SQL: "select ... from")."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


@pytest.mark.parametrize("path", _py_files("som"), ids=lambda p: str(p.relative_to(ROOT)))
def test_som_holds_no_sql(path: Path) -> None:
    """Queries on the services' schemas live in services/<name>/views.py, not in the CLI."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    found = [
        f"line {node.lineno}: {node.value[:60]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and _SQL.search(node.value)
        and id(node) not in docs
    ]
    assert not found, f"{path.relative_to(ROOT)} holds SQL: {found}"


def test_every_service_has_one_spec() -> None:
    """The registry lists every service folder once, with its migrations and known topics."""
    from services import registry
    from shared.messaging import topics

    folders = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "app.py").exists())
    assert sorted(registry.WORKERS) == folders
    known = {t.name for t in topics.main_topics(1)}
    for spec in registry.SPECS:
        assert spec.migrations.is_dir(), spec.name
        assert set(spec.consumes) <= known and set(spec.produces) <= known, spec.name
    assert topics.CONSUMERS == registry.consumers()
