"""Sealing and opening the chunk stream: zstd compression, STREAM-style chunk AEAD, digest and bomb guards.

Chunk i is sealed with nonce = prefix(7) ‖ u32be(i) ‖ last-flag(1) under a per-batch key derived from the
batch's data key and ``hh``; its associated data is ``hh``. The counter stops reordering and duplication, the
flag truncation at a chunk boundary, the key and AD splicing between batches (docs/envelope.md §4).
Buffers are allocated once per batch, so memory is flat in the batch size: about two chunks for the
ciphertext and plaintext plus the zstd window (≤ 8 MiB).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import zstandard

from . import errors as E
from .header import (
    COMPRESSION_ZSTD,
    DEFAULT_CHUNK,
    DST_SIG,
    KINDS,
    LABEL_STREAM,
    LABEL_WRAP,
    PAYLOAD_EDX_CSV1,
    BatchHeader,
    batch_hash,
    check_chunk_size,
    encode_body,
    encode_tbs,
)
from .keys import AgentKeys, AgentPublicKeys, SignerKey
from .provider import TAG_LEN, Suite, consteq, get_provider, random_bytes

MAX_WINDOW = 8 << 20  # zstd window cap: bounds decoder memory whatever the frame asks for
MAX_WINDOW_LOG = 23
NONCE_PREFIX_LEN = 7
_IB = struct.Struct(">IB")
_IO_BLOCK = 1 << 20


@dataclass(frozen=True)
class PayloadInfo:
    """Facts about a compressed payload that go into the signed header."""

    uncompressed_len: int
    payload_len: int
    content_digest: bytes


class _HashingWriter:
    __slots__ = ("_dst", "_h", "count")

    def __init__(self, dst: IO[bytes], hasher: Any) -> None:
        self._dst, self._h, self.count = dst, hasher, 0

    def write(self, data: Any) -> int:
        self._h.update(data)
        self._dst.write(data)
        n = len(data)
        self.count += n
        return n


def zstd_params(level: int) -> zstandard.ZstdCompressionParameters:
    """Compression parameters for ``level`` with the window capped at 8 MiB (levels ≥ 20 want more)."""
    wl = min(zstandard.ZstdCompressionParameters.from_level(level).window_log, MAX_WINDOW_LOG)
    return zstandard.ZstdCompressionParameters.from_level(level, window_log=wl)


def compress_payload(src: IO[bytes], dst: IO[bytes], suite: Suite | int, level: int = 3) -> PayloadInfo:
    """zstd-compress ``src`` into ``dst`` as one frame, hashing the compressed bytes with the suite's H."""
    p = get_provider(Suite.parse(suite))
    h = p.new_hash()
    tee = _HashingWriter(dst, h)
    cctx = zstandard.ZstdCompressor(compression_params=zstd_params(level))
    read, _ = cctx.copy_stream(src, tee, read_size=_IO_BLOCK, write_size=_IO_BLOCK)
    return PayloadInfo(read, tee.count, h.digest())


def _fill(src: IO[bytes], view: memoryview) -> int:
    """Read until ``view`` is full or EOF; the count read (streams may return short reads)."""
    got, n = 0, len(view)
    readinto = getattr(src, "readinto", None)
    while got < n:
        if readinto is not None:
            k = readinto(view[got:])
        else:
            part = src.read(n - got)
            k = len(part) if part else 0
            view[got:got + k] = part if part else b""
        if not k:
            break
        got += k
    return got


def derive_stream_key(suite: Suite, dek: bytes, salt: bytes, hh: bytes) -> tuple[bytes, bytes]:
    """(chunk key, 7-byte nonce prefix) = HKDF(H, ikm=DEK, salt, info="EDU-ENV/v1 stream\\0" ‖ hh)."""
    p = get_provider(suite)
    okm = p.hkdf(dek, salt, LABEL_STREAM + hh, p.key_len + NONCE_PREFIX_LEN)
    return okm[:p.key_len], okm[p.key_len:]


def wrap_info(suite: Suite, recipient_key_id: bytes) -> bytes:
    return LABEL_WRAP + bytes([suite]) + recipient_key_id


# --- sealing -----------------------------------------------------------------------------------

