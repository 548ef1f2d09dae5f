"""examples/: each example runs in a shortened form and learns something."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("extra", [[], ["--synthetic"]], ids=["digits", "synthetic"])
def test_train_digits_learns(extra, capsys):
    train_digits = _load("train_digits")
    history = train_digits.main(["--epochs", "3", "--limit", "400", "--cpu", *extra])
    losses, accuracy = history["loss"], history["test_accuracy"][-1]
    assert losses[-1] < 0.9 * losses[0], losses
    assert accuracy > 0.3, f"test accuracy {accuracy:.1%} is not clearly above chance (10%)"
    assert "final test accuracy" in capsys.readouterr().out
