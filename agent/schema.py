"""Portable dataset schemas: the column types the platform publishes and every connector maps.

A schema is a list of columns (name, portable type, nullability) plus the primary key and a version.
Its canonical JSON form is hashed into every envelope header (``schema_hash``) so an agent can refuse a
batch whose schema it does not expect before decrypting it. The type grammar is deliberately small;
each connector documents its mapping of every type (docs/connectors.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .errors import SchemaError

SIMPLE_TYPES = frozenset({
    "int32", "int64", "float64", "bool", "text", "date", "time", "timestamp", "timestamptz",
    "uuid", "binary", "json",
})
_PARAM_RE = re.compile(r"^(decimal)\((\d+),\s*(\d+)\)$|^(string)\((\d+)\)$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_STRING = 10_485_760
MAX_DECIMAL_PRECISION = 38
RESERVED_COLUMNS = frozenset({"_op", "_edx_batch", "_edx_applied_at"})


@dataclass(frozen=True)
class PortableType:
    """A parsed portable type: ``base`` plus ``length`` (string) or ``precision``/``scale`` (decimal)."""

    base: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    @classmethod
    def parse(cls, text: str) -> "PortableType":
        t = text.strip().lower()
        if t in SIMPLE_TYPES:
            return cls(t)
        m = _PARAM_RE.match(t)
        if m:
            if m.group(1):
                p, s = int(m.group(2)), int(m.group(3))
                if not (1 <= p <= MAX_DECIMAL_PRECISION) or s > p:
                    raise SchemaError(f"decimal({p},{s}): precision must be 1..38 and scale <= precision")
                return cls("decimal", precision=p, scale=s)
            n = int(m.group(5))
            if not 1 <= n <= MAX_STRING:
                raise SchemaError(f"string({n}): length must be 1..{MAX_STRING}")
            return cls("string", length=n)
        raise SchemaError(f"unknown type {text!r}")

    def __str__(self) -> str:
        if self.base == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.base == "string":
            return f"string({self.length})"
        return self.base

    def widens_to(self, other: "PortableType") -> bool:
        """True when every value of ``self`` is exactly representable in ``other`` (lossless widening)."""
        if self == other:
            return True
        a, b = self.base, other.base
        if a == "int32" and b == "int64":
            return True
        if a in ("int32", "int64") and b == "decimal":
            digits = 10 if a == "int32" else 19
            return (other.precision or 0) - (other.scale or 0) >= digits
        if a == "string" and b == "string":
            return (other.length or 0) >= (self.length or 0)
        if a == "string" and b == "text":
            return True
        if a == "decimal" and b == "decimal":
            return (other.scale or 0) >= (self.scale or 0) and \
                (other.precision - other.scale) >= (self.precision - self.scale)  # type: ignore[operator]
        return False


@dataclass(frozen=True)
class Column:
    name: str
    type: PortableType
    nullable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": str(self.type), "nullable": self.nullable}


@dataclass(frozen=True)
class Schema:
    """A dataset's schema. Immutable; compare with ``==`` or by ``digest()``."""

    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    version: int = 1
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    @classmethod
    def from_dict(cls, data: Any) -> "Schema":
        """Parse and validate a schema document; every problem is reported in one SchemaError."""
        problems: list[str] = []
        if not isinstance(data, dict):
            raise SchemaError("a schema must be a JSON object with 'columns' and 'primary_key'")
        raw_cols = data.get("columns")
        if not isinstance(raw_cols, list) or not raw_cols:
            raise SchemaError("'columns' must be a non-empty list")
        cols: list[Column] = []
        seen: set[str] = set()
        for i, rc in enumerate(raw_cols):
            if not isinstance(rc, dict):
                problems.append(f"columns[{i}]: must be an object")
                continue
            name = rc.get("name")
            if not isinstance(name, str) or not _IDENT_RE.match(name):
                problems.append(f"columns[{i}].name: {name!r} is not a valid identifier "
                                "(letters, digits, underscore; at most 63 characters)")
                continue
            if name.lower() in seen:
                problems.append(f"columns[{i}].name: duplicate column {name!r}")
            if name.lower() in RESERVED_COLUMNS:
                problems.append(f"columns[{i}].name: {name!r} is reserved")
            seen.add(name.lower())
            try:
                ptype = PortableType.parse(str(rc.get("type", "")))
            except SchemaError as e:
                problems.append(f"columns[{i}].type: {e.detail}")
                continue
            nullable = rc.get("nullable", True)
            if not isinstance(nullable, bool):
                problems.append(f"columns[{i}].nullable: must be true or false")
                continue
            cols.append(Column(name, ptype, nullable))
        pk = data.get("primary_key")
        if isinstance(pk, str):
            pk = [pk]
        if not isinstance(pk, list) or not pk or not all(isinstance(k, str) for k in pk):
            problems.append("primary_key: must name at least one column")
            pk = []
        names = {c.name for c in cols}
        for k in pk:
            if k not in names:
                problems.append(f"primary_key: {k!r} is not a column")
        version = data.get("version", 1)
        if not isinstance(version, int) or version < 1:
            problems.append("version: must be a positive integer")
            version = 1
        if problems:
            raise SchemaError("; ".join(problems))
        # primary-key columns are never NULL whatever the document says
        cols = [Column(c.name, c.type, False) if c.name in pk else c for c in cols]
        return cls(tuple(cols), tuple(pk), version)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Schema":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise SchemaError(f"not valid JSON: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [c.to_dict() for c in self.columns],
                "primary_key": list(self.primary_key), "version": self.version}

    def canonical_bytes(self) -> bytes:
        """The bytes that are hashed: columns and key only (the version number is not part of identity)."""
        doc = {"columns": [c.to_dict() for c in self.columns], "primary_key": list(self.primary_key)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self, hash_fn: Callable[[bytes], bytes] | None = None) -> bytes:
        """32-byte schema hash (SHA-256 by default; the 国密 suite passes SM3)."""
        if hash_fn is None:
            return hashlib.sha256(self.canonical_bytes()).digest()
        return hash_fn(self.canonical_bytes())

    def column(self, name: str) -> Column:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def pk_columns(self) -> list[Column]:
        return [self._by_name[k] for k in self.primary_key]

    def evolution_to(self, new: "Schema") -> "SchemaDiff":
        """How to get from this (the table's) schema to ``new``; see ``SchemaDiff``."""
        return SchemaDiff.between(self, new)