def seal(dst: IO[bytes], compressed: IO[bytes], info: PayloadInfo, *, suite: Suite | int, signer: SignerKey,
         recipient_id: str, recipient: AgentPublicKeys | AgentKeys, dataset_id: str, batch_seq: int,
         prev_hh: bytes, kind: str, schema_version: int, schema_hash: bytes, row_count: int,
         created_at_ms: int, expires_at_ms: int = 0, chunk_size: int = DEFAULT_CHUNK,
         extensions: dict[int, bytes] | None = None, check_digest: bool = True,
         _dek: bytes | None = None, _salt: bytes | None = None, _wrapped_dek: bytes | None = None,
         _sig_k: int | None = None) -> BatchHeader:
    """Write one envelope for one recipient to ``dst``; ``compressed`` yields exactly ``info.payload_len`` bytes.

    Raises ValueError for wrong arguments or when ``compressed`` does not match ``info`` (then ``dst`` holds a
    broken envelope and must be discarded). The ``_`` parameters fix the randomness, for golden vectors only.
    """
    s = Suite.parse(suite)
    p = get_provider(s)
    if isinstance(recipient, AgentKeys):
        recipient = recipient.public()
    if signer.suite != s or recipient.suite != s:
        raise ValueError("signer, recipient and suite must all be the same suite")
    if kind not in KINDS:
        raise ValueError(f"kind must be 'changes' or 'snapshot', got {kind!r}")
    if not check_chunk_size(chunk_size):
        raise ValueError("chunk_size must be a power of two between 64 B and 4 MiB")
    if not isinstance(batch_seq, int) or batch_seq < 1:
        raise ValueError("batch_seq starts at 1")
    if len(prev_hh) != 32 or len(schema_hash) != 32 or len(info.content_digest) != 32:
        raise ValueError("prev_hh, schema_hash and content_digest are 32 bytes")
    for what, text, mx in (("dataset_id", dataset_id, 128), ("recipient_id", recipient_id, 64)):
        b = text.encode()
        if not 1 <= len(b) <= mx or any(ord(ch) < 0x20 or ch == "\x7f" for ch in text):
            raise ValueError(f"{what} must be 1..{mx} UTF-8 bytes without control characters")
    if info.payload_len == 0 and info.uncompressed_len != 0:
        raise ValueError("empty payload with a non-zero uncompressed_len")

    dek = _dek if _dek is not None else random_bytes(p.dek_len)
    salt = _salt if _salt is not None else random_bytes(32)
    wrapped = _wrapped_dek if _wrapped_dek is not None else p.wrap(recipient.enc_public, dek,
                                                                    wrap_info(s, recipient.key_id))
    h = BatchHeader(
        suite=s, dataset_id=dataset_id, batch_seq=batch_seq, prev_hh=bytes(prev_hh), kind=kind,
        schema_version=schema_version, schema_hash=bytes(schema_hash), row_count=row_count,
        payload_format=PAYLOAD_EDX_CSV1, compression=COMPRESSION_ZSTD,
        uncompressed_len=info.uncompressed_len, payload_len=info.payload_len, chunk_size=chunk_size,
        salt=salt, recipient_id=recipient_id, recipient_key_id=recipient.key_id, wrapped_dek=wrapped,
        signer_key_id=signer.key_id, content_digest=info.content_digest, created_at_ms=created_at_ms,
        expires_at_ms=expires_at_ms, extensions=dict(extensions or {}))
    tbs = encode_tbs(s, encode_body(h))
    sig = signer.sign(DST_SIG + tbs, _k=_sig_k)
    h = BatchHeader(**{**h.__dict__, "tbs": tbs, "signature": sig, "hh": batch_hash(s, tbs)})
    dst.write(h.raw)

    key, prefix = derive_stream_key(s, dek, salt, h.hh)
    cipher = p.chunk_cipher(key)
    n = h.n_chunks
    buf_in = memoryview(bytearray(chunk_size))
    buf_out = memoryview(bytearray(chunk_size + TAG_LEN))
    hasher = p.new_hash() if check_digest else None
    for i in range(n):
        size = chunk_size if i < n - 1 else info.payload_len - (n - 1) * chunk_size
        pt = buf_in[:size]
        if _fill(compressed, pt) != size:
            raise ValueError("compressed payload is shorter than info.payload_len")
        if hasher is not None:
            hasher.update(pt)
        cipher.seal_into(prefix + _IB.pack(i, i == n - 1), h.hh, pt, buf_out)
        dst.write(buf_out[:size + TAG_LEN])
    if compressed.read(1):
        raise ValueError("compressed payload is longer than info.payload_len")
    if hasher is not None and hasher.digest() != info.content_digest:
        raise ValueError("compressed payload does not match info.content_digest")
    return h


# --- opening -----------------------------------------------------------------------------------

def _key_list(recipient_keys: Any) -> list[Any]:
    if isinstance(recipient_keys, (AgentKeys, AgentPublicKeys, bytes)):
        return [recipient_keys]
    return list(recipient_keys)


