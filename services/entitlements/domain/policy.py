"""Access policy: which access level a subscription's status gives, per channel and plan (pure).

Levels are ordered ``revoked < read_only < held < full``. A status may keep a level for a grace
period and then drop to another; :func:`access_at` answers the level at an instant and, when a
drop is still ahead, when it happens (published in advance as a pending change).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config_files import load_yaml_model

Level = Literal["full", "held", "read_only", "revoked"]
LEVELS: tuple[Level, ...] = ("revoked", "read_only", "held", "full")  # weakest first
STATUSES = (
    "pending_approval",
    "trial",
    "active",
    "non_renewing",
    "past_due",
    "paused",
    "suspended",
    "cancelled",
    "expired",
    "terminated",
)
DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "config" / "access_policy.yaml"


class PolicyError(ValueError):
    """The access policy file is malformed."""


class StatusAccess(BaseModel):
    """The access one status gives, with an optional grace period and the level after it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access: Level
    grace_days: int | None = Field(default=None, ge=0)
    until_grace_end: bool = False
    then: Level | None = None

    @model_validator(mode="after")
    def _grace(self) -> StatusAccess:
        has_grace = self.grace_days is not None or self.until_grace_end
        if self.grace_days is not None and self.until_grace_end:
            raise ValueError("grace_days and until_grace_end exclude each other")
        if has_grace != (self.then is not None):
            raise ValueError("a grace period needs `then`, and `then` needs a grace period")
        return self


class PolicyRule(BaseModel):
    """Overrides of the defaults for a channel and/or a plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str | None = None
    plan: str | None = None
    statuses: dict[str, StatusAccess]

    @property
    def specificity(self) -> int:
        """Channel and plan (3) beat plan (2), which beats channel (1)."""
        return (2 if self.plan else 0) + (1 if self.channel else 0)


class AccessPolicy(BaseModel):
    """Per-status access with channel and plan rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: dict[str, StatusAccess]
    rules: tuple[PolicyRule, ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> AccessPolicy:
        missing = set(STATUSES) - set(self.default)
        if missing:
            raise ValueError(f"default names no access for {sorted(missing)}")
        unknown = (set(self.default) | {s for r in self.rules for s in r.statuses}) - set(STATUSES)
        if unknown:
            raise ValueError(f"unknown statuses {sorted(unknown)}")
        return self

    def rule_for(self, status: str, *, channel: str, plan: str) -> StatusAccess:
        """The most specific rule for ``status`` on this channel and plan (the default otherwise)."""
        matching = [
            r
            for r in self.rules
            if status in r.statuses and r.channel in (None, channel) and r.plan in (None, plan)
        ]
        if not matching:
            return self.default[status]
        return max(matching, key=lambda r: r.specificity).statuses[status]


@dataclass(frozen=True)
class Access:
    """The level at an instant, and the drop still ahead (if any)."""

    level: Level
    changes_at: datetime | None = None
    next_level: Level | None = None


def access_at(
    policy: AccessPolicy,
    *,
    status: str,
    channel: str,
    plan: str,
    status_since: datetime,
    grace_ends_at: datetime | None,
    at: datetime,
) -> Access:
    """The access ``status`` gives at ``at``; an unknown status is revoked."""
    if status not in STATUSES:
        return Access("revoked")
    rule = policy.rule_for(status, channel=channel, plan=plan)
    if rule.then is None:
        return Access(rule.access)
    if rule.grace_days is not None:
        end: datetime | None = status_since + timedelta(days=rule.grace_days)
    else:
        end = grace_ends_at  # until_grace_end: the lifecycle's date; none set means no grace
    if end is None or at >= end:
        return Access(rule.then)
    return Access(rule.access, changes_at=end, next_level=rule.then)


def load_policy(path: Path | str | None = None) -> AccessPolicy:
    """Read and validate an access policy file (the packaged default when ``path`` is None)."""
    return load_yaml_model(path or DEFAULT_POLICY_PATH, AccessPolicy, PolicyError, what="access policy")
