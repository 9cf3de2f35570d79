"""The daemon's small parts on their own: sd_notify on real sockets, listen addresses, intervals, backoff, freshness."""

from __future__ import annotations

import os
import socket
import time

import pytest

from agent.config import AgentConfig
from agent.daemon.datasets import Runner, resolve_interval
from agent.daemon.health import HealthAddressRefused, parse_listen
from agent.daemon.readiness import freshness
from agent.daemon.sdnotify import Notifier


def test_notify_sends_datagrams_to_a_path_and_to_the_abstract_namespace(tmp_path):
    for address, bind in ((str(tmp_path / "n.sock"), str(tmp_path / "n.sock")),
                          (f"@edx-test-{os.getpid()}", f"\0edx-test-{os.getpid()}")):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(bind)
        s.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": address})
        assert n.ready("starting\nsecond line") and n.watchdog()
        first = s.recv(4096).decode().split("\n")
        assert first[0] == "READY=1" and first[1] == "STATUS=starting second line"
        assert first[2] == f"MAINPID={os.getpid()}"
        assert s.recv(4096) == b"WATCHDOG=1"
        n.close()
        s.close()


def test_notify_is_silent_outside_systemd_and_respects_watchdog_pid():
    n = Notifier({})
    assert not n.enabled and n.notify("READY=1") is False and n.watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_interval == 1.5
    # a child that inherited its parent's variables must not ping for it
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_interval is None


def test_a_vanished_manager_is_not_fatal(tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.status("x") is False


@pytest.mark.parametrize("listen,ok", [("127.0.0.1:9464", True), ("[::1]:9464", True), ("localhost:1", True),
                                       ("0.0.0.0:9464", False), ("10.1.2.3:9464", False), ("[::]:9464", False)])
def test_health_listens_on_loopback_unless_allowed(listen, ok):
    if ok:
        assert parse_listen(listen)[1] == int(listen.rsplit(":", 1)[1])
    else:
        with pytest.raises(HealthAddressRefused) as e:
            parse_listen(listen)
        assert e.value.exit_code == 78
        assert parse_listen(listen, allow_remote=True)


def cfg(**sections):
    return AgentConfig.model_validate({"database": {"url": "sqlite:///x.db"}, **sections})


def test_interval_comes_from_the_dataset_then_sync_then_the_catalog():
    grant = {"dataset": "student", "update_interval_s": 60}
    assert resolve_interval(cfg(), "student", grant) == 60            # catalog, under the default 5 min
    assert resolve_interval(cfg(), "student", {"update_interval_s": 86400}) == 300   # a daily set: still 5 min
    assert resolve_interval(cfg(), "student", {}) == 300
    assert resolve_interval(cfg(sync={"interval": "2m"}), "student", grant) == 120
    assert resolve_interval(cfg(sync={"interval": "2m"}, datasets={"student": {"interval": "15s"}}),
                            "student", grant) == 15


def test_backoff_is_capped_and_starts_small():
    r = Runner("student", {}, interval=300)
    p = r.policy()
    assert p.delay(0, rand=lambda: 1.0) == 2.0
    assert max(p.delay(n, rand=lambda: 1.0) for n in range(40)) == 300.0   # hours down: once per 5 min
    assert p.delay(3, retry_after=120) == 120                             # the hub's Retry-After wins
    fast = Runner("student", {}, interval=1).policy()
    assert fast.delay(0, rand=lambda: 1.0) == 1.0


def test_a_long_retry_after_is_not_slept_through_inside_a_request():
    from agent.client import RetryPolicy
    from agent.errors import HubBusy

    def busy(after: float):
        calls: list[int] = []

        def fn():
            calls.append(1)
            if len(calls) == 1:
                e = HubBusy("HTTP 503 hub-busy")
                e.retry_after = after
                raise e
            return "ok"
        return fn, calls

    slept: list[float] = []
    fn, calls = busy(5)
    assert RetryPolicy().run(fn, sleep=slept.append) == "ok" and slept == [5] and len(calls) == 2
    fn, calls = busy(120)   # the daemon reschedules the dataset in 120 s instead of holding its worker
    with pytest.raises(HubBusy) as e:
        RetryPolicy().run(fn, sleep=slept.append)
    assert e.value.retry_after == 120 and len(calls) == 1 and slept == [5]
    r = Runner("student", {}, interval=300)
    assert r.policy().delay(r.attempts, e.value.retry_after) == 120


def test_freshness_against_the_declared_interval_plus_grace():
    now = time.time()
    assert freshness(None, 3600, 600, now) == "unknown"
    assert freshness(now - 3000, 3600, 600, now) == "fresh"
    assert freshness(now - 4300, 3600, 600, now) == "stale"
    assert freshness(now - 10 ** 6, None, 600, now) == "fresh"    # nothing declared: never stale


def test_long_poll_turns_off_only_when_the_hub_has_no_endpoint():
    import threading
    from types import SimpleNamespace

    from agent.daemon.longpoll import LongPoll
    from agent.errors import HubUnreachable, NotFound

    answers = [HubUnreachable("reset"), {"student": 4}, NotFound("HTTP 404")]
    triggered: list[str] = []
    asked: list[int] = []

    class Client:
        def wait_batches(self, cursors, wait):
            asked.append(cursors["student"])
            a = answers.pop(0)
            if isinstance(a, Exception):
                raise a
            return a

    stopping = threading.Event()
    svc = SimpleNamespace(
        stopping=SimpleNamespace(is_set=stopping.is_set, wait=lambda s: None),
        cfg=SimpleNamespace(sync=SimpleNamespace(long_poll_wait=1)),
        runners={"student": SimpleNamespace(state="ok", running_since=None)},
        ctx=SimpleNamespace(state=SimpleNamespace(status=lambda: {"datasets": {"student": {"last_seq": 3}}})),
        scheduler=SimpleNamespace(modify_job=lambda job, next_run_time: triggered.append(job)))
    lp = LongPoll(svc)
    lp._client = Client()
    lp.client = lambda: lp._client or Client()   # a fresh client after an error, as in the service
    lp.loop()   # returns once the hub says 404
    assert triggered == ["sync:student"] and answers == [] and lp.seen == {"student": 4}
    assert asked == [3, 3, 4]   # after handing seq 4 to the sync job it waits for what comes after
