"""Every error code of the tree is documented, in both languages, exactly as the code says."""

from pathlib import Path

import pytest

from scripts.error_codes import all_codes, table

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("lang,name", [("en", "joint-debugging.md"), ("zh", "joint-debugging.zh.md")])
def test_the_code_table_in_the_docs_is_the_code_trees(lang, name):
    text = (DOCS / name).read_text(encoding="utf-8")
    assert table(lang) in text, f"regenerate the table: python scripts/error_codes.py {lang}"
    for code in all_codes():
        assert f"`{code}`" in text
