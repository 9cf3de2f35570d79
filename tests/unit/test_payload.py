"""The CSV payload: canonical values, quoting, NULL vs "NULL", parsing back, checksums."""

import datetime as dt
import io
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from agent import payload as p
from agent.errors import DataError
from agent.schema import PortableType, Schema

T = PortableType.parse


@pytest.mark.parametrize("ptype,value,text", [
    ("int32", 2147483647, "2147483647"),
    ("int64", "-9223372036854775808", "-9223372036854775808"),
    ("decimal(38,10)", "1234567890123456789012345678.0123456789", "1234567890123456789012345678.0123456789"),
    ("decimal(5,1)", 3, "3.0"),
    ("float64", 0.1, "0.1"),
    ("bool", True, "1"),
    ("string(4)", "张三𠀀😀", "张三𠀀😀"),
    ("date", "0001-01-01", "0001-01-01"),
    ("time", "23:59:59.5", "23:59:59.500000"),
    ("timestamp", "2024-02-29 12:00:00", "2024-02-29 12:00:00.000000"),
    ("timestamptz", "2024-01-01T08:00:00+08:00", "2024-01-01 00:00:00.000000+00:00"),
    ("timestamptz", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), "2024-01-01 00:00:00.000000+00:00"),
    ("uuid", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
    ("binary", b"\x00\xff", "AP8="),
    ("json", {"b": 1, "a": [1, "二"]}, '{"a":[1,"二"],"b":1}'),
])
def test_canonical_text_per_type(ptype, value, text):
    assert p.encode_value(T(ptype), value) == text


@pytest.mark.parametrize("ptype,value", [
    ("int32", 2147483648), ("int64", True), ("decimal(5,1)", "1.25"), ("decimal(3,0)", "1000"),
    ("float64", float("nan")), ("string(2)", "abc"), ("text", "a\x00b"), ("timestamp", "2024-01-01T00:00:00+08:00"),
    ("timestamptz", "2024-01-01 00:00:00"), ("binary", "not base64!"), ("bool", "yes"), ("uuid", "xyz"),
])
def test_invalid_values_are_refused_with_a_reason(ptype, value):
    with pytest.raises(ValueError):
        p.encode_value(T(ptype), value)


def test_decode_round_trips_through_python_values():
    for ptype, text in [("int64", "-5"), ("decimal(10,2)", "12.30"), ("bool", "0"), ("date", "2024-01-31"),
                        ("timestamp", "2024-01-31 10:11:12.000001"), ("binary", "AP8="),
                        ("timestamptz", "2024-01-01 00:00:00.000000+00:00"), ("time", "01:02:03.000000")]:
        assert p.canonical_from_db(T(ptype), p.decode_value(T(ptype), text)) == text


SCHEMA = Schema.from_dict({"columns": [{"name": "id", "type": "string(8)"}, {"name": "v", "type": "text"}],
                           "primary_key": ["id"]})


def test_bare_null_and_quoted_null_text_stay_different():
    buf = io.BytesIO()
    p.write_payload(buf, "ds", "changes", SCHEMA, [("I", ["a", None]), ("U", ["b", "NULL"]),
                                                    ("I", ["c", 'x,"y"\nz']), ("D", ["d", ""])], 4)
    buf.seek(0)
    m = p.Manifest.read_from(buf)
    assert m.rows == 4 and m.schema == SCHEMA
    assert list(p.iter_records(buf)) == [("I", ["a", None]), ("U", ["b", "NULL"]), ("I", ["c", 'x,"y"\nz']),
                                         ("D", ["d", ""])]


def test_row_encoder_names_the_line_and_column():
    enc = p.RowEncoder(Schema.from_dict({"columns": [{"name": "id", "type": "int32"}], "primary_key": ["id"]}),
                       "changes")
    with pytest.raises(DataError) as e:
        enc.fields_from_mapping({"id": "x"}, "line 7")
    assert "line 7" in str(e.value) and "'id'" in str(e.value)
    with pytest.raises(DataError, match="unknown column"):
        enc.fields_from_mapping({"id": 1, "idd": 2}, "line 8")
    with pytest.raises(DataError, match="_op"):
        enc.fields_from_mapping({"id": 1, "_op": "X"}, "line 9")


def test_checksum_is_order_independent_and_sensitive_to_every_value():
    rows = [["a", "1"], ["b", None], ["c", ""]]
    a, b = p.Checksum(), p.Checksum()
    for r in rows:
        a.add(r)
    for r in reversed(rows):
        b.add(r)
    assert a == b
    c = p.Checksum()
    for r in [["a", "1"], ["b", ""], ["c", ""]]:
        c.add(r)
    assert c != a


_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
# values that stress the NULL handling: bare NULLs, the text "NULL" alone, quoted, across lines
_VALUES = st.one_of(st.none(), st.text(alphabet=_TEXT), st.sampled_from(["NULL", '"NULL"', "NULL\n", "\nNULL"]))
_ROWS = st.lists(st.tuples(st.sampled_from("IUD"), st.text(alphabet=_TEXT, min_size=1, max_size=8), _VALUES))


@settings(max_examples=200, deadline=None)
@given(_ROWS)
def test_any_text_survives_the_payload_round_trip(rows):
    buf = io.BytesIO()
    p.write_payload(buf, "ds", "changes", SCHEMA, [(op, [k, v]) for op, k, v in rows], len(rows))
    buf.seek(0)
    p.Manifest.read_from(buf)
    assert list(p.iter_records(buf)) == [(op, [k, v]) for op, k, v in rows]


def test_values_larger_than_csvs_default_field_limit_parse():
    big = "长" * 200_000  # 600 KB of UTF-8, above csv's 128 KiB default
    buf = io.BytesIO()
    p.write_payload(buf, "ds", "changes", SCHEMA, [("I", ["a", big])], 1)
    buf.seek(0)
    p.Manifest.read_from(buf)
    assert list(p.iter_records(buf)) == [("I", ["a", big])]


def test_negative_zero_and_json_null_canonicalise_like_the_databases_store_them():
    assert p.encode_value(T("decimal(5,2)"), "-0.00") == "0.00"
    assert p.canonical_from_db(T("decimal(5,2)"), Decimal("0.00")) == "0.00"
    assert p.canonical_from_db(T("json"), "null") == "null"
    assert p.canonical_from_db(T("json"), '{"b": 1, "a": 2}') == '{"a":2,"b":1}'
