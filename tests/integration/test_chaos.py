"""A small chaos run on the embedded path: two worker kills, one database crash, then every check.

Until the batched runtime (issue 9) lands, a database outage can exhaust retries and dead-letter
messages; the checks are written as they must hold, so this test shows what the runtime does.
"""

from __future__ import annotations

import os

import pytest

from shared.settings import Settings
from som.chaos import ChaosPlan, chaos_run


@pytest.mark.slow  # 30 s: in CI's full run, not in the fast default
@pytest.mark.skipif(
    bool(os.environ.get("SOM_DATABASE_URL")), reason="database restarts need the embedded PostgreSQL"
)
def test_small_chaos_run_loses_nothing_and_doubles_nothing() -> None:
    """A few hundred orders, duplicates, unknown plans, garbage, 2 kills, 1 database restart."""
    base = Settings(kafka_bootstrap=None, database_url=None, log_level="WARNING")
    plan = ChaosPlan(orders=200, kills=2, db_restarts=1, db_down_seconds=2.0, seed=7)
    report = chaos_run(plan, base, print)
    figures = report.as_dict()
    print(figures)
    assert len(report.kills) == 2 and report.db_restarts == 1
    assert report.settle_error is None, figures
    assert report.lost == 0, figures
    assert report.duplicate_effects == 0, figures
    assert report.invoice_number_gaps == 0, figures
    assert report.rejections_unknown_plan == report.unknown_plan_sent, figures
    assert report.unexpected_rejections == 0, figures
    assert report.dead_letters_intake == report.garbage_sent, figures
    assert report.unexpected_dead_letters == 0, figures
    assert report.passed