def _unwrap(header: BatchHeader, recipient_keys: Iterable[AgentKeys] | AgentKeys) -> bytes:
    p = get_provider(header.suite)
    for k in _key_list(recipient_keys):
        if isinstance(k, AgentKeys) and k.suite == header.suite and k.key_id == header.recipient_key_id:
            dek = p.unwrap(k.enc_private, header.wrapped_dek, wrap_info(header.suite, k.key_id))
            if dek is None or len(dek) != p.dek_len:
                raise E.KeyUnwrapFailed(f"recipient key {k.key_id.hex()}")
            return dek
    raise E.WrongRecipient(f"no private key with id {header.recipient_key_id.hex()}")


def _position(src: IO[bytes], header: BatchHeader) -> None:
    """Accept ``src`` at the envelope start (header re-read, must be identical) or right after the header."""
    try:
        at_start = src.seekable() and src.tell() == 0
    except (AttributeError, OSError, ValueError):
        at_start = False
    if not at_start:
        return
    raw = header.raw
    head = bytearray(len(raw))
    got = _fill(src, memoryview(head))
    if got == len(raw) and bytes(head) == raw:
        return
    src.seek(0)  # a stream holding only the chunks: it starts at chunk 0


def _check_frame(first: memoryview, header: BatchHeader) -> None:
    """Refuse a zstd frame that asks for a window above 8 MiB or declares another size, before decoding."""
    try:
        fp = zstandard.get_frame_parameters(bytes(first[:18]))
    except zstandard.ZstdError as e:
        raise E.PayloadCorrupt(f"no zstd frame header: {e}") from None
    if fp.window_size > MAX_WINDOW:
        raise E.DecompressionBomb(f"zstd window of {fp.window_size} bytes exceeds {MAX_WINDOW}")
    declared = fp.content_size
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared != header.uncompressed_len:
        if declared > header.uncompressed_len:
            raise E.DecompressionBomb(f"zstd frame declares {declared} bytes, header {header.uncompressed_len}")
        raise E.LengthMismatch(f"zstd frame declares {declared} bytes, header {header.uncompressed_len}")


class _Chunks:
    """Decrypts the chunks one at a time into alternating preallocated buffers."""

    def __init__(self, src: IO[bytes], header: BatchHeader, dek: bytes) -> None:
        p = get_provider(header.suite)
        key, self._prefix = derive_stream_key(header.suite, dek, header.salt, header.hh)
        self._cipher = p.chunk_cipher(key)
        self._hash = p.new_hash()
        self._src, self._h = src, header
        cs = header.chunk_size
        # allocate no more than the batch needs: a 2 KiB batch sealed with 4 MiB chunks takes 2 KiB buffers
        cap = min(cs, max(header.payload_len, 1))
        self._sealed = memoryview(bytearray(cap + TAG_LEN))
        self._plain = (memoryview(bytearray(cap + TAG_LEN)), memoryview(bytearray(cap + TAG_LEN)))
        self._i, self._n = 0, header.n_chunks
        self.done = False

    def next(self) -> memoryview | None:
        """The next verified plaintext chunk, or None after the last one (end checks done)."""
        i, n, h = self._i, self._n, self._h
        if i >= n:
            if not self.done:
                self._end()
            return None
        last = i == n - 1
        size = h.chunk_size if not last else h.payload_len - (n - 1) * h.chunk_size
        sealed = self._sealed[:size + TAG_LEN]
        got = _fill(self._src, sealed)
        if got < len(sealed):
            raise E.ChunkTruncated(f"chunk {i} of {n} has {got} of {len(sealed)} bytes")
        out = self._plain[i & 1]
        if not self._cipher.open_into(self._prefix + _IB.pack(i, last), h.hh, sealed, out):
            raise E.ChunkInvalid(f"chunk {i} of {n}")
        pt = out[:size]
        if i == 0 and size:
            _check_frame(pt, h)
        self._hash.update(pt)
        self._i = i + 1
        return pt

    def _end(self) -> None:
        if self._src.read(1):
            raise E.TrailingData(f"after chunk {self._n - 1}")
        if not consteq(self._hash.digest(), self._h.content_digest):
            raise E.DigestMismatch(f"batch {self._h.hh_hex}")
        self.done = True


