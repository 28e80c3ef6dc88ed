"""docs/contract.md is generated from the contract and kept up to date."""

from pathlib import Path

from workbook_templates import docs
from workbook_templates.codelists import CODE_LISTS
from workbook_templates.contract import SITE_FIELDS, TABLE_SHEETS
from workbook_templates.rules import RULES

CONTRACT_MD = Path(__file__).resolve().parents[1] / "docs" / "contract.md"


def test_contract_md_is_generated_from_the_contract():
    assert CONTRACT_MD.read_text() == docs.render(), (
        "docs/contract.md is out of date: run `python -m workbook_templates.docs > docs/contract.md`")


def test_contract_md_names_every_field_code_and_rule():
    text = docs.render()
    for sheet in TABLE_SHEETS.values():
        for f in sheet.fields:
            assert f"| `{f.name}` | {f.label} |" in text
    for f in SITE_FIELDS:
        assert f"`{f.name}`" in text
    for name, values in CODE_LISTS.items():
        assert f"### `{name}`" in text
        for code in values:
            assert f"| `{code}` |" in text
    for rule in RULES:
        assert f"| {rule.id} | {rule.record} |" in text


def test_contract_md_lists_what_goes_beyond_the_domain_notes():
    text = docs.render().split("## Where the contract goes beyond domain.md")[1]
    for name in ("occurred_time", "tier_override_reason", "police_involved", "pressure_ulcer_grade", "notes"):
        assert f"`{name}`" in text
    for words in ("REVIEW_TARGET_DAYS", "Lists", "SUBCATEGORY_OF", "`subcategory`"):
        assert words in text
