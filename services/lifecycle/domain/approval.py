"""Approval policy: is a new subscription approved automatically or held for a person?

Rules match on channel, plan and account (any combination; a missing key matches everything) and
may be limited to a date window ``[from, until)``: e.g. manual approval for a channel until a beta
ends, automatic afterwards. Among the rules in force on a day, the most specific one wins:
account (4) > plan (2) > channel (1), summed, so an account rule beats a channel+plan rule and a
channel+plan rule beats a plan rule. No rule: the policy's ``default``.

Two rules with the same match keys whose windows overlap would be ambiguous; the policy refuses
them when it is loaded.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.lifecycle.domain.model import ApprovalMode
from shared.config_files import load_yaml_model

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[1] / "config" / "approval_policy.yaml"


class ApprovalPolicyError(ValueError):
    """The approval policy file cannot be read, is not YAML, or is not a valid policy."""


class ApprovalRule(BaseModel):
    """One rule: where it applies, when, and the approval mode it sets."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    mode: ApprovalMode
    channel: str | None = None
    plan_id: str | None = None
    account_id: str | None = None
    valid_from: date | None = Field(default=None, alias="from")  # inclusive
    valid_until: date | None = Field(
        default=None, alias="until"
    )  # exclusive: the first day it no longer applies
    note: str | None = None

    @model_validator(mode="after")
    def _window(self) -> ApprovalRule:
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValueError(f"rule window is empty: from {self.valid_from} until {self.valid_until}")
        return self

    @property
    def specificity(self) -> int:
        """How specific the rule is: account 4 + plan 2 + channel 1."""
        return (
            (4 if self.account_id is not None else 0)
            + (2 if self.plan_id is not None else 0)
            + (1 if self.channel is not None else 0)
        )

    def in_force(self, on: date) -> bool:
        """Whether the rule's date window contains ``on``."""
        return (self.valid_from is None or self.valid_from <= on) and (
            self.valid_until is None or on < self.valid_until
        )

    def matches(self, *, channel: str, plan_id: str, account_id: str | None, on: date) -> bool:
        """Whether the rule applies to this subscription request on ``on``."""
        return (
            self.in_force(on)
            and (self.channel is None or self.channel == channel)
            and (self.plan_id is None or self.plan_id == plan_id)
            and (self.account_id is None or self.account_id == account_id)
        )

    def _overlaps(self, other: ApprovalRule) -> bool:
        starts_before_other_ends = (
            self.valid_from is None or other.valid_until is None or (self.valid_from < other.valid_until)
        )
        other_starts_before_end = (
            other.valid_from is None or self.valid_until is None or (other.valid_from < self.valid_until)
        )
        return starts_before_other_ends and other_starts_before_end


class ApprovalPolicy(BaseModel):
    """The default mode and the rules that override it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: ApprovalMode = "auto"
    rules: tuple[ApprovalRule, ...] = ()

    @model_validator(mode="after")
    def _unambiguous(self) -> ApprovalPolicy:
        for i, a in enumerate(self.rules):
            for b in self.rules[i + 1 :]:
                same_keys = (a.channel, a.plan_id, a.account_id) == (b.channel, b.plan_id, b.account_id)
                if same_keys and a._overlaps(b):
                    raise ValueError(
                        f"ambiguous approval rules for channel={a.channel} plan={a.plan_id} "
                        f"account={a.account_id}: their date windows overlap"
                    )
        return self


def deciding_rule(
    policy: ApprovalPolicy, *, channel: str, plan_id: str, account_id: str | None, on: date
) -> ApprovalRule | None:
    """The rule that decides the approval mode (``None``: the policy default applies)."""
    candidates = [
        r for r in policy.rules if r.matches(channel=channel, plan_id=plan_id, account_id=account_id, on=on)
    ]
    # Same specificity means same match keys (the weights are powers of two), and those never
    # overlap in time, so the maximum is unique.
    return max(candidates, key=lambda r: r.specificity, default=None)


def approval_mode(
    policy: ApprovalPolicy, *, channel: str, plan_id: str, account_id: str | None, on: date
) -> ApprovalMode:
    """``"auto"`` or ``"manual"`` for a subscription requested on ``on``; the most specific rule wins."""
    rule = deciding_rule(policy, channel=channel, plan_id=plan_id, account_id=account_id, on=on)
    return policy.default if rule is None else rule.mode


def parse_approval_policy(text: str) -> ApprovalPolicy:
    """Parse and validate a policy from YAML text."""
    raw = yaml.safe_load(text) or {}
    return ApprovalPolicy.model_validate(raw)


def load_approval_policy(path: Path | str | None = None) -> ApprovalPolicy:
    """Read the policy file (the packaged default when ``path`` is None). The only I/O in the domain,
    meant for start-up: ``approval_mode`` itself is pure. Raises :class:`ApprovalPolicyError`."""
    return load_yaml_model(
        path or DEFAULT_POLICY_PATH, ApprovalPolicy, ApprovalPolicyError, what="approval policy"
    )
