"""Configuration files: one way to read a YAML file into a validated pydantic model.

Every loader of a catalog, policy, mapping or rate table reads the file, parses it with
``yaml.safe_load``, validates it with its model and turns each of those failures into its own
error type, with a message that names the file. The loaders keep their names, caching and error
types; this is what they do inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(
    path: Path | str,
    model_type: type[M],
    error_type: type[Exception],
    *,
    what: str = "configuration file",
) -> M:
    """Read ``path``, parse it as YAML and validate it as ``model_type``.

    An empty document validates as ``{}`` (the model's defaults). A file that cannot be read, is
    not YAML, or does not validate raises ``error_type`` (called with the message alone), chained
    to the cause; the message starts ``cannot load <what> <path>:`` and says which step failed.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise error_type(f"cannot load {what} {p}: cannot read the file: {exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error_type(f"cannot load {what} {p}: not valid YAML: {exc}") from exc
    try:
        return model_type.model_validate(raw if raw is not None else {})
    except ValueError as exc:  # pydantic's ValidationError, or a validator's own ValueError
        raise error_type(f"cannot load {what} {p}: invalid content: {exc}") from exc
