"""The worker profile summary (tools/profile_workers.py): waits left out, components, functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[3] / "tools" / "profile_workers.py"


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("profile_workers", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["profile_workers"] = module
    spec.loader.exec_module(module)
    return module


ROOT = "run (som/common.py:55);Runner.run (asyncio/runners.py:118);run_forever (loop.c:33192)"
LANE = f"{ROOT};LaneProcessor._one (shared/messaging/lanes.py:293)"
HANDLER = f"{LANE};BillingHandlers.issue (services/billing/handlers.py:244)"

RAW = [
    f"{ROOT};epoll_pwait (libc.so.6) 50\n",  # idle
    f"{HANDLER};Connection._do_execute (asyncpg/connection.py:2066);write (libc.so.6) 30\n",  # preempted
    f"{HANDLER};BaseModel.__init__ (pydantic/main.py:280);0x7f00 (pydantic_core/_pydantic_core.so) 8\n",
    f"{HANDLER};month_end (services/billing/domain/revenue.py:163);_PyEval_EvalFrameDefault (libpython3.11.so) 6\n",
    f"{LANE};Connection._do_execute (asyncpg/connection.py:2066);Codec_encode (protocol.c:14805) 4\n",
    f"{ROOT};Loop__on_idle (loop.c:19387) 2\n",
    "not a profile line\n",
]


def test_waits_are_not_busy_and_shares_are_of_busy_samples(tool: ModuleType) -> None:
    profile = tool.summarize(RAW)
    assert (profile.samples, profile.blocked, profile.busy) == (100, 80, 20)
    shares = profile.shares()
    assert shares["busy_pct"] == 20.0
    # The innermost frame that names a component decides; the interpreter's own frames name none.
    assert shares["components_pct"] == {
        "pydantic": 40.0,
        "project": 30.0,
        "asyncpg": 20.0,
        "event loop": 10.0,
    }


def test_project_functions_are_inclusive_and_counted_once_per_stack(tool: ModuleType) -> None:
    functions = tool.summarize(RAW).shares()["functions_pct"]
    assert functions["LaneProcessor._one"] == 90.0  # 8 + 6 + 4 of 20 busy samples
    assert functions["BillingHandlers.issue"] == 70.0
    assert functions["month_end"] == 30.0
    assert "Connection._do_execute" not in functions  # not the project's


def test_a_recursive_frame_counts_once(tool: ModuleType) -> None:
    stack = f"{LANE};LaneProcessor._one (shared/messaging/lanes.py:293);getpid (libc.so.6) 5\n"
    assert tool.summarize([stack]).functions["LaneProcessor._one"] == 5
