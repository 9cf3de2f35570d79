"""Envelope benchmark: the envelope against its own primitives chained by hand, side by side in one run.

    python bench/bench_envelope.py                 # ~2 min: 64 MiB throughput batch, RSS at 16/64/256 MiB
    python bench/bench_envelope.py --big           # RSS also at 1 GiB
    python bench/bench_envelope.py --huge          # RSS also at 1 GiB and 4 GiB
    python bench/bench_envelope.py --no-write      # print only; by default docs/performance.md is updated

What it measures, per suite (INTL-1, GM-1):
* limit-open: chunk AEAD decrypt_into/update_into + content hash + zstd stream decompression, hand-chained
  over the same ciphertext; env-open: read_header + check_context + open_payload read to EOF + finish
  (one pass), and the agent's two passes (verify_stream, then open_payload). Ratio = env / limit.
* limit-seal: zstd compress + hash + chunk AEAD + one signature; env-seal: compress_payload + seal.
* fixed cost: open and seal of a one-row batch (signature, key wrap/unwrap, HKDF, buffers).
* peak RSS (VmHWM) of a fresh process opening a batch of each size, and of one refusing a bomb
  (a frame of zeros inflating far past its declared length).
Payload: synthetic 学籍-style rows in the real edx-csv/1 format (agent/payload.py), zstd level 3, 1 MiB
chunks. MB = 10^6 bytes; throughput is of uncompressed bytes unless marked "wire".
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zstandard
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.envelope import (
    ZERO_HH,
    Suite,
    check_context,
    compress_payload,
    get_provider,
    open_payload,
    read_header,
    seal,
    verify_stream,
)
from agent.envelope.stream import MAX_WINDOW, zstd_params
from agent.envelope.testing import KeyRing, craft, zstd_frame
from agent.payload import encode_record
from bench._proc import cpu_model, vm_hwm_kib

MiB = 1 << 20
CHUNK = MiB
BEGIN, END = "<!-- envelope:begin -->", "<!-- envelope:end -->"

_SUR = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
_GIV = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍婷宇浩然子涵欣怡梓轩一诺"
_SCHOOLS = [f"南宁市第{i}中学" for i in range(1, 60)] + [f"桂林市{n}小学" for n in "东南西北中"]


def base_block(size: int = 8 * MiB, seed: int = 7) -> bytes:
    """``size`` bytes of realistic rows (random ids and phones make it a pessimistic ratio, ~3x)."""
    rnd = random.Random(seed)
    out = io.BytesIO()
    out.write(b'{"format":"edx-csv/1","dataset":"bench.students","kind":"changes"}\n')
    i = 0
    while out.tell() < size:
        name = rnd.choice(_SUR) + "".join(rnd.choice(_GIV) for _ in range(rnd.randint(1, 2)))
        guardian = rnd.choice(_SUR) + rnd.choice(_GIV)
        fields = [f"G45{rnd.randint(10**14, 10**15 - 1)}", name, f"45{rnd.randint(10**15, 10**16 - 1)}",
                  f"45{rnd.randint(1000, 9999)}", rnd.choice(_SCHOOLS), str(rnd.randint(1, 9)),
                  str(rnd.randint(1, 12)), f"广西壮族自治区南宁市{rnd.choice('青秀兴宁江南西乡塘良庆')}区{rnd.randint(1, 300)}号",
                  guardian, f"1{rnd.randint(3, 9)}{rnd.randint(10**8, 10**9 - 1)}", rnd.choice(["在读", "休学", "转出"]),
                  None if i % 13 == 0 else f"2025-09-{rnd.randint(1, 30):02d} {rnd.randint(0, 23):02d}:00:00.000000"]
        out.write(encode_record("I" if i % 4 else "U", fields).encode())
        i += 1
    return out.getvalue()[:size]


class Tiled(io.RawIOBase):
    """A read-only stream of ``total`` bytes tiling ``block``: GiB-sized payloads without GiB of memory."""

    def __init__(self, block: bytes, total: int) -> None:
        super().__init__()
        self._b, self._total, self._pos = memoryview(block), total, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        m = memoryview(buf).cast("B")
        n = min(len(m), self._total - self._pos)
        done = 0
        while done < n:
            off = (self._pos + done) % len(self._b)
            k = min(n - done, len(self._b) - off)
            m[done:done + k] = self._b[off:off + k]
            done += k
        self._pos += n
        return n


def best(fn: Any, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# --- the limit: primitives chained without the envelope -------------------------------------------

def _chunk_cipher_funcs(suite: Suite, key: bytes) -> tuple[Any, Any]:
    if suite == Suite.INTL1:
        a = AESGCM(key)

        def enc(nonce: bytes, pt: memoryview, out: memoryview) -> None:
            a.encrypt_into(nonce, pt, b"", out[:len(pt) + 16])

        def dec(nonce: bytes, ct: memoryview, out: memoryview) -> None:
            a.decrypt_into(nonce, ct, b"", out[:len(ct) - 16])
        return enc, dec

    def enc_sm4(nonce: bytes, pt: memoryview, out: memoryview) -> None:
        e = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        e.update_into(pt, out[:len(pt) + 16])
        e.finalize()
        out[len(pt):len(pt) + 16] = e.tag

    def dec_sm4(nonce: bytes, ct: memoryview, out: memoryview) -> None:
        n = len(ct) - 16
        d = Cipher(algorithms.SM4(key), modes.GCM(nonce, bytes(ct[n:]))).decryptor()
        d.update_into(ct[:n], out[:n + 16])
        d.finalize()
    return enc_sm4, dec_sm4


def limit_seal(suite: Suite, payload: bytes, ring: KeyRing) -> tuple[bytes, list[int]]:
    """zstd compress + hash + chunk AEAD + one signature; returns the sealed chunks and their sizes."""
    p = get_provider(suite)
    comp = zstandard.ZstdCompressor(compression_params=zstd_params(3)).compress(payload)
    h = p.new_hash()
    h.update(comp)
    enc, _ = _chunk_cipher_funcs(suite, bytes(p.key_len))
    out = bytearray(len(comp) + 16 * (len(comp) // CHUNK + 1))
    mv, o, sizes = memoryview(out), 0, []
    for i in range(0, len(comp), CHUNK):
        pt = memoryview(comp)[i:i + CHUNK]
        enc(i.to_bytes(12, "big"), pt, mv[o:])
        o += len(pt) + 16
        sizes.append(len(pt))
    ring.signer.sign(h.digest())
    return bytes(out[:o]), sizes


def limit_open(suite: Suite, sealed: bytes, sizes: list[int]) -> int:
    p = get_provider(suite)
    _, dec = _chunk_cipher_funcs(suite, bytes(p.key_len))
    h = p.new_hash()
    bufs = (memoryview(bytearray(CHUNK + 16)), memoryview(bytearray(CHUNK + 16)))
    src = io.BytesIO(sealed)
    ct = memoryview(bytearray(CHUNK + 16))

    class Src:
        i = 0

        def read(self, n: int) -> Any:
            if self.i >= len(sizes):
                return b""
            size = sizes[self.i]
            src.readinto(ct[:size + 16])
            out = bufs[self.i & 1]
            dec((self.i * CHUNK).to_bytes(12, "big"), ct[:size + 16], out)
            h.update(out[:size])
            self.i += 1
            return out[:size]

    r = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(Src(), read_size=CHUNK,
                                                                            read_across_frames=True)
    buf, total = bytearray(CHUNK), 0
    while n := r.readinto(buf):
        total += n
    h.digest()
    return total


# --- the envelope ----------------------------------------------------------------------------------

def env_seal(ring: KeyRing, payload_stream: IO[bytes], dst: IO[bytes], spool: IO[bytes]) -> Any:
    info = compress_payload(payload_stream, spool, ring.suite, 3)
    spool.seek(0)
    return seal(dst, spool, info, suite=ring.suite, signer=ring.signer, recipient_id=ring.agent_id,
                recipient=ring.agent.public(), dataset_id="bench.students", batch_seq=1, prev_hh=ZERO_HH,
                kind="changes", schema_version=1, schema_hash=bytes(32), row_count=0,
                created_at_ms=int(time.time() * 1000), chunk_size=CHUNK)


def env_open(ring: KeyRing, src: IO[bytes], two_pass: bool) -> int:
    h = read_header(src, trusted=[ring.signer.public()], allowed_suites=[ring.suite])
    check_context(h, recipient_id=ring.agent_id, recipient_keys=[ring.agent], dataset_id="bench.students",
                  now_ms=h.created_at_ms)
    if two_pass:
        verify_stream(src, h, [ring.agent])
        src.seek(0)
    ps = open_payload(src, h, [ring.agent])
    buf, total = bytearray(CHUNK), 0
    while n := ps.readinto(buf):
        total += n
    ps.finish()
    return total


def throughput(suite: Suite, block: bytes, size: int) -> dict[str, Any]:
    ring = KeyRing.generate(suite)
    payload = (block * (size // len(block) + 1))[:size]
    sealed, sizes = limit_seal(suite, payload, ring)
    env = io.BytesIO()
    env_seal(ring, io.BytesIO(payload), env, io.BytesIO())
    env_bytes = env.getvalue()
    assert limit_open(suite, sealed, sizes) == size == env_open(ring, io.BytesIO(env_bytes), False)
    r: dict[str, Any] = {"suite": suite.label, "size": size, "wire": len(env_bytes)}
    r["limit_open"] = best(lambda: limit_open(suite, sealed, sizes))
    r["env_open"] = best(lambda: env_open(ring, io.BytesIO(env_bytes), False))
    r["env_open2"] = best(lambda: env_open(ring, io.BytesIO(env_bytes), True))
    r["limit_seal"] = best(lambda: limit_seal(suite, payload, ring), 2)
    r["env_seal"] = best(lambda: env_seal(ring, io.BytesIO(payload), io.BytesIO(), io.BytesIO()), 2)
    tiny = b'{"format":"edx-csv/1"}\nI,"1"\n'
    tenv = io.BytesIO()
    env_seal(ring, io.BytesIO(tiny), tenv, io.BytesIO())
    tb = tenv.getvalue()
    reps = 200 if suite == Suite.INTL1 else 20
    t0 = time.perf_counter()
    for _ in range(reps):
        env_open(ring, io.BytesIO(tb), True)
    r["fixed_open_ms"] = (time.perf_counter() - t0) / reps * 1000
    t0 = time.perf_counter()
    for _ in range(reps):
        env_seal(ring, io.BytesIO(tiny), io.BytesIO(), io.BytesIO())
    r["fixed_seal_ms"] = (time.perf_counter() - t0) / reps * 1000
    return r


# --- peak RSS in a fresh process -------------------------------------------------------------------

def rss_child(mode: str, path: str, suite_label: str, keys_path: str) -> None:
    """Child process: open (or refuse) the envelope at ``path``; print JSON with ru_maxrss."""
    from agent.envelope import AgentKeys, EnvelopeError, SignerKey

    suite = Suite.parse(suite_label)
    kd = json.loads(Path(keys_path).read_text())
    ring = KeyRing(suite, SignerKey.from_dict(kd["signer"]), AgentKeys.from_dict(kd["agent"]), "bench-agent")
    result: dict[str, Any] = {}
    t0 = time.perf_counter()
    if mode == "baseline":
        pass
    else:
        with open(path, "rb") as f:
            try:
                result["bytes"] = env_open(ring, f, True)
                result["outcome"] = "opened"
            except EnvelopeError as e:
                result["outcome"] = e.code
    result["seconds"] = time.perf_counter() - t0
    result["maxrss_kib"] = vm_hwm_kib()   # bench/_proc.py says why not getrusage
    print(json.dumps(result))


def measure_rss(suite: Suite, block: bytes, sizes: list[int], tmp: Path) -> list[dict[str, Any]]:
    ring = KeyRing.generate(suite)
    ring.agent_id = "bench-agent"
    keys = tmp / f"keys-{suite.label}.json"
    keys.write_text(json.dumps({"signer": ring.signer.to_dict(), "agent": ring.agent.to_dict()}))
    rows = []

    def child(mode: str, path: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, __file__, "--rss-child", mode, path, suite.label, str(keys)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows.append({"batch": "interpreter + imports", **child("baseline", "-")})
    for size in sizes:
        path = tmp / f"{suite.label}-{size}.edxenv"
        with open(path, "wb") as dst, tempfile.TemporaryFile(dir=tmp) as spool:
            env_seal(ring, Tiled(block, size), dst, spool)
        rows.append({"batch": f"{size // MiB} MiB ({path.stat().st_size / MiB:.0f} MiB wire)", **child("open", str(path))})
        path.unlink()
    bomb = zstd_frame(bytes(1 << 30), content_size=False)  # 1 GiB of zeros in ~40 KiB, declared as 1 MiB
    path = tmp / f"{suite.label}-bomb.edxenv"
    path.write_bytes(craft(ring, bomb, uncompressed_len=MiB, chunk_size=CHUNK,
                           overrides={"dataset_id": "bench.students", "created_at_ms": int(time.time() * 1000)}))
    rows.append({"batch": "bomb: 1 GiB of zeros declared as 1 MiB", **child("open", str(path))})
    path.unlink()
    return rows


# --- report ----------------------------------------------------------------------------------------

def mbps(nbytes: int, secs: float) -> float:
    return nbytes / secs / 1e6


def render(tp: list[dict[str, Any]], rss: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    import cryptography
    import gmssl  # noqa: F401

    cpu = cpu_model("unknown CPU")
    load = f"load average {args.load_before:.1f} before, {os.getloadavg()[0]:.1f} after the run"
    lines = [BEGIN, "## Envelope", "",
             f"Measured {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} on {platform.node()} ({load}; figures "
             f"on a shared VM vary by ±20 % or more, the ratios are measured side by side): {cpu}, "
             f"{os.cpu_count()} vCPU, Python {platform.python_version()}, cryptography {cryptography.__version__}, "
             f"zstandard {zstandard.__version__}, gmssl 3.2.x (SM2 only). One core, best of 3 (seal: of 2), "
             "synthetic 学籍 rows in edx-csv/1, zstd-3, 1 MiB chunks. MB = 10^6 bytes of *uncompressed* payload "
             "unless marked wire. Reproduce: `python bench/bench_envelope.py` (`--big`/`--huge` for 1/4 GiB RSS).",
             "", "| Suite | Batch | Limit open | Envelope open (1 pass) | Ratio | Agent open (2 passes) | "
             "Limit seal | Envelope seal | Ratio | Fixed open | Fixed seal |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in tp:
        s = r["size"]
        lo, eo, eo2 = mbps(s, r["limit_open"]), mbps(s, r["env_open"]), mbps(s, r["env_open2"])
        ls, es = mbps(s, r["limit_seal"]), mbps(s, r["env_seal"])
        lines.append(f"| {r['suite']} | {s // MiB} MiB ({r['wire'] / MiB:.1f} MiB wire) | {lo:.0f} MB/s | {eo:.0f} MB/s "
                     f"({mbps(r['wire'], r['env_open']):.0f} wire) | **{eo / lo:.2f}×** | {eo2:.0f} MB/s | {ls:.0f} MB/s | "
                     f"{es:.0f} MB/s | **{es / ls:.2f}×** | {r['fixed_open_ms']:.1f} ms | {r['fixed_seal_ms']:.1f} ms |")
    lines += ["", "Limit = the same primitives chained by hand over the same bytes (chunk AEAD with preallocated "
              "buffers, content hash, zstd stream); the envelope adds header parsing, signature, key "
              "unwrap/wrap, HKDF, nonce bookkeeping and its checks. \"Agent open\" is what the agent runs: "
              "verify_stream (decrypt + digest, no output), then open_payload. Fixed = a one-row batch, "
              "whole sequence, including one SM2 verify + one SM2 decrypt (GM-1 open) or SM2 sign + encrypt "
              "(GM-1 seal) in pure Python.", "",
              "Peak RSS (VmHWM) of a fresh process that runs read_header, check_context, verify_stream and "
              "open_payload to EOF on a file:", "", "| Suite | Batch | Outcome | Seconds | Peak RSS |",
              "|---|---|---|---:|---:|"]
    for suite, rows in rss.items():
        for row in rows:
            lines.append(f"| {suite} | {row['batch']} | {row.get('outcome', '-')} | {row['seconds']:.2f} | "
                         f"{row['maxrss_kib'] / 1024:.1f} MiB |")
    lines += ["", "Memory is flat in the batch size: two chunk buffers for plaintext, one for ciphertext, the "
              "zstd window (capped at 8 MiB) and the interpreter. The bomb is refused after one byte past its "
              "declared length, so it costs what a 1 MiB batch costs.", END]
    return "\n".join(lines)


def write_section(text: str) -> Path:
    doc = ROOT / "docs" / "performance.md"
    if doc.exists():
        cur = doc.read_text(encoding="utf-8")
        if BEGIN in cur and END in cur:
            new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: text, cur, flags=re.DOTALL)
        else:
            new = cur.rstrip("\n") + "\n\n" + text + "\n"
    else:
        doc.parent.mkdir(parents=True, exist_ok=True)
        new = "# Performance\n\nMeasured figures of each part; each section is written by its benchmark.\n\n" + text + "\n"
    doc.write_text(new, encoding="utf-8")
    return doc


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        rss_child(*sys.argv[2:6])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64, help="batch size of the throughput runs")
    ap.add_argument("--big", action="store_true", help="RSS also at 1 GiB")
    ap.add_argument("--huge", action="store_true", help="RSS also at 1 GiB and 4 GiB")
    ap.add_argument("--suite", choices=["INTL-1", "GM-1", "both"], default="both")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = ap.parse_args()
    args.load_before = os.getloadavg()[0]  # other work on the machine skews absolute figures: record it
    suites = [Suite.INTL1, Suite.GM1] if args.suite == "both" else [Suite.parse(args.suite)]
    block = base_block()
    tp = []
    for s in suites:
        print(f"throughput {s.label} ...", flush=True)
        tp.append(throughput(s, block, args.size_mib * MiB))
    sizes = [16 * MiB, 64 * MiB, 256 * MiB] + ([1 << 30] if args.big or args.huge else []) + \
        ([4 << 30] if args.huge else [])
    rss = {}
    with tempfile.TemporaryDirectory(prefix="edx-bench-") as tmp:
        for s in suites:
            print(f"peak RSS {s.label} ...", flush=True)
            rss[s.label] = measure_rss(s, block, sizes, Path(tmp))
    text = render(tp, rss, args)
    print(text)
    if not args.no_write:
        print(f"updated {write_section(text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
