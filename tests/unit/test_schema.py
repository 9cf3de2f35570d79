"""Portable schema parsing, digests and the evolution rules."""

import pytest

from agent.errors import SchemaError
from agent.schema import PortableType, Schema


def doc(*cols, pk=("id",)):
    return {"columns": [{"name": n, "type": t, "nullable": nl} for n, t, nl in cols], "primary_key": list(pk)}


BASE = doc(("id", "string(10)", False), ("n", "int32", True), ("d", "decimal(10,2)", True))


@pytest.mark.parametrize("text", ["int32", "int64", "decimal(38,10)", "float64", "bool", "string(1)",
                                  "text", "date", "time", "timestamp", "timestamptz", "uuid", "binary", "json"])
def test_every_portable_type_parses_and_prints_back(text):
    assert str(PortableType.parse(text)) == text


@pytest.mark.parametrize("text", ["varchar(10)", "decimal(39,1)", "decimal(5,6)", "string(0)", "int"])
def test_unknown_or_out_of_range_types_are_refused(text):
    with pytest.raises(SchemaError) as e:
        PortableType.parse(text)
    assert e.value.code == "schema-invalid"


def test_every_problem_is_reported_at_once_with_its_path():
    bad = doc(("id", "string(10)", False), ("id", "int32", True), ("x", "varchar", True), ("_op", "text", True),
              pk=("nope",))
    with pytest.raises(SchemaError) as e:
        Schema.from_dict(bad)
    msg = str(e.value)
    for part in ("columns[1].name: duplicate", "columns[2].type", "columns[3].name: '_op' is reserved",
                 "primary_key: 'nope' is not a column"):
        assert part in msg


def test_primary_key_columns_are_never_nullable_and_digest_is_stable():
    s = Schema.from_dict(doc(("id", "string(10)", True), ("n", "int32", True)))
    assert s.column("id").nullable is False
    assert s.digest() == Schema.from_dict(s.to_dict()).digest()
    assert len(s.digest()) == 32


def test_evolution_allows_nullable_add_and_lossless_widening():
    old = Schema.from_dict(BASE)
    new = Schema.from_dict(doc(("id", "string(20)", False), ("n", "int64", True), ("d", "decimal(12,3)", True),
                               ("extra", "text", True)))
    diff = old.evolution_to(new)
    assert diff.safe and [c.name for c in diff.added] == ["extra"]
    assert {a.name for a, _ in diff.widened} == {"id", "n", "d"}


@pytest.mark.parametrize("change,expected", [
    (doc(("id", "string(5)", False), ("n", "int32", True), ("d", "decimal(10,2)", True)), "changes type"),
    (doc(("id", "string(10)", False), ("n", "int32", True)), "dropped"),
    (doc(("id", "string(10)", False), ("n", "int32", True), ("d", "decimal(10,2)", True), ("x", "int32", False)),
     "NOT NULL"),
    (doc(("id", "string(10)", False), ("n", "int32", False), ("d", "decimal(10,2)", True), pk=("id", "n")),
     "primary key"),
])
def test_evolution_refuses_narrowing_drops_not_null_adds_and_key_changes(change, expected):
    diff = Schema.from_dict(BASE).evolution_to(Schema.from_dict(change))
    assert not diff.safe
    assert any(expected in r for r in diff.refused)