@dataclass(frozen=True)
class SchemaDiff:
    """The difference between a table's schema and a batch's: what can be applied in place, what cannot."""

    added: tuple[Column, ...] = ()
    widened: tuple[tuple[Column, Column], ...] = ()
    refused: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.widened or self.refused)

    @property
    def safe(self) -> bool:
        return not self.refused

    @classmethod
    def between(cls, old: Schema, new: Schema) -> "SchemaDiff":
        added: list[Column] = []
        widened: list[tuple[Column, Column]] = []
        refused: list[str] = []
        if list(old.primary_key) != list(new.primary_key):
            refused.append(f"primary key changes from {list(old.primary_key)} to {list(new.primary_key)}")
        old_names = set(old.names)
        for col in new.columns:
            if col.name not in old_names:
                if col.nullable:
                    added.append(col)
                else:
                    refused.append(f"new column {col.name!r} is NOT NULL (only nullable columns can be added)")
                continue
            prev = old.column(col.name)
            if prev.type != col.type:
                if prev.type.widens_to(col.type):
                    widened.append((prev, col))
                else:
                    refused.append(f"column {col.name!r} changes type {prev.type} -> {col.type}")
            if prev.nullable and not col.nullable:
                refused.append(f"column {col.name!r} becomes NOT NULL")
        for name in old.names:
            if name not in set(new.names):
                refused.append(f"column {name!r} is dropped")
        return cls(tuple(added), tuple(widened), tuple(refused))


def parse_columns(spec: Iterable[tuple[str, str, bool]], primary_key: Iterable[str]) -> Schema:
    """Build a schema from (name, type, nullable) triples; a convenience for code and tests."""
    return Schema.from_dict({
        "columns": [{"name": n, "type": t, "nullable": nl} for n, t, nl in spec],
        "primary_key": list(primary_key),
    })
