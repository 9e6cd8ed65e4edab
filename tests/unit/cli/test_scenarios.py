"""Scenario files: the README examples load; malformed ones fail with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from som.simulate import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["upgrade-mid-cycle.yaml", "pause-dunning-cancel.yaml"])
def test_readme_examples_load(name: str) -> None:
    scenario = load_scenario(ROOT / "examples" / "scenarios" / name)
    assert scenario.steps and all(s.at >= scenario.start for s in scenario.steps)
    assert (ROOT / "README.md").read_text().count(f"examples/scenarios/{name}") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nplan: pro\n", "start"),
        ("name: x\nplan: pro\nstart: 2025-01-01\nsteps:\n  - at: 2024-12-01\n    resume: true\n", "date order"),
        ("name: x\nplan: pro\nstart: 2025-01-01\nsteps:\n  - at: 2025-02-01\n", "exactly one action"),
        ("name: x\nplan: pro\nstart: 2025-01-01\nsteps:\n  - at: 2025-02-01\n    pause: {}\n    resume: true\n",
         "exactly one action"),
        ("name: x\nplan: pro\nstart: 2025-01-01\ncolour: blue\n", "colour"),
        ("{not yaml", "cannot read"),
    ],
)
def test_malformed_scenarios_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(f)
