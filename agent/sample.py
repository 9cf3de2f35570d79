"""A built-in synthetic sample dataset (学籍-style student records with Chinese names) for the demo.

Deterministic for a given seed, so the demo and tests can check exact results. Every value is
synthetic: names are drawn from common surnames and given-name characters, identifiers are made up.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any, Iterator

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤欧阳"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华玉兰萍鹏辉宇浩然子涵欣怡梓轩一诺雨桐思远佳琪博文嘉怡俊杰晨曦"
SCHOOLS = [("11010101", "北京市第一实验小学"), ("11010202", "朝阳区育才中学"), ("11010303", "海淀区启明学校"),
           ("11010404", "西城区师范附属小学"), ("11010505", "丰台区第八中学")]
GRADES = ["一年级", "二年级", "三年级", "四年级", "五年级", "六年级", "初一", "初二", "初三"]

SCHEMA: dict[str, Any] = {
    "version": 1,
    "primary_key": ["student_id"],
    "columns": [
        {"name": "student_id", "type": "string(20)", "nullable": False},
        {"name": "name", "type": "string(32)", "nullable": False},
        {"name": "gender", "type": "string(2)", "nullable": True},
        {"name": "birth_date", "type": "date", "nullable": True},
        {"name": "school_code", "type": "string(12)", "nullable": False},
        {"name": "school_name", "type": "string(64)", "nullable": False},
        {"name": "grade", "type": "string(8)", "nullable": True},
        {"name": "class_no", "type": "int32", "nullable": True},
        {"name": "enrolled_on", "type": "date", "nullable": True},
        {"name": "score", "type": "decimal(5,1)", "nullable": True},
        {"name": "boarding", "type": "bool", "nullable": True},
        {"name": "updated_at", "type": "timestamp", "nullable": False},
    ],
}


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def student(rng: random.Random, i: int, updated: dt.datetime) -> dict[str, Any]:
    code, school = rng.choice(SCHOOLS)
    birth = dt.date(2008, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 9))
    return {
        "student_id": f"G{110101000000 + i:014d}",
        "name": _name(rng),
        "gender": rng.choice(("男", "女")),
        "birth_date": birth.isoformat(),
        "school_code": code,
        "school_name": school,
        "grade": rng.choice(GRADES),
        "class_no": rng.randrange(1, 13),
        "enrolled_on": dt.date(birth.year + 6, 9, 1).isoformat(),
        "score": None if rng.random() < 0.05 else f"{rng.uniform(40, 100):.1f}",
        "boarding": rng.random() < 0.2,
        "updated_at": updated.isoformat(sep=" "),
    }


def snapshot(n: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    t = dt.datetime(2026, 9, 1, 8, 0, 0)
    for i in range(n):
        yield student(rng, i, t)


def changes(n_existing: int, n: int, seed: int = 8) -> Iterator[dict[str, Any]]:
    """70% updates, 20% inserts of new students, 10% deletes (the benchmark's mix)."""
    rng = random.Random(seed)
    t = dt.datetime(2026, 9, 2, 8, 0, 0, 123456)
    for j in range(n):
        r = rng.random()
        if r < 0.7:
            row = student(rng, rng.randrange(n_existing), t)
            row["_op"] = "U"
        elif r < 0.9:
            row = student(rng, n_existing + j, t)
            row["_op"] = "I"
        else:
            row = {"student_id": f"G{110101000000 + rng.randrange(n_existing):014d}", "_op": "D"}
        yield row


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_schema(path: Path) -> None:
    Path(path).write_text(json.dumps(SCHEMA, ensure_ascii=False, indent=2), encoding="utf-8")
