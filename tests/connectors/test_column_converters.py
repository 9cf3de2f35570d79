"""The column form of each row-level converter agrees with the per-value form (no database needed).

load_rows converts a chunk column by column (C loops) and, when a column holds a bad value, converts
the chunk again row by row to quarantine exactly the bad rows. So for every converter: on a column of
good values (and NULLs) both forms give the same values; a column with one bad value raises.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.schema import PortableType
from connectors._load import convert_column, finite_float, int_range, max_length
from connectors.sqlite import SQLiteConnector, _bool, _canonical_check

INT_TEXTS = st.integers(-(1 << 70), 1 << 70).map(str)
FLOAT_TEXTS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(["NaN", "inf", "-Infinity", "1e400", "x", "1.5"]))
TEXTS = st.text(max_size=8)
DATES = st.one_of(st.dates().map(lambda d: d.isoformat()), st.sampled_from(["2024-02-30", "2024-1-01", "x"]))
UUIDS = st.one_of(st.uuids().map(str), st.sampled_from(["0" * 36, "not-a-uuid"]))
DECIMALS = st.one_of(st.decimals(-10**6, 10**6, places=2, allow_nan=False).map(lambda d: f"{d:.2f}"),
                     st.sampled_from(["1.234", "12345678.00", "1e5", "-0.5"]))

CASES = [
    ("int32", int_range(32), INT_TEXTS),
    ("int64", int_range(64), INT_TEXTS),
    ("float64", finite_float, FLOAT_TEXTS),
    ("string(5)", max_length(5), TEXTS),
    ("bool", _bool, st.sampled_from(["0", "1", "2", "", "true"])),
    ("date", _canonical_check(PortableType.parse("date")), DATES),
    ("uuid", _canonical_check(PortableType.parse("uuid")), UUIDS),
    ("decimal(8,2)", _canonical_check(PortableType.parse("decimal(8,2)")), DECIMALS),
]


def one_by_one(conv, values):
    """The per-value form, or None when some value does not convert."""
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        try:
            out.append(conv(v))
        except (ValueError, TypeError, OverflowError):
            return None
    return out


@pytest.mark.parametrize("name, conv, texts", CASES, ids=[c[0] for c in CASES])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_column_form_agrees_with_the_per_value_form(name, conv, texts, data):
    values = data.draw(st.lists(st.one_of(st.none(), texts), max_size=40), label="column")
    want = one_by_one(conv, values)
    if want is None:
        with pytest.raises((ValueError, TypeError, OverflowError)):
            convert_column(conv, values)
    else:
        got = list(convert_column(conv, values))
        assert [repr(v) for v in got] == [repr(v) for v in want]


def test_every_sqlite_converter_of_a_wide_schema_has_a_column_form_or_the_generic_one():
    from tests.connectors.test_types import WIDE
    for conv in SQLiteConnector._converters(None, WIDE, shadow=True):  # type: ignore[arg-type]
        if conv is not None:
            assert convert_column(conv, [None]) == [None]


def test_a_value_holding_a_newline_does_not_pass_as_two_canonical_values():
    check = _canonical_check(PortableType.parse("decimal(8,2)"))
    for column in (["1.00\n2.00"], ["1.00", "2.00\n3.00", None]):
        with pytest.raises(ValueError):
            convert_column(check, column)
    assert list(convert_column(check, ["1.00", None, "-2.50"])) == ["1.00", None, "-2.50"]
