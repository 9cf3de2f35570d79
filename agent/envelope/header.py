"""The envelope header: TLV encoding, strict parsing, signing and signature verification (docs/envelope.md §3).

Layout (big-endian): magic(8) ‖ format_major(1) ‖ suite(1) ‖ body_len(4) ‖ body(TLV*) ‖ sig_len(2) ‖ sig.
Everything before sig_len is ``tbs``, the signed bytes; ``hh`` = H("EDU-ENV/v1 hh\\0" ‖ tbs) names the batch.
The parser is strict on purpose: one canonical encoding per header, so two different byte strings can never
mean the same batch, and every deviation has its own error code.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from . import errors as E
from .keys import VerifyKey
from .provider import Suite, get_provider

MAGIC = b"\x89EDB\r\n\x1a\n"  # PNG-style: high bit, CRLF and ^Z catch text-mode and 7-bit damage
FORMAT_MAJOR = 1
PREFIX_LEN = 14
MAX_BODY_LEN = 65536
SIG_LEN = 64
DST_SIG = b"EDU-ENV/v1 header-sig\x00"
DST_HH = b"EDU-ENV/v1 hh\x00"
LABEL_STREAM = b"EDU-ENV/v1 stream\x00"
LABEL_WRAP = b"EDU-ENV/v1 wrap\x00"

KINDS = {"changes": 1, "snapshot": 2}
KIND_NAMES = {v: k for k, v in KINDS.items()}
PAYLOAD_EDX_CSV1 = 1
COMPRESSION_ZSTD = 1
MIN_CHUNK_LOG, MAX_CHUNK_LOG = 6, 22  # chunk_size is a power of two, 64 B .. 4 MiB
DEFAULT_CHUNK = 1 << 20
MAX_CHUNKS = 1 << 32  # the nonce counter is 32 bits

T_DATASET, T_SEQ, T_PREV_HH, T_KIND, T_SCHEMA, T_ROWS, T_FORMAT, T_COMPRESSION = range(1, 9)
T_ULEN, T_PLEN, T_CHUNK, T_SALT, T_RECIPIENT, T_RKID, T_WRAPPED, T_SKID, T_DIGEST = range(9, 18)
T_CREATED, T_EXPIRES = 0x12, 0x13
LAST_CRITICAL = T_EXPIRES
FIRST_EXTENSION = 0x80

_U8, _U32, _U64 = struct.Struct(">B"), struct.Struct(">I"), struct.Struct(">Q")


@dataclass(frozen=True)
class BatchHeader:
    """A parsed header. Obtained from ``read_header`` (signature checked) or returned by ``seal``."""

    suite: Suite
    dataset_id: str
    batch_seq: int
    prev_hh: bytes
    kind: str  # "changes" | "snapshot"
    schema_version: int
    schema_hash: bytes
    row_count: int
    payload_format: int
    compression: int
    uncompressed_len: int
    payload_len: int
    chunk_size: int
    salt: bytes
    recipient_id: str
    recipient_key_id: bytes
    wrapped_dek: bytes
    signer_key_id: bytes
    content_digest: bytes
    created_at_ms: int
    expires_at_ms: int
    extensions: dict[int, bytes] = field(default_factory=dict)
    tbs: bytes = field(default=b"", repr=False)
    signature: bytes = field(default=b"", repr=False)
    hh: bytes = b""

    @property
    def hh_hex(self) -> str:
        return self.hh.hex()

    @property
    def raw(self) -> bytes:
        """The header exactly as on the wire (tbs ‖ sig_len ‖ signature)."""
        return self.tbs + struct.pack(">H", len(self.signature)) + self.signature

    @property
    def chunks_offset(self) -> int:
        """Offset of chunk 0 from the start of the envelope."""
        return len(self.tbs) + 2 + len(self.signature)

    @property
    def n_chunks(self) -> int:
        return max(1, -(-self.payload_len // self.chunk_size))

    @property
    def envelope_len(self) -> int:
        """Exact total length of a well-formed envelope with this header."""
        return self.chunks_offset + self.payload_len + 16 * self.n_chunks

    def to_log(self) -> dict[str, Any]:
        """Identity of the batch for logs and error reports: no key material, no payload."""
        return {"dataset": self.dataset_id, "batch_seq": self.batch_seq, "kind": self.kind,
                "hh": self.hh_hex, "suite": self.suite.label, "rows": self.row_count,
                "payload_len": self.payload_len, "uncompressed_len": self.uncompressed_len,
                "recipient": self.recipient_id, "recipient_key_id": self.recipient_key_id.hex(),
                "signer_key_id": self.signer_key_id.hex(), "created_at_ms": self.created_at_ms}


# --- encoding ----------------------------------------------------------------------------------

def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"header field 0x{tag:02x} is longer than 65535 bytes")
    return bytes([tag]) + struct.pack(">H", len(value)) + value


def header_fields(h: BatchHeader) -> list[tuple[int, bytes]]:
    """(tag, value) pairs of a header in tag order, extensions last."""
    fields = [
        (T_DATASET, h.dataset_id.encode()),
        (T_SEQ, _U64.pack(h.batch_seq)),
        (T_PREV_HH, h.prev_hh),
        (T_KIND, _U8.pack(KINDS[h.kind])),
        (T_SCHEMA, _U32.pack(h.schema_version) + h.schema_hash),
        (T_ROWS, _U64.pack(h.row_count)),
        (T_FORMAT, _U8.pack(h.payload_format)),
        (T_COMPRESSION, _U8.pack(h.compression)),
        (T_ULEN, _U64.pack(h.uncompressed_len)),
        (T_PLEN, _U64.pack(h.payload_len)),
        (T_CHUNK, _U32.pack(h.chunk_size)),
        (T_SALT, h.salt),
        (T_RECIPIENT, h.recipient_id.encode()),
        (T_RKID, h.recipient_key_id),
        (T_WRAPPED, h.wrapped_dek),
        (T_SKID, h.signer_key_id),
        (T_DIGEST, h.content_digest),
        (T_CREATED, _U64.pack(h.created_at_ms)),
        (T_EXPIRES, _U64.pack(h.expires_at_ms)),
    ]
    for tag in sorted(h.extensions):
        if not FIRST_EXTENSION <= tag <= 0xFF:
            raise ValueError(f"extension tags are 0x80..0xff, got {tag:#x}")
        fields.append((tag, bytes(h.extensions[tag])))
    return fields


def encode_tlvs(fields: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(_tlv(t, v) for t, v in fields)


def encode_body(h: BatchHeader) -> bytes:
    """The TLV body, tags ascending; the one canonical encoding of these fields."""
    return encode_tlvs(header_fields(h))


def encode_tbs(suite: Suite, body: bytes) -> bytes:
    if len(body) > MAX_BODY_LEN:
        raise ValueError("header body exceeds 64 KiB")
    return MAGIC + bytes([FORMAT_MAJOR, suite]) + _U32.pack(len(body)) + body


def batch_hash(suite: Suite, tbs: bytes) -> bytes:
    return get_provider(suite).hash(DST_HH + tbs)


def check_chunk_size(cs: int) -> bool:
    return isinstance(cs, int) and cs > 0 and cs & (cs - 1) == 0 and \
        (1 << MIN_CHUNK_LOG) <= cs <= (1 << MAX_CHUNK_LOG)


# --- parsing -----------------------------------------------------------------------------------

def _read_exact(src: IO[bytes], n: int, what: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = src.read(n - len(buf))  # I/O errors propagate: they are not integrity failures
        if not part:
            raise E.HeaderMalformed(f"envelope ends inside the {what} ({len(buf)} of {n} bytes)")
        buf += part
    return bytes(buf)


def _utf8(value: bytes, what: str, max_len: int) -> str:
    if not 1 <= len(value) <= max_len:
        raise E.HeaderMalformed(f"{what} must be 1..{max_len} bytes")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise E.HeaderMalformed(f"{what} is not UTF-8") from None
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in text):
        raise E.HeaderMalformed(f"{what} holds control characters")  # would forge log lines
    return text


def _int(value: bytes, st: struct.Struct, what: str) -> int:
    if len(value) != st.size:
        raise E.HeaderMalformed(f"{what} must be {st.size} bytes, got {len(value)}")
    return st.unpack(value)[0]


def _fixed(value: bytes, n: int, what: str) -> bytes:
    if len(value) != n:
        raise E.HeaderMalformed(f"{what} must be {n} bytes, got {len(value)}")
    return value


def parse_body(suite: Suite, body: bytes) -> dict[str, Any]:
    """Fields of a TLV body; strict: ascending unique tags, known critical tags, exact lengths."""
    tlvs: dict[int, bytes] = {}
    ext: dict[int, bytes] = {}
    pos, last = 0, 0
    while pos < len(body):
        if pos + 3 > len(body):
            raise E.HeaderMalformed("header body ends inside a field")
        tag = body[pos]
        ln = (body[pos + 1] << 8) | body[pos + 2]
        pos += 3
        if pos + ln > len(body):
            raise E.HeaderMalformed(f"field 0x{tag:02x} runs past the header body")
        if tag <= last:
            raise E.HeaderMalformed(f"field 0x{tag:02x} out of order or repeated")
        last = tag
        value = body[pos:pos + ln]
        pos += ln
        if tag >= FIRST_EXTENSION:
            ext[tag] = value
        elif tag > LAST_CRITICAL:
            raise E.UnknownCriticalTag(f"tag 0x{tag:02x}")
        else:
            tlvs[tag] = value
    missing = [f"0x{t:02x}" for t in range(1, LAST_CRITICAL + 1) if t not in tlvs]
    if missing:
        raise E.HeaderMalformed(f"mandatory field(s) missing: {', '.join(missing)}")
    p = get_provider(suite)
    kind_byte = _int(tlvs[T_KIND], _U8, "batch_kind")
    if kind_byte not in KIND_NAMES:
        raise E.HeaderMalformed(f"batch_kind {kind_byte} is not 1 (changes) or 2 (snapshot)")
    schema = _fixed(tlvs[T_SCHEMA], 36, "schema")
    f = {
        "dataset_id": _utf8(tlvs[T_DATASET], "dataset_id", 128),
        "batch_seq": _int(tlvs[T_SEQ], _U64, "batch_seq"),
        "prev_hh": _fixed(tlvs[T_PREV_HH], 32, "prev_hh"),
        "kind": KIND_NAMES[kind_byte],
        "schema_version": _U32.unpack(schema[:4])[0],
        "schema_hash": schema[4:],
        "row_count": _int(tlvs[T_ROWS], _U64, "row_count"),
        "payload_format": _int(tlvs[T_FORMAT], _U8, "payload_format"),
        "compression": _int(tlvs[T_COMPRESSION], _U8, "compression"),
        "uncompressed_len": _int(tlvs[T_ULEN], _U64, "uncompressed_len"),
        "payload_len": _int(tlvs[T_PLEN], _U64, "payload_len"),
        "chunk_size": _int(tlvs[T_CHUNK], _U32, "chunk_size"),
        "salt": _fixed(tlvs[T_SALT], 32, "salt"),
        "recipient_id": _utf8(tlvs[T_RECIPIENT], "recipient_id", 64),
        "recipient_key_id": _fixed(tlvs[T_RKID], 16, "recipient_key_id"),
        "wrapped_dek": _fixed(tlvs[T_WRAPPED], p.wrapped_len, "wrapped_dek"),
        "signer_key_id": _fixed(tlvs[T_SKID], 16, "signer_key_id"),
        "content_digest": _fixed(tlvs[T_DIGEST], 32, "content_digest"),
        "created_at_ms": _int(tlvs[T_CREATED], _U64, "created_at"),
        "expires_at_ms": _int(tlvs[T_EXPIRES], _U64, "expires_at"),
        "extensions": ext,
    }
    if f["batch_seq"] < 1:
        raise E.HeaderMalformed("batch_seq starts at 1")
    if f["payload_format"] != PAYLOAD_EDX_CSV1:
        raise E.UnsupportedVersion(f"payload format {f['payload_format']}")
    if f["compression"] != COMPRESSION_ZSTD:
        raise E.UnsupportedVersion(f"compression {f['compression']}")
    if not check_chunk_size(f["chunk_size"]):
        raise E.HeaderMalformed(f"chunk_size {f['chunk_size']} is not a power of two in 64 B .. 4 MiB")
    if -(-f["payload_len"] // f["chunk_size"]) > MAX_CHUNKS:
        raise E.HeaderMalformed("payload_len needs more than 2^32 chunks")
    if f["payload_len"] == 0 and f["uncompressed_len"] != 0:
        # a zstd frame is never empty, so an empty payload can only stand for an empty payload
        raise E.HeaderMalformed("empty payload with a non-zero uncompressed_len")
    return f


def read_header(src: IO[bytes], *, trusted: Iterable[VerifyKey], allowed_suites: Iterable[Any]) -> BatchHeader:
    """Parse the header at the stream's position and verify its signature; leaves ``src`` at chunk 0.

    Order (docs/envelope.md §Verification order): magic, version, suite allow-list, body length, strict TLV
    parse, signer in the trust store and valid at ``created_at`` for this dataset, then the signature — the
    only public-key operation before the context checks.
    """
    prefix = _read_exact(src, PREFIX_LEN, "prefix")
    if prefix[:8] != MAGIC:
        raise E.BadMagic(f"starts with {prefix[:8].hex()}")
    if prefix[8] != FORMAT_MAJOR:
        raise E.UnsupportedVersion(f"format version {prefix[8]} (this agent reads {FORMAT_MAJOR})")
    try:
        suite = Suite(prefix[9])
    except ValueError:
        raise E.UnsupportedVersion(f"cipher suite 0x{prefix[9]:02x}") from None
    allowed = set()
    for s in allowed_suites:
        try:
            allowed.add(Suite.parse(s))
        except ValueError:
            continue
    if suite not in allowed:
        raise E.SuiteNotAllowed(f"{suite.label} (allowed: {', '.join(sorted(a.label for a in allowed)) or 'none'})")
    body_len = _U32.unpack(prefix[10:14])[0]
    if body_len > MAX_BODY_LEN:
        raise E.HeaderMalformed(f"header body of {body_len} bytes exceeds 64 KiB")
    body = _read_exact(src, body_len, "header body")
    sig_len = struct.unpack(">H", _read_exact(src, 2, "signature length"))[0]
    if sig_len != SIG_LEN:
        raise E.HeaderMalformed(f"signature length {sig_len}, expected {SIG_LEN}")
    signature = _read_exact(src, sig_len, "signature")
    f = parse_body(suite, body)
    tbs = prefix + body

    by_id = {}
    for k in trusted:
        if k.suite == suite:
            by_id.setdefault(k.key_id, []).append(k)
    candidates = by_id.get(f["signer_key_id"])
    if not candidates:
        raise E.SignerUnknown(f"signer key id {f['signer_key_id'].hex()}")
    usable = [k for k in candidates if k.valid_at(f["created_at_ms"]) and k.allows(f["dataset_id"])]
    if not usable:
        raise E.SignerNotValid(f"signer key {f['signer_key_id'].hex()} is not valid for dataset "
                               f"{f['dataset_id']!r} at created_at={f['created_at_ms']}")
    if not get_provider(suite).verify(usable[0].public_bytes, DST_SIG + tbs, signature):
        raise E.SignatureInvalid(f"signer {f['signer_key_id'].hex()}")
    return BatchHeader(suite=suite, tbs=tbs, signature=signature, hh=batch_hash(suite, tbs), **f)
