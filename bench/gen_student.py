"""Deterministic generator of the 13-column ``student`` dataset (varchar key, Chinese text) for benchmarks.

Reusable by every benchmark: ``SCHEMA``, ``snapshot_rows(n)``, ``change_records(n, base)`` (70% updates of
existing keys, 20% inserts of new keys, 10% deletes), and ``write_payloads(dir, n)`` which writes the
payload files (manifest line + CSV, as decrypted from an envelope) plus their expected end states.

    python bench/gen_student.py --rows 200000 --out /tmp/student
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from pathlib import Path
from typing import Iterator

from agent.payload import Checksum, write_payload
from agent.schema import parse_columns

SCHEMA = parse_columns([
    ("student_id", "string(20)", False), ("name", "string(40)", False), ("gender", "string(2)", True),
    ("birth_date", "date", True), ("id_card", "string(18)", True), ("school_code", "string(12)", False),
    ("school_name", "string(100)", True), ("grade", "int32", True), ("class_name", "string(40)", True),
    ("enrol_date", "date", True), ("address", "text", True), ("score", "decimal(6,2)", True),
    ("updated_at", "timestamptz", True),
], ["student_id"])

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲芬燕彬鹏辉子涵梓轩浩宇欣怡思琪𠀀"
_DISTRICTS = ["东城区", "西城区", "朝阳区", "海淀区", "丰台区", "石景山区", "通州区", "昌平区", "大兴区", "顺义区"]
_ROADS = ["长安街", "中关村大街", "学院路", "建国路", "复兴路", "西直门外大街", "望京街", "回龙观东大街"]
_CLASSES = "一二三四五六七八九十"
_EPOCH = dt.datetime(2024, 9, 1, tzinfo=dt.timezone.utc)


def key(i: int) -> str:
    return f"S{2010000000 + i:011d}"


def row(i: int, version: int = 0) -> list[str | None]:
    """Canonical field texts of student ``i`` (``version`` > 0: the same key with changed values)."""
    r = random.Random(i * 7919 + version)
    grade = r.randint(1, 12)
    school = r.randint(1, 400)
    born = dt.date(2006, 1, 1) + dt.timedelta(days=r.randint(0, 12 * 365))
    addr = (f"北京市{r.choice(_DISTRICTS)}{r.choice(_ROADS)}{r.randint(1, 300)}号"
            f"{r.randint(1, 30)}号楼{r.randint(1, 6)}单元{r.randint(101, 2402)}室")
    return [
        key(i),
        r.choice(_SURNAMES) + "".join(r.choice(_GIVEN) for _ in range(r.randint(1, 2))),
        r.choice(("男", "女")),
        born.isoformat(),
        f"110{r.randint(100, 999)}{born:%Y%m%d}{r.randint(100, 999)}{r.choice('0123456789X')}",
        f"1101{school:08d}",
        f"北京市第{school}中学" if grade > 6 else f"北京市第{school}小学",
        str(grade),
        f"{_CLASSES[(grade - 1) % 10]}年级{_CLASSES[r.randint(0, 9)]}班",
        dt.date(2012 + r.randint(0, 12), 9, 1).isoformat(),
        None if r.random() < 0.05 else addr,
        None if r.random() < 0.1 else f"{r.randint(0, 9999) / 100:.2f}",
        (_EPOCH + dt.timedelta(seconds=r.randint(0, 10**7), microseconds=r.randint(0, 999999)))
        .isoformat(sep=" ", timespec="microseconds"),
    ]


def snapshot_rows(n: int) -> Iterator[list[str | None]]:
    return (row(i) for i in range(n))


def change_records(n: int, base: int, seed: int = 1) -> list[tuple[str, list[str | None]]]:
    """A change batch of ``n`` records over a table of ``base`` students: 70% U, 20% I, 10% D, one per key."""
    r = random.Random(seed)
    n_upd, n_ins = n * 7 // 10, n * 2 // 10
    n_del = n - n_upd - n_ins
    touched = r.sample(range(base), n_upd + n_del)
    recs: list[tuple[str, list[str | None]]] = [("U", row(i, 1)) for i in touched[:n_upd]]
    recs += [("I", row(base + j)) for j in range(n_ins)]
    recs += [("D", [key(i)] + [None] * (len(SCHEMA.columns) - 1)) for i in touched[n_upd:]]
    r.shuffle(recs)
    return recs


def write_payloads(out: Path, n: int) -> dict[str, object]:
    """Write snapshot.payload and changes.payload (and .csv without the manifest line); return expectations."""
    out.mkdir(parents=True, exist_ok=True)
    table = {}
    with open(out / "snapshot.payload", "wb") as f:
        recs = (("I", fields) for fields in snapshot_rows(n))
        write_payload(f, "student", "snapshot", SCHEMA, _keep(recs, table), n)
    snap_ck = _table_checksum(table)
    changes = change_records(n, n)
    with open(out / "changes.payload", "wb") as f:
        write_payload(f, "student", "changes", SCHEMA, changes, len(changes))
    for op, fields in changes:
        if op == "D":
            table.pop(fields[0], None)
        else:
            table[fields[0]] = fields
    final_ck = _table_checksum(table)
    for name in ("snapshot", "changes"):
        data = (out / f"{name}.payload").read_bytes()
        (out / f"{name}.csv").write_bytes(data[data.index(b"\n") + 1:])
    exp = {"rows": n, "snapshot": snap_ck.to_dict(), "after_changes": final_ck.to_dict(),
           "changes": len(changes)}
    (out / "expected.json").write_text(json.dumps(exp, indent=1))
    return exp


def _keep(recs, table):  # type: ignore[no-untyped-def]
    for op, fields in recs:
        table[fields[0]] = fields
        yield op, fields


def _table_checksum(table: dict) -> Checksum:  # type: ignore[type-arg]
    ck = Checksum()
    for fields in table.values():
        ck.add(fields)
    return ck


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    print(json.dumps(write_payloads(args.out, args.rows), indent=1))


if __name__ == "__main__":
    main()