def verify_stream(src: IO[bytes], header: BatchHeader, recipient_keys: Iterable[AgentKeys] | AgentKeys) -> None:
    """Pass 1: unwrap, decrypt and authenticate every chunk, check count, final flag, trailing bytes and digest.

    Nothing is output. ``src`` is at the envelope start or right after the header.
    """
    _position(src, header)
    chunks = _Chunks(src, header, _unwrap(header, recipient_keys))
    while chunks.next() is not None:
        pass


class _Compressed:
    """The verified compressed byte stream, as a ``read()`` source for zstd; failures are recorded, not raised.

    zstd calls ``read`` from C; an exception raised there would surface as a ZstdError and lose its type, so
    the first failure is kept in ``error`` and reported by PayloadStream.
    """

    def __init__(self, chunks: _Chunks) -> None:
        self._chunks = chunks
        self._cur = memoryview(b"")
        self.error: E.EnvelopeError | None = None
        self.exhausted = False

    def read(self, size: int = -1) -> Any:
        if self.error is not None or self.exhausted:
            return b""
        try:
            while not len(self._cur):
                nxt = self._chunks.next()
                if nxt is None:
                    self.exhausted = True
                    return b""
                self._cur = nxt
        except E.EnvelopeError as e:
            self.error = e
            return b""
        cur = self._cur
        if size is None or size < 0 or size >= len(cur):
            self._cur = memoryview(b"")
            return cur
        self._cur = cur[size:]
        return cur[:size]


class PayloadStream(io.RawIOBase):
    """Readable decompressed payload, constant memory. Wrap in ``io.BufferedReader`` for ``readline``.

    Bytes are released only from chunks whose tag verified. ``finish()`` raises an IntegrityError subclass
    unless the stream was read to its end and the digest and declared length both matched: the caller
    commits nothing before ``finish()`` returns.
    """

    def __init__(self, chunks: _Chunks, header: BatchHeader) -> None:
        super().__init__()
        self._h = header
        self._inner = _Compressed(chunks)
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        self._zr = dctx.stream_reader(self._inner, read_size=min(header.chunk_size, _IO_BLOCK),
                                      read_across_frames=True)
        self._produced = 0
        self._eof = False
        self._error: E.EnvelopeError | None = None

    @property
    def header(self) -> BatchHeader:
        return self._h

    @property
    def bytes_out(self) -> int:
        return self._produced

    def readable(self) -> bool:
        return True

    def _fail(self, err: E.EnvelopeError) -> E.EnvelopeError:
        self._error = err
        return err

    def readinto(self, b: Any) -> int:
        if self._error is not None:
            raise self._error
        if self._eof:
            return 0
        m = memoryview(b).cast("B")
        if not len(m):
            return 0
        limit = self._h.uncompressed_len - self._produced
        want = min(len(m), limit + 1)  # one byte beyond the declared length is enough to catch a bomb
        try:
            n = self._zr.readinto(m[:want])
        except zstandard.ZstdError as e:
            if self._inner.error is not None:
                raise self._fail(self._inner.error) from None
            text = str(e).lower()
            if "memory" in text or "window" in text:
                raise self._fail(E.DecompressionBomb(str(e))) from None
            raise self._fail(E.PayloadCorrupt(str(e))) from None
        if self._inner.error is not None:
            raise self._fail(self._inner.error)
        self._produced += n
        if self._produced > self._h.uncompressed_len:
            raise self._fail(E.DecompressionBomb(f"more than the declared {self._h.uncompressed_len} bytes"))
        if n == 0:
            if self._inner.read(1):  # zstd stopped before the compressed stream did
                raise self._fail(E.PayloadCorrupt("data after the end of the zstd frame"))
            if self._inner.error is not None:
                raise self._fail(self._inner.error)
            if self._produced != self._h.uncompressed_len:
                raise self._fail(E.LengthMismatch(
                    f"{self._produced} bytes decompressed, header declares {self._h.uncompressed_len}"))
            self._eof = True
        return n

    def finish(self) -> None:
        """Raise unless every byte was read and every check passed; idempotent."""
        if self._error is not None:
            raise self._error
        if not self._eof and self._produced == self._h.uncompressed_len:
            self.readinto(bytearray(1))  # the caller stopped at the last byte: confirm the end
        if not self._eof:
            raise E.PayloadIncomplete(f"{self._produced} of {self._h.uncompressed_len} bytes read")


def open_payload(src: IO[bytes], header: BatchHeader,
                 recipient_keys: Iterable[AgentKeys] | AgentKeys) -> PayloadStream:
    """Pass 2: a PayloadStream of the decompressed payload. ``src`` is at the envelope start or after the header."""
    _position(src, header)
    return PayloadStream(_Chunks(src, header, _unwrap(header, recipient_keys)), header)
