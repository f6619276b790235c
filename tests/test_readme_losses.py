"""README.md's "Losses" table is the one generated from the loss-spec table (``lossk._losses.readme``)."""

from __future__ import annotations

from pathlib import Path

from lossk._losses import ELEMENTWISE_LOSSES, multi_input, readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_holds_the_generated_losses_table() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme.BEGIN in text and readme.END in text
    current = text[text.index(readme.BEGIN):text.index(readme.END) + len(readme.END)]
    assert current == readme.table(), "README.md's losses table is stale: run `python -m lossk._losses.readme`"


def test_every_spec_has_a_row_with_its_options() -> None:
    table = readme.table()
    for spec in (*ELEMENTWISE_LOSSES.values(), *multi_input.LOSSES):
        (line,) = [line for line in table.splitlines() if line.startswith(f"| `{spec.name}` / `{spec.class_name}` |")]
        for option in spec.keyword_options:
            assert f"`{option.name}={option.default!r}`" in line, (spec.name, option.name)
        assert (f"`F.{spec.torch_function}`" if spec.torch_function else "| none |") in line
    assert "`F.soft_margin_loss`" in table and "`F.gaussian_nll_loss`" in table
    assert "log_cosh_loss" in table and "`cross_entropy` / `CrossEntropyLoss`" in table
