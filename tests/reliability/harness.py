"""The reliability rig: a real hub process, real agent processes, a real target database, and the oracle.

The oracle is computed independently of the agent, from the JSON Lines the platform published (like
tests/e2e/conftest.py ``expected_state``): the state after batch ``k`` is the last snapshot at or before
``k`` with every later change applied, last operation per key winning. After any fault the target must
hold exactly the state at its checkpoint (Flink's "exact prefix up to the last checkpoint"), its lineage
must name each applied batch once, and every lineage row must have been acknowledged to the hub once.

A trigger on ``edx_lineage`` copies every committed lineage insert into ``t_apply_log``. The agent cannot
hide a second apply of the same batch from it (``write_lineage`` replaces its own row), so
"no batch applied twice" is checked on what the database itself saw committed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa

from agent import sample
from agent.localhub import LocalHub
from agent.payload import Checksum, canonical_from_db, encode_value
from agent.schema import Schema
from tests.conftest import fresh_mysql_database, fresh_pg_database

SCHEMA = Schema.from_dict(sample.SCHEMA)
PK = "student_id"
BACKENDS = ("sqlite", "mysql", "postgresql")
AGENT_TIMEOUT = 180  # seconds: a run that takes longer than this is a hang, and fails the test


def seed_from_env(name: str) -> int:
    """The test's seed: EDX_TEST_SEED if set (replay), else a fresh one; always printed."""
    raw = os.environ.get("EDX_TEST_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(1 << 31)
    print(f"[{name}] seed={seed} (replay: EDX_TEST_SEED={seed})")
    return seed


# --- target databases -------------------------------------------------------------------------------

def fresh_database(backend: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'target.db'}", lambda: None
    if backend == "mysql":
        return fresh_mysql_database()
    if backend == "postgresql":
        return fresh_pg_database("edx_r_")
    raise ValueError(backend)


def via_port(url: str, port: int) -> str:
    """The same database URL through a proxy on 127.0.0.1:``port``."""
    return sa.engine.make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def server_port(url: str) -> int:
    u = sa.engine.make_url(url)
    return u.port or (3306 if u.get_backend_name() in ("mysql", "mariadb") else 5432)


# --- the published stream and the oracle ------------------------------------------------------------

@dataclass
class Published:
    seq: int
    kind: str
    path: Path
    rows: int


class Stream:
    """Batches of one dataset published to the hub, with the expected table after each of them."""

    KEEP_STATES = 200

    def __init__(self, dataset: str, workdir: Path, rng: random.Random, base_rows: int = 60) -> None:
        self.dataset = dataset
        self.dir = workdir / f"published-{dataset}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rng = rng
        self.base_rows = base_rows
        self.batches: list[Published] = []
        self._states: dict[int, dict[str, dict[str, Any]]] = {0: {}}
        self._next_id = 0
        self._clock = dt.datetime(2026, 9, 1, 8, 0, 0)

    @property
    def seq(self) -> int:
        return len(self.batches)

    def _student(self, i: int) -> dict[str, Any]:
        self._clock += dt.timedelta(seconds=1, microseconds=self.rng.randrange(1_000_000))
        return sample.student(self.rng, i, self._clock)

    def make(self, kind: str, rows: int | None = None) -> Published:
        """Write the next batch's JSON Lines (not yet published); the oracle advances with it."""
        cur = self._states[self.seq]
        out: list[dict[str, Any]] = []
        if kind == "snapshot":
            n = rows if rows is not None else self.base_rows
            keep = list(cur.values())
            self.rng.shuffle(keep)
            # a new snapshot keeps most keys (changed), drops some, adds new ones
            for r in keep[: int(len(keep) * 0.8)]:
                out.append(self._student(int(r[PK][1:]) - 110101000000))
            while len(out) < n:
                out.append(self._student(self._take_id()))
            out = out[:n]
            state = {r[PK]: r for r in out}
        else:
            n = rows if rows is not None else max(4, self.base_rows // 4)
            state = dict(cur)
            for _ in range(n):
                r = self.rng.random()
                if r < 0.6 and state:
                    row = self._student(int(self.rng.choice(sorted(state))[1:]) - 110101000000)
                    row["_op"] = "U"
                elif r < 0.85 or not state:
                    row = self._student(self._take_id())
                    row["_op"] = "I"
                else:
                    row = {PK: self.rng.choice(sorted(state)), "_op": "D"}
                out.append(row)
                if row["_op"] == "D":
                    state.pop(row[PK], None)
                else:
                    state[row[PK]] = {k: v for k, v in row.items() if k != "_op"}
        seq = self.seq + 1
        path = self.dir / f"{seq:05d}.{kind}.jsonl"
        sample.write_jsonl(path, iter(out))
        b = Published(seq, kind, path, len(out))
        self.batches.append(b)
        self._states[seq] = state
        for old in [k for k in self._states if k < seq - self.KEEP_STATES]:
            del self._states[old]  # long runs: the checkpoint never goes back this far
        return b

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id + 50_000

    def expected(self, seq: int) -> dict[str, list[str | None]]:
        """Canonical rows of the table after batch ``seq`` (0: empty)."""
        assert seq in self._states, f"state after #{seq} no longer kept (only the last {self.KEEP_STATES})"
        return {k: [encode_value(c.type, r.get(c.name)) for c in SCHEMA.columns]
                for k, r in self._states[seq].items()}

    def expected_checksum(self, seq: int) -> Checksum:
        ck = Checksum()
        for fields in self.expected(seq).values():
            ck.add(fields)
        return ck


# --- reading the target -----------------------------------------------------------------------------

class Target:
    """Read-only views of the target database used by the oracle (a separate engine, no pooling)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def close(self) -> None:
        self.engine.dispose()

    def _has(self, c: sa.Connection, table: str) -> bool:
        return sa.inspect(c).has_table(table)

    def rows(self, table: str) -> dict[str, list[str | None]]:
        with self.engine.connect() as c:
            if not self._has(c, table):
                return {}
            res = c.execute(sa.text(f"SELECT {', '.join(SCHEMA.names)} FROM {table}"))
            out: dict[str, list[str | None]] = {}
            for r in res:
                assert r[0] not in out, f"duplicate primary key {r[0]} in {table}"
                out[r[0]] = [canonical_from_db(col.type, v) for col, v in zip(SCHEMA.columns, r)]
            return out

    def checkpoint(self, dataset: str) -> tuple[int, str | None]:
        with self.engine.connect() as c:
            if not self._has(c, "edx_checkpoint"):
                return 0, None
            row = c.execute(sa.text("SELECT seq, batch_digest FROM edx_checkpoint WHERE dataset = :d"),
                            {"d": dataset}).first()
            return (int(row[0]), row[1]) if row else (0, None)

    def lineage(self, dataset: str) -> dict[int, str]:
        with self.engine.connect() as c:
            if not self._has(c, "edx_lineage"):
                return {}
            return {int(s): d for s, d in c.execute(sa.text(
                "SELECT seq, batch_digest FROM edx_lineage WHERE dataset = :d"), {"d": dataset})}

    def apply_log(self, dataset: str) -> list[tuple[int, str]]:
        with self.engine.connect() as c:
            if not self._has(c, "t_apply_log"):
                return []
            return [(int(s), d) for s, d in c.execute(sa.text(
                "SELECT seq, digest FROM t_apply_log WHERE dataset = :d ORDER BY id"), {"d": dataset})]

    def helper_tables(self) -> list[str]:
        """Staging/shadow tables left behind (edx_stg_*, edx_new_*, edx_old_*)."""
        with self.engine.connect() as c:
            return sorted(t for t in sa.inspect(c).get_table_names()
                          if t.startswith(("edx_stg_", "edx_new_", "edx_old_")))

    def install_apply_log(self) -> None:
        """Meta tables (as the agent creates them) plus the trigger that logs every committed lineage insert."""
        import connectors

        conn = connectors.connect(self.url)
        try:
            conn.ensure_meta_tables()
        finally:
            conn.close()
        name = self.engine.dialect.name
        with self.engine.begin() as c:
            if name == "sqlite":
                c.exec_driver_sql("CREATE TABLE t_apply_log (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                                  "dataset TEXT, seq BIGINT, digest TEXT)")
                c.exec_driver_sql("CREATE TRIGGER t_apply_log_trg AFTER INSERT ON edx_lineage BEGIN "
                                  "INSERT INTO t_apply_log (dataset, seq, digest) "
                                  "VALUES (NEW.dataset, NEW.seq, NEW.batch_digest); END")
            elif name in ("mysql", "mariadb"):
                c.exec_driver_sql("CREATE TABLE t_apply_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                                  "dataset VARCHAR(200), seq BIGINT, digest VARCHAR(128)) ENGINE=InnoDB")
                c.exec_driver_sql("CREATE TRIGGER t_apply_log_trg AFTER INSERT ON edx_lineage FOR EACH ROW "
                                  "INSERT INTO t_apply_log (dataset, seq, digest) "
                                  "VALUES (NEW.dataset, NEW.seq, NEW.batch_digest)")
            else:
                c.exec_driver_sql("CREATE TABLE t_apply_log (id BIGSERIAL PRIMARY KEY, dataset TEXT, "
                                  "seq BIGINT, digest TEXT)")
                c.exec_driver_sql("CREATE FUNCTION t_apply_log_fn() RETURNS trigger AS $$ BEGIN "
                                  "INSERT INTO t_apply_log (dataset, seq, digest) "
                                  "VALUES (NEW.dataset, NEW.seq, NEW.batch_digest); RETURN NEW; END $$ "
                                  "LANGUAGE plpgsql")
                c.exec_driver_sql("CREATE TRIGGER t_apply_log_trg AFTER INSERT ON edx_lineage "
                                  "FOR EACH ROW EXECUTE FUNCTION t_apply_log_fn()")

    def checksum(self, table: str) -> Checksum:
        import connectors

        conn = connectors.connect(self.url)
        try:
            with self.engine.connect() as c:
                if not self._has(c, table):
                    return Checksum()
            return conn.table_checksum(table, SCHEMA)
        finally:
            conn.close()


# --- the rig ----------------------------------------------------------------------------------------

@dataclass
class Run:
    """One finished agent process."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool = False

    @property
    def text(self) -> str:
        return f"exit {self.returncode}\nstdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}"


@dataclass
class Rig:
    """Hub + enrolled agent + target database for one backend; publishes and checks the oracle."""

    backend: str
    workdir: Path
    rng: random.Random
    datasets: list[str] = field(default_factory=lambda: ["student"])
    suite: str = "intl"
    db_url_for_agent: str | None = None   # e.g. through a TCP proxy
    base_rows: int = 60
    spool_dir: Path | None = None
    state_dir: Path | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    db_proxy: Any = None                  # a FaultProxy in front of the database server
    hub_proxy: Any = None                 # a FaultProxy in front of the hub

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.hub = LocalHub(self.workdir / "hub")
        self.agent_dir = self.workdir / "agent"
        self.agent_dir.mkdir(exist_ok=True)
        self.config = self.agent_dir / "agent.toml"
        self.faults_dir = self.workdir / "faults"
        self.faults_dir.mkdir(exist_ok=True)
        self.streams = {d: Stream(d, self.workdir, random.Random(self.rng.random()), self.base_rows)
                        for d in self.datasets}
        self.db_url, self._drop = fresh_database(self.backend, self.workdir)
        self.target = Target(self.db_url)
        if self.db_proxy is not None:
            self.db_proxy.upstream = ("127.0.0.1", server_port(self.db_url))
            url = sa.engine.make_url(via_port(self.db_url, self.db_proxy.port))
            if url.get_backend_name() == "postgresql":  # plain wire protocol, so the proxy can read it
                url = url.update_query_dict({"sslmode": "disable"})
            self.db_url_for_agent = url.render_as_string(hide_password=False)
        self._hubctx: Any = None
        self.agent_id = ""
        self.runs: list[Run] = []
        self.faults_injected = 0

    # -- life cycle
    def start(self) -> "Rig":
        self.hub.start()
        if self.hub_proxy is not None:
            self.hub_proxy.upstream = ("127.0.0.1", self.hub.port)
        self.target.install_apply_log()
        self.agent("init", "--database", self.db_url_for_agent or self.db_url, "--hub", self.hub.url,
                   "--suite", self.suite, *(["--state-dir", str(self.state_dir)] if self.state_dir else []),
                   check=True)
        self.write_config()
        from hub import catalog

        with self.hubctx.engine.begin() as c:
            for ds in self.datasets:
                catalog.create_dataset(c, ds, SCHEMA)
        token = self.hub.admin("token", "create", "--unit", "unit-r", "--datasets",
                               ",".join(self.datasets)).stdout.strip()
        self.agent("enrol", "--token", token, check=True)
        self.agent_id = json.loads((self.state_path / "enrolment.json").read_text())["agent_id"]
        return self

    def close(self) -> None:
        self.hub.stop()
        if self._hubctx is not None:
            self._hubctx.engine.dispose()
        self.target.close()
        self._drop()

    def __enter__(self) -> "Rig":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def state_path(self) -> Path:
        return self.state_dir or self.agent_dir / "state"

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.state_path / "spool"

    def write_config(self, **overrides: Any) -> None:
        import tomllib

        import tomli_w

        cfg = tomllib.loads(self.config.read_text())
        cfg["hub"].update(connect_timeout=3, read_timeout=10)
        if self.hub_proxy is not None:
            cfg["hub"]["url"] = f"http://127.0.0.1:{self.hub_proxy.port}"
        cfg["database"]["url"] = self.db_url_for_agent or self.db_url
        if self.state_dir:
            cfg["agent"]["state_dir"] = str(self.state_dir)
        if self.spool_dir:
            cfg["spool"]["dir"] = str(self.spool_dir)
        for section, values in {**self.extra_config, **overrides}.items():
            cfg.setdefault(section, {}).update(values)
        self.config.write_text(tomli_w.dumps(cfg))

    # -- the platform side
    @property
    def hubctx(self) -> Any:
        if self._hubctx is None:
            from hub.context import HubContext

            self._hubctx = HubContext(self.hub.data_dir)
        return self._hubctx

    def publish(self, kind: str, dataset: str | None = None, rows: int | None = None) -> Published:
        """Publish the next batch (in-process through the hub's own publish code, same store)."""
        from hub.publish import publish
        from hub.sources import jsonl_records

        ds = dataset or self.datasets[0]
        st = self.streams[ds]
        b = st.make(kind, rows)
        publish(self.hubctx, ds, lambda enc: jsonl_records(b.path, enc), kind=kind, schema=None,
                source=f"jsonl:{b.path.name}")
        return b

    def hub_acks(self, dataset: str) -> dict[int, str]:
        """seq -> hh of every batch this agent acknowledged (as the hub recorded it)."""
        with self.hubctx.engine.connect() as c:
            return {int(s): h for s, h in c.execute(sa.text(
                "SELECT seq, hh FROM hub_sealed WHERE agent_id = :a AND dataset = :d AND acked_at_ms IS NOT NULL"),
                {"a": self.agent_id, "d": dataset})}

    # -- the agent side
    def agent_cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "agent", "--config", str(self.config), *args]

    def agent_env(self, faults: str = "", extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDX_FAULTS")}
        env.update(LANG="C.UTF-8", EDX_FAULTS_DIR=str(self.faults_dir))
        if faults:
            env["EDX_FAULTS"] = faults
        env.update(extra or {})
        return env

    def agent(self, *args: str, faults: str = "", check: bool = False, env: dict[str, str] | None = None,
              prefix: list[str] | None = None, timeout: float = AGENT_TIMEOUT) -> Run:
        t0 = time.monotonic()
        try:
            res = subprocess.run((prefix or []) + self.agent_cmd(*args), capture_output=True, text=True,
                                 timeout=timeout, cwd=self.agent_dir, env=self.agent_env(faults, env))
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"edx-agent {' '.join(args)} hung for more than {timeout}s "
                                 f"(stdout {e.stdout!r:.2000} stderr {e.stderr!r:.2000})") from None
        run = Run(args, res.returncode, res.stdout, res.stderr, time.monotonic() - t0,
                  killed=res.returncode == -signal.SIGKILL)
        self.runs.append(run)
        if check and res.returncode != 0:
            raise AssertionError(f"edx-agent {' '.join(args)} failed\n{run.text}")
        return run

    def spawn(self, *args: str, faults: str = "", env: dict[str, str] | None = None,
              prefix: list[str] | None = None, log: Path | None = None) -> subprocess.Popen[str]:
        """Start an agent process; ``log``: write its output there (a long run would fill a pipe and block)."""
        out: Any = open(log, "w") if log is not None else subprocess.PIPE  # noqa: SIM115 - closed with the process
        return subprocess.Popen((prefix or []) + self.agent_cmd(*args), stdout=out,
                                stderr=subprocess.STDOUT if log is not None else subprocess.PIPE, text=True,
                                cwd=self.agent_dir, env=self.agent_env(faults, env))

    def sync(self, faults: str = "", **kw: Any) -> Run:
        return self.agent("sync", "--once", faults=faults, **kw)

    def recover(self, attempts: int = 3) -> Run:
        """Run sync until it succeeds (a transient error may need one more pass); fail otherwise."""
        run = None
        for _ in range(attempts):
            run = self.sync()
            if run.returncode == 0:
                return run
        raise AssertionError(f"agent did not recover after {attempts} runs\n{run.text if run else ''}")

    def status(self) -> dict[str, Any]:
        p = self.state_path / "status.json"
        return json.loads(p.read_text()) if p.exists() else {"datasets": {}}

    # -- the oracle
    def check(self, *, complete: bool = False, allow_snapshot_ahead: bool = False) -> dict[str, int]:
        """Assert the invariants; ``complete``: the target must also hold the whole published stream.

        ``allow_snapshot_ahead``: on a database whose DDL commits by itself (MySQL), a crash between a
        snapshot's RENAME and its checkpoint commit leaves the table at that snapshot and the checkpoint
        before it (docs/connectors.md); the next run applies the snapshot again. Accepted only when asked.
        """
        figures = {"rows": 0}
        for ds, st in self.streams.items():
            table = ds
            cp, digest = self.target.checkpoint(ds)
            lineage = self.target.lineage(ds)
            log = self.target.apply_log(ds)
            acks = self.hub_acks(ds)
            got = self.target.rows(table)
            figures["rows"] += len(got)
            assert cp <= st.seq, f"{ds}: checkpoint {cp} beyond the published stream ({st.seq})"
            if cp == 0:
                assert not lineage, f"{ds}: lineage {sorted(lineage)} without a checkpoint"
            else:
                assert lineage.get(cp) == digest, f"{ds}: checkpoint {cp} {digest} not in lineage"
                assert max(lineage) == cp, f"{ds}: lineage {sorted(lineage)} runs past checkpoint {cp}"
            want = st.expected(cp)
            if got != want:
                ahead = [b.seq for b in st.batches if b.kind == "snapshot" and b.seq > cp
                         and got == st.expected(b.seq)]
                if not (allow_snapshot_ahead and ahead):
                    missing = sorted(set(want) - set(got))[:5]
                    extra = sorted(set(got) - set(want))[:5]
                    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])[:5]
                    raise AssertionError(f"{ds}: target differs from the published state at checkpoint {cp}: "
                                         f"{len(got)} rows vs {len(want)}; missing {missing} extra {extra} "
                                         f"wrong {wrong}")
            # every committed lineage insert, in commit order: no seq twice with the same batch
            seen: dict[int, str] = {}
            for seq, d in log:
                assert seen.get(seq) != d, f"{ds}: batch #{seq} ({d[:12]}) was applied twice: {log}"
                seen[seq] = d
            assert {s: d for s, d in lineage.items()} == {s: seen[s] for s in lineage}, \
                f"{ds}: lineage and the apply log disagree"
            # acks only after commit: every acked batch is in the lineage with the same identity
            for seq, hh in acks.items():
                assert lineage.get(seq) == hh, f"{ds}: hub holds an ack for #{seq} that the target never committed"
            if complete:
                assert cp == st.seq, f"{ds}: checkpoint {cp}, published {st.seq}\n" + \
                    (self.runs[-1].text if self.runs else "")
                assert got == st.expected(st.seq)
                assert acks == lineage, f"{ds}: acks {sorted(acks)} vs lineage {sorted(lineage)}"
                assert not self.target.helper_tables(), f"helper tables left: {self.target.helper_tables()}"
        return figures


def assert_clean_exit(run: Run) -> None:
    """A run that did not crash must end with 0 or a coded error, never an internal error or traceback."""
    assert run.returncode != 70, f"internal error\n{run.text}"
    assert "Traceback" not in run.stderr, run.text


def wait_for(pred: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def hold_files(faults_dir: Path) -> list[Path]:
    return sorted(faults_dir.glob("hold.*"))


def dump(items: Iterable[Any]) -> str:
    return "\n".join(map(str, items))
