"""``load_yaml_model``: every configuration loader reads, parses, validates and reports failures one way."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from services.billing.domain.policy import PolicyError as BillingPolicyError
from services.billing.domain.policy import load_billing_policy
from services.billing.domain.tax import TaxError, load_tax_table
from services.intake.domain.mapping import MappingError, load_mappings
from services.intake.domain.policy import PolicyError as IntakePolicyError
from services.intake.domain.policy import load_policy
from services.lifecycle.domain.approval import ApprovalPolicyError, load_approval_policy
from shared.catalog import CatalogError, load_catalog
from shared.config_files import load_yaml_model


class Limits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default"
    limit: int = 10


class LimitsError(ValueError):
    pass


def test_a_valid_file_becomes_the_model(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text("name: small\nlimit: 3\n")
    assert load_yaml_model(path, Limits, LimitsError) == Limits(name="small", limit=3)
    assert load_yaml_model(str(path), Limits, LimitsError).limit == 3  # a str path works too


def test_an_empty_file_is_the_models_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    assert load_yaml_model(path, Limits, LimitsError) == Limits()


def test_a_missing_file_raises_the_error_type_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(LimitsError, match=re.escape(str(path))) as info:
        load_yaml_model(path, Limits, LimitsError, what="limits")
    assert str(info.value).startswith(f"cannot load limits {path}: cannot read the file")
    assert isinstance(info.value.__cause__, OSError)


def test_bad_yaml_raises_the_error_type_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(LimitsError, match=re.escape(str(path))) as info:
        load_yaml_model(path, Limits, LimitsError)
    assert "not valid YAML" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "limit: many\n",  # wrong type
        "limt: 3\n",  # unknown key (extra="forbid")
        "- a list\n- not a mapping\n",
    ],
)
def test_an_invalid_model_raises_the_error_type_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "invalid.yaml"
    path.write_text(text)
    with pytest.raises(LimitsError, match=re.escape(str(path))) as info:
        load_yaml_model(path, Limits, LimitsError)
    assert "invalid content" in str(info.value)
    assert isinstance(info.value.__cause__, ValidationError)


LOADERS: list[tuple[Callable[[Path], Any], type[Exception]]] = [
    (load_catalog, CatalogError),
    (load_tax_table, TaxError),
    (load_billing_policy, BillingPolicyError),
    (load_mappings, MappingError),
    (load_policy, IntakePolicyError),
    (load_approval_policy, ApprovalPolicyError),
]


@pytest.mark.parametrize(("loader", "error"), LOADERS, ids=[loader.__name__ for loader, _ in LOADERS])
@pytest.mark.parametrize(
    "text", [None, "key: [unclosed\n", "surprise: true\n"], ids=["missing", "yaml", "model"]
)
def test_every_loader_raises_its_own_error_naming_the_file(
    tmp_path: Path, loader: Callable[[Path], Any], error: type[Exception], text: str | None
) -> None:
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(error, match=re.escape(str(path))):
        loader(path)


@pytest.mark.parametrize(("loader", "error"), LOADERS, ids=[loader.__name__ for loader, _ in LOADERS])
def test_every_loader_still_reads_its_packaged_file(
    loader: Callable[[Path | None], Any], error: type[Exception]
) -> None:
    assert loader(None) is not None
