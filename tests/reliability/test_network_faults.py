"""Network faults between the agent and the hub, through the asyncio fault proxy (faultproxy.py).

Every run of the real agent is bounded by a hang detector (harness.AGENT_TIMEOUT); inside it the agent
must give up on its own (connect and read timeouts, capped retries) with a coded, transient error, keep
what it downloaded (a cut transfer resumes with HTTP Range), never apply a corrupt batch, and converge
once the network is back. The daemon test cycles through every fault while the platform publishes and
requires convergence with no operator action.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from .faultproxy import FaultProxy
from .harness import assert_clean_exit, wait_for

FAST = {"hub": {"connect_timeout": 2, "read_timeout": 2}}


@pytest.fixture
def net(make_rig):
    with FaultProxy(0) as proxy:
        rig = make_rig("sqlite", hub_proxy=proxy, base_rows=200, extra_config=FAST)
        rig.publish("snapshot")
        rig.recover()
        yield rig, proxy


def failed_cleanly(run, code: str = "hub-unreachable") -> None:
    assert_clean_exit(run)
    assert run.returncode in (69, 75), run.text
    assert code in run.stdout + run.stderr, run.text


def recover(rig, proxy) -> None:
    proxy.reset_settings()
    rig.recover()
    rig.check(complete=True)


@pytest.mark.parametrize("mode", ["reset", "blackhole", pytest.param("garbage", marks=pytest.mark.slow)])
def test_refused_silent_or_wrong_peer(net, mode):
    rig, proxy = net
    rig.publish("changes")
    proxy.mode = mode
    failed_cleanly(rig.sync())
    rig.check()
    recover(rig, proxy)


def test_tls_handshake_failure(net):
    """The "server" answers a TLS ClientHello with garbage: a typed TLS error, no hang, no batch."""
    rig, proxy = net
    rig.publish("changes")
    proxy.mode = "garbage"
    proxy.garbage = b"SSH-2.0-OpenSSH_9.2\r\n" + bytes(range(256))
    rig.write_config(hub={"url": f"https://127.0.0.1:{proxy.port}"})
    run = rig.sync()
    failed_cleanly(run)
    assert "TLS" in run.stdout + run.stderr or "SSL" in run.stdout + run.stderr, run.text
    rig.write_config()
    recover(rig, proxy)


def test_stall_longer_than_read_timeout_then_resume(net):
    rig, proxy = net
    rig.publish("snapshot", rows=20000)
    sizes = envelope_sizes(rig)
    assert 300_000 < sizes[-1] < 1 << 20, sizes   # below 1 MiB: a 1 MiB read buffer used to lose it all
    proxy.stall_after = 4000 + sizes[-1] // 2
    failed_cleanly(rig.sync())
    rig.check()
    part = list(rig.spool_path.glob("*/*.edx.part"))
    assert part and part[0].stat().st_size > 0, "the stalled download was not kept for resuming"
    recover(rig, proxy)


@pytest.mark.slow
def test_body_cut_at_every_tenth(net):
    """A transfer cut at 10 %, 20 % … 90 %: refused cleanly, resumed, applied once."""
    rig, proxy = net
    cuts = 0
    for tenth in range(1, 10):
        rig.publish("snapshot", rows=2000)
        total = envelope_sizes(rig)[-1]
        proxy.downstream_bytes.clear()
        proxy.cut_after = 3000 + total * tenth // 10   # grants and listing come first on the connection
        run = rig.sync()
        proxy.cut_after = None
        if run.returncode == 0:  # the cut landed after the body (keep-alive accounting): still checked
            rig.check(complete=True)
            continue
        cuts += 1
        failed_cleanly(run)
        rig.check()
        recover(rig, proxy)
    assert cuts >= 7, f"only {cuts} of 9 transfers were cut"


@pytest.mark.slow
def test_slow_drip_completes(net):
    rig, proxy = net
    rig.publish("changes", rows=300)
    proxy.drip = (1024, 0.005)
    run = rig.sync()
    assert run.returncode == 0, run.text
    rig.check(complete=True)


def test_corrupt_byte_in_transit_is_never_applied(net):
    rig, proxy = net
    rig.publish("snapshot", rows=2000)
    before = rig.target.rows("student")
    proxy.corrupt_at = 3000 + envelope_sizes(rig)[-1] // 2
    run = rig.sync()
    assert_clean_exit(run)
    assert run.returncode != 0 and "spool-digest-mismatch" in run.stdout + run.stderr, run.text
    assert rig.target.rows("student") == before
    rig.check()
    recover(rig, proxy)


@pytest.mark.parametrize("status", [pytest.param(500, marks=pytest.mark.slow),
                                    pytest.param(502, marks=pytest.mark.slow), 503, 429])
def test_http_errors_are_retried_honouring_retry_after(net, status):
    rig, proxy = net
    rig.publish("changes")
    proxy.http = (status, 1.0 if status in (429, 503) else None, 2)
    run = rig.sync()
    assert run.returncode == 0, run.text   # two refusals fit in the client's retry budget
    rig.check(complete=True)
    assert len(proxy.http_log) == 2
    if status in (429, 503):
        # Retry-After honoured: the retry came no sooner than asked (a lower bound, load cannot break it)
        t_first, _ = proxy.http_log[0]
        t_second, _ = proxy.http_log[1]
        assert t_second - t_first >= 0.95, proxy.http_log


def test_http_errors_beyond_the_retry_budget(net):
    rig, proxy = net
    rig.publish("changes")
    proxy.http = (503, 0.2, 1000)
    run = rig.sync()
    failed_cleanly(run, "hub-busy")
    assert len(proxy.http_log) <= 8, f"retries not capped: {len(proxy.http_log)} requests"
    recover(rig, proxy)


def test_daemon_converges_through_every_fault(make_rig, rng):
    """The daemon while the network cycles through every fault: no loss, no hang, no operator."""
    with FaultProxy(0) as proxy:
        rig = make_rig("sqlite", hub_proxy=proxy, base_rows=300,
                       extra_config={**FAST, "sync": {"interval": "1s", "jitter": "0s"},
                                     "heartbeat": {"interval": "2s"}, "health": {"enabled": False}})
        rig.publish("snapshot")
        faults = [("reset", {}), ("blackhole", {}), ("stall", {"stall_after": 2500}),
                  ("cut", {"cut_after": 5000}), ("drip", {"drip": (512, 0.01)}), ("corrupt", {"corrupt_at": 3500}),
                  ("http", {"http": (503, 0.5, 3)}), ("http", {"http": (500, None, 2)}),
                  ("http", {"http": (429, 1.0, 2)})]
        proc = rig.spawn("run", "--stop-timeout", "5s")
        try:
            for round_ in range(2):
                for name, settings in rng.sample(faults, len(faults)):
                    rig.publish(rng.choice(["changes", "changes", "snapshot"]), rows=600)
                    proxy.reset_settings()
                    if name in ("reset", "blackhole"):
                        proxy.mode = name
                    for k, v in settings.items():
                        setattr(proxy, k, v)
                    time.sleep(2.5)
                    assert proc.poll() is None, proc.communicate()[1][-3000:]
                    proxy.reset_settings()
                    proxy.sever()   # drop what the fault left hanging (a stalled or black-holed request)
            try:
                wait_for(lambda: rig.target.checkpoint("student")[0] == rig.streams["student"].seq, 180,
                         "the daemon to converge after the network came back", poll=0.5)
            except AssertionError as e:
                raise AssertionError(f"{e}; status: {json.dumps(rig.status()['datasets'].get('student'))}") from None
            time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        rig.check(complete=True)
        st = rig.status()["datasets"]["student"]
        assert st["state"] == "ok", st
        print(f"[daemon-network] {proxy.faults} faults, {proxy.connections} connections, "
              f"{rig.streams['student'].seq} batches")


def envelope_sizes(rig) -> list[int]:
    with rig.hubctx.engine.connect() as c:
        import sqlalchemy as sa

        return [int(r[0]) for r in c.execute(sa.text(
            "SELECT size FROM hub_sealed WHERE agent_id = :a ORDER BY seq"), {"a": rig.agent_id})]


def test_answer_cut_inside_a_json_body_is_transient(net):
    """Regression: a reset in the middle of a JSON answer (ChunkedEncodingError) was platform-error,
    terminal, and stopped the dataset in the daemon; it is a network fault like any other."""
    rig, proxy = net
    rig.publish("changes")
    codes = set()
    for cut in range(150, 700, 50):
        proxy.cut_after = cut
        run = rig.sync()
        assert_clean_exit(run)
        if run.returncode == 0:
            continue
        text = run.stdout + run.stderr
        assert "platform-error" not in text, f"cut at {cut}: {run.text}"
        codes.add("hub-unreachable" if "hub-unreachable" in text else text)
    assert codes == {"hub-unreachable"}, codes
    recover(rig, proxy)
