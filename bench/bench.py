#!/usr/bin/python3
"""zerobus_fdw benchmark driver (called by bench/run.sh after the build).

Creates a temporary cluster with the extension preloaded, starts the emulator
in sink mode, runs the scenarios, prints a Markdown report and writes it to
bench/out/results-<date>.md.  See bench/README.md.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PG_USER = "postgres"

# name -> (quick, full) parameters
PARAMS = {
    "fill_rows_200": (500_000, 1_000_000),
    "fill_rows_1k": (150_000, 300_000),
    "drain_rows_200": (300_000, 1_000_000),
    "drain_rows_1k": (100_000, 300_000),
    "concurrent_rows": (500_000, 2_000_000),
    "latency_s": (15, 30),
    "poll_rows": (200_000, 500_000),
    "acks150_rows": (300_000, 1_000_000),
    "rss_s": (30, 600),
    "rss_every_s": (5, 10),
}
ALL_SCENARIOS = ["verify", "fill", "drain", "concurrent", "latency", "polling", "acks150", "rss"]
ROW_SIZES = {"200B": 153, "1KB": 977}   # payload padding that gives ~200 / ~1024-byte PROTO records

SETTINGS = [
    ("shared_preload_libraries", "'zerobus_fdw'"),
    ("max_worker_processes", "32"),
    ("track_commit_timestamp", "on"),
    ("shared_buffers", "512MB"),
    ("max_wal_size", "4GB"),
    ("min_wal_size", "1GB"),
    ("checkpoint_timeout", "30min"),
    ("max_connections", "40"),
    ("autovacuum_naptime", "10s"),
]
SHOWN_SETTINGS = [
    "server_version", "shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_level",
    "synchronous_commit", "fsync", "full_page_writes", "track_commit_timestamp",
    "max_worker_processes", "autovacuum", "autovacuum_naptime", "jit", "zerobus.poll_interval",
]

QUEUE_DDL = """CREATE TABLE {t} (
    id         bigint NOT NULL,
    created_at timestamptz NOT NULL,
    account    text,
    amount     numeric(12,2),
    status     text,
    payload    text{extra})"""
ROWS_SQL = """SELECT i, now(), 'acct_' || (i % 100000), ((i % 1000000) / 100.0)::numeric(12,2),
       (ARRAY['settled','pending','failed','refunded'])[1 + (i % 4)::int], repeat('x', {pad})
  FROM generate_series({lo}::bigint, {hi}::bigint) i"""
FILL_PROC = """
CREATE PROCEDURE bench_fill(q regclass, total bigint, per_tx int, pad int)
LANGUAGE plpgsql AS $$
DECLARE
  done bigint := 0;
BEGIN
  WHILE done < total LOOP
    EXECUTE format('INSERT INTO %s ' || $sql$""" + ROWS_SQL.replace("%", "%%").format(
        pad="%s", lo="$1", hi="$2") + """$sql$, q, pad)
      USING done + 1, least(done + per_tx, total);
    COMMIT;
    done := done + per_tx;
  END LOOP;
END $$"""


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def as_user(cmd, **kw):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", PG_USER, "--"] + cmd
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------- /proc

def proc_cpu_s(pid):
    """utime + stime of a process (all threads), seconds; None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK
    except (OSError, IndexError):
        return None


def proc_children_cpu_s(pid):
    """cutime + cstime: CPU of the children a process has waited for, seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[13]) + int(rest[14])) / CLK_TCK
    except (OSError, IndexError):
        return None


def proc_minflt(pid):
    """Minor page faults of a process so far; None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError):
        return None


def proc_mem_kb(pid):
    """{VmRSS, RssAnon, RssShmem, ...} in kB."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def system_cpu():
    """(busy, total) clock ticks of the whole machine since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]   # user..steal (guest is inside user)
    return sum(v) - v[3] - v[4], sum(v)


def children_of(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


class Meter:
    """CPU use over a measurement, in cores (1.0 = one core busy):
    busy   the whole machine;
    ours   this benchmark's processes: the cluster (postmaster and its children),
           the emulators, this driver and the programs it ran (psql, pgbench,
           the polling client);
    others busy - ours: other users of the machine (noise)."""

    def __init__(self, bench):
        self.bench = bench

    def _ours(self):
        pids = self.bench.our_pids()
        cpu = {p: proc_cpu_s(p) for p in pids}
        # backends that exit during the measurement (psql, pgbench, the polling
        # client's) are counted through the postmaster's cutime/cstime
        pm = self.bench.cluster.postmaster_pid()
        reaped = (proc_children_cpu_s(pm) or 0.0) if pm else 0.0
        ru_self = resource.getrusage(resource.RUSAGE_SELF)
        ru_ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cpu, reaped + ru_self.ru_utime + ru_self.ru_stime + ru_ch.ru_utime + ru_ch.ru_stime

    def __enter__(self):
        self.cpu0, self.ru0 = self._ours()
        self.b0, self.t0 = system_cpu()
        self.w0 = time.monotonic()
        return self

    def __exit__(self, *a):
        b1, t1 = system_cpu()
        wall = time.monotonic() - self.w0
        cpu1, ru1 = self._ours()
        ours = ru1 - self.ru0
        for p, c in cpu1.items():
            if c is not None:
                ours += c - (self.cpu0.get(p) or 0.0)
        for p, c in self.cpu0.items():
            if c is not None and cpu1.get(p) is None:
                ours -= c       # exited: its whole CPU is in the reaped figure
        ticks = t1 - self.t0
        self.busy = (b1 - self.b0) / ticks * os.cpu_count() if ticks else 0.0
        self.ours = ours / wall if wall > 0 else 0.0
        self.others = max(0.0, self.busy - self.ours)


class AckSampler:
    """Polls a stream's rows_acked every 20 ms on its own connection: when the
    first ack and the last came (seconds from t0), and the rate in between."""

    def __init__(self, cluster, stream, n):
        self.cluster, self.stream, self.n = cluster, stream, n
        self.samples = []
        self.t_first = self.t_all = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._conn = cluster.connect()

    def start(self, t0):
        self.t0 = t0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        with self._conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute("SELECT rows_acked FROM zerobus.metrics() WHERE stream = %s", (self.stream,))
                row = cur.fetchone()
                t = time.monotonic() - self.t0
                acked = row[0] if row else 0
                self.samples.append((t, acked))
                if acked > 0 and self.t_first is None:
                    self.t_first = t
                if acked >= self.n:
                    self.t_all = t
                    self.done.set()
                    return
                time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._conn.close()
        self.done.set()

    def steady_rate(self):
        """Rows/s from the first sample with an ack to the sample that saw them all."""
        first = next((s for s in self.samples if s[1] > 0), None)
        if first is None or self.t_all is None or self.t_all <= first[0]:
            return None
        return (self.n - first[1]) / (self.t_all - first[0])


# ---------------------------------------------------------------- emulator

class Emulator:
    def __init__(self, workdir, name, args):
        self.dir = os.path.join(workdir, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        ports_file = os.path.join(self.dir, "ports.json")
        self.cmd = ["/usr/bin/python3", os.path.join(REPO, "emulator", "zerobus_emulator.py"),
                    "--ports-file", ports_file, "--tls-dir", os.path.join(self.dir, "tls"),
                    "--db", os.path.join(self.dir, "store.db"),
                    "--log", os.path.join(self.dir, "emulator.log")] + list(args)
        self.args = args
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(self.dir, "stdout"), "w"),
                                     stderr=subprocess.STDOUT)
        for _ in range(600):
            if os.path.exists(ports_file) and os.path.getsize(ports_file) > 0:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("emulator exited: " + open(os.path.join(self.dir, "emulator.log")).read()[-2000:])
            time.sleep(0.05)
        else:
            raise RuntimeError("emulator did not start")
        with open(ports_file) as f:
            self.ports = json.load(f)
        self.pid = self.proc.pid
        self.http = "http://127.0.0.1:%d" % self.ports["http"]
        self.grpc = "http://127.0.0.1:%d" % self.ports["grpc"]
        self.grpc_hostport = "127.0.0.1:%d" % self.ports["grpc"]

    def stats(self):
        with urllib.request.urlopen(self.http + "/emulator/stats", timeout=30) as r:
            return json.load(r)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------- cluster

class Cluster:
    def __init__(self, build_dir, port):
        self.root = os.path.join(build_dir, "bench")
        self.data = os.path.join(self.root, "data")
        self.sock = os.path.join(self.root, "sock")
        self.logfile = os.path.join(self.root, "postgresql.log")
        self.bin = os.path.join(build_dir, "pg/usr/lib/postgresql/15/bin")
        self.port = port
        self.running = False

    def init(self):
        shutil.rmtree(self.data, ignore_errors=True)
        os.makedirs(self.sock, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER)
            shutil.chown(self.sock, PG_USER)
        as_user([os.path.join(self.bin, "initdb"), "-D", self.data, "-A", "trust", "-U", PG_USER,
                 "-E", "UTF8", "--locale=C", "--no-sync"], stdout=subprocess.DEVNULL)
        conf = SETTINGS + [("port", str(self.port)), ("listen_addresses", "''"),
                           ("unix_socket_directories", "'%s'" % self.sock)]
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# zerobus_fdw benchmark\n")
            for k, v in conf:
                f.write("%s = %s\n" % (k, v))

    def start(self):
        as_user([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.logfile, "-w",
                 "-t", "120", "start"], stdout=subprocess.DEVNULL)
        self.running = True

    def stop(self):
        if self.running:
            as_user([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"],
                    stdout=subprocess.DEVNULL)
            self.running = False

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def dsn(self):
        return "host=%s port=%d user=%s dbname=postgres" % (self.sock, self.port, PG_USER)

    def connect(self, autocommit=True):
        conn = psycopg2.connect(self.dsn())
        conn.autocommit = autocommit
        return conn

    def pgbench(self, args, script):
        cmd = [os.path.join(self.bin, "pgbench"), "-h", self.sock, "-p", str(self.port),
               "-U", PG_USER] + args + ["-f", script, "postgres"]
        return as_user(cmd, capture_output=True, text=True)

    def psql_copy(self, table, path):
        cmd = [os.path.join(self.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
               "-h", self.sock, "-p", str(self.port), "-U", PG_USER, "-d", "postgres",
               "-c", "COPY %s FROM STDIN" % table]
        with open(path, "rb") as f:
            as_user(cmd, stdin=f)


# ---------------------------------------------------------------- report

class Report:
    def __init__(self):
        self.parts = []

    def add(self, text=""):
        self.parts.append(text)
        print(text, flush=True)

    def table(self, header, rows):
        self.add("| " + " | ".join(header) + " |")
        self.add("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            self.add("| " + " | ".join(str(c) for c in r) + " |")
        self.add()

    def text(self):
        return "\n".join(self.parts) + "\n"


def fmt_int(v):
    return "–" if v is None else "{:,}".format(int(round(v)))


def fmt_f(v, nd=1):
    return "–" if v is None else ("{:,.%df}" % nd).format(v)


def cores(meter):
    return "%.2f / %.2f" % (meter.ours, meter.others)


# ---------------------------------------------------------------- benchmark

class Bench:
    def __init__(self, args):
        self.args = args
        self.mode = args.mode
        self.cluster = Cluster(args.build_dir, args.port)
        self.workdir = os.path.join(self.cluster.root, "work")
        self.emus = {}
        self.report = Report()
        self.notes = []
        self.seq = 0
        self.conn = None
        self.busy_waits = 0
        self.busy_streak = 0

    def our_pids(self):
        pids = [e.pid for e in self.emus.values() if e.proc]
        pm = self.cluster.postmaster_pid()
        if pm:
            pids.append(pm)
            pids.extend(children_of(pm))
        return pids

    def wait_quiet(self):
        """Before a timed measurement: wait (up to a limit) until other users of
        the machine leave it alone for half a second."""
        limit = 5 if self.mode == "quick" else 30
        if self.busy_streak >= 2:
            limit = 1           # the machine stays busy: do not wait long each time
        deadline = time.monotonic() + limit
        while True:
            with Meter(self) as m:
                time.sleep(0.5)
            if m.others < 0.15:
                self.busy_streak = 0
                return
            if time.monotonic() > deadline:
                self.busy_waits += 1
                self.busy_streak += 1
                log("machine busy (%.2f cores used by others): measuring anyway" % m.others)
                return

    def p(self, name):
        return PARAMS[name][0 if self.mode == "quick" else 1]

    # ---- set-up

    def setup(self):
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, PG_USER)
        log("initdb and start of the cluster in %s (port %d)" % (self.cluster.data, self.cluster.port))
        self.cluster.init()
        self.cluster.start()
        self.conn = self.cluster.connect()
        self.sql("CREATE EXTENSION zerobus_fdw")
        self.sql(FILL_PROC)
        # warm-up: WAL segments created now are recycled later, so the timed
        # runs do not pay for creating and zero-filling them
        log("warm-up")
        warm = self.new_queue()
        for _ in range(3):
            self.fill(warm, 1_000_000, ROW_SIZES["200B"])
            self.sql("TRUNCATE %s" % warm)
            self.checkpoint()
        self.drop(None, warm)
        self.add_emulator("emu", ["--sink", "--no-proxy"])

    def add_emulator(self, name, args):
        log("emulator %s: %s" % (name, " ".join(args)))
        emu = Emulator(self.workdir, name, args)
        self.emus[name] = emu
        self.sql("""CREATE SERVER {n} FOREIGN DATA WRAPPER zerobus_fdw
                      OPTIONS (workspace_url '{h}', zerobus_endpoint '{g}', warehouse_id 'emulator-wh');
                    CREATE USER MAPPING FOR CURRENT_USER SERVER {n}
                      OPTIONS (client_id 'zb-test-client', client_secret 'zb-test-secret')""".format(
            n=name, h=emu.http, g=emu.grpc))
        return emu

    def teardown(self):
        with contextlib.suppress(Exception):
            if self.conn:
                self.conn.close()
        with contextlib.suppress(Exception):
            self.cluster.stop()
        for emu in self.emus.values():
            with contextlib.suppress(Exception):
                emu.stop()

    # ---- helpers

    def sql(self, q, args=None, conn=None):
        with (conn or self.conn).cursor() as cur:
            cur.execute(q, args)
            if cur.description:
                return cur.fetchall()
            return None

    def one(self, q, args=None, conn=None):
        rows = self.sql(q, args, conn)
        return rows[0][0] if rows else None

    def new_queue(self, extra=""):
        self.seq += 1
        name = "q%d" % self.seq
        self.sql(QUEUE_DDL.format(t=name, extra=extra))
        return name

    def create_stream(self, queue, server="emu", fmt="proto", workers=1, start=False, **opts):
        name = "s_" + queue
        extra = "".join(", %s => %s" % (k, v) for k, v in opts.items())
        self.sql("SELECT zerobus.create_stream(%s, %s, %s, 'main.default.bench', "
                 "record_format => %s, workers => %s, start => %s" + extra + ")",
                 (name, queue, server, fmt, workers, start))
        return name

    def drop(self, stream, queue):
        if stream:
            self.sql("SELECT zerobus.drop_stream(%s)", (stream,))
        self.sql("DROP TABLE IF EXISTS %s" % queue)

    def fill(self, queue, n, pad):
        self.sql("INSERT INTO %s %s" % (queue, ROWS_SQL.format(pad=pad, lo=1, hi=n)))

    def checkpoint(self):
        self.sql("CHECKPOINT")

    def settle(self):
        """Before a timed measurement: checkpoint, then wait for a quiet machine."""
        self.checkpoint()
        self.wait_quiet()

    def metrics(self, stream):
        with self.conn.cursor() as cur:
            cur.execute("SELECT * FROM zb_metrics WHERE stream = %s", (stream,))
            row = cur.fetchone()
            return dict(zip([d.name for d in cur.description], row)) if row else {}

    def worker_pids(self, stream):
        return [r[0] for r in self.sql(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'zerobus_fdw stream' "
            "AND application_name = %s", ("zerobus_fdw stream " + stream,))]

    def wait_running(self, stream, workers, timeout=60):
        """Until every worker runs and the stream is idle or streaming."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.metrics(stream)
            if m.get("workers_running") == workers and m.get("state") in ("idle", "streaming"):
                return m
            time.sleep(0.05)
        raise RuntimeError("stream %s did not start: %s" % (stream, self.metrics(stream)))

    def row_bytes(self, queue):
        return self.one("SELECT avg(pg_column_size(t.*))::int FROM (SELECT * FROM %s LIMIT 1000) t" % queue)

    # ---- one timed drain of a pre-filled queue

    def drain(self, n, pad, fmt, workers, server="emu", batch_rows=None, wait="flush"):
        """Fill a fresh queue with n rows (stream stopped), VACUUM, start, flush.
        wait="metrics": instead of flush, poll zb_metrics until rows_acked = n
        (then one flush to confirm).  Returns a dict of figures."""
        queue = self.new_queue()
        opts = {"batch_rows": batch_rows} if batch_rows else {}
        stream = self.create_stream(queue, server, fmt, workers, start=False, **opts)
        self.fill(queue, n, pad)
        self.sql("VACUUM (ANALYZE) %s" % queue)
        self.settle()
        emu = self.emus[server]
        st0 = emu.stats()
        emu_cpu0 = proc_cpu_s(emu.pid)
        fconn = self.cluster.connect()
        fpid = self.one("SELECT pg_backend_pid()", conn=fconn)
        f_cpu0 = proc_cpu_s(fpid)
        sampler = AckSampler(self.cluster, stream, n) if wait == "metrics" else None
        with Meter(self) as cpu:
            t0 = time.monotonic()
            if sampler:
                sampler.start(t0)
            self.sql("SELECT zerobus.start_stream(%s)", (stream,), conn=fconn)
            if wait == "metrics":
                sampler.done.wait(1800)
                # rows are acked before the worker's transaction commits: flush
                # then waits for that last commit only
            waited = self.one("SELECT zerobus.flush(%s, '30 min')", (stream,), conn=fconn)
            elapsed = time.monotonic() - t0
        if sampler:
            sampler.stop()
        pids = self.worker_pids(stream)
        wcpu = sum(filter(None, (proc_cpu_s(p) for p in pids)))
        wflt = sum(filter(None, (proc_minflt(p) for p in pids)))
        f_cpu = proc_cpu_s(fpid) - f_cpu0
        emu_cpu = proc_cpu_s(emu.pid) - emu_cpu0
        m = self.metrics(stream)
        st1 = emu.stats()
        fconn.close()
        records = st1["records"] - st0["records"]
        rbytes = st1["bytes"] - st0["bytes"]
        left = self.one("SELECT count(*) FROM %s" % queue)
        self.drop(stream, queue)
        if records != n or left != 0 or (waited != n and wait == "flush"):
            self.notes.append("drain %s %s w%d: emulator received %d records, flush waited for %s, "
                              "%s rows left (expected %d, 0)" % (fmt, pad, workers, records, waited, left, n))
        return {
            "rows": n, "seconds": elapsed, "rate": n / elapsed, "workers_seen": len(pids),
            "worker_us_row": wcpu * 1e6 / n, "emu_us_row": emu_cpu * 1e6 / n,
            "worker_minflt_row": wflt / n,
            "flush_cpu_s": f_cpu, "cores": cores(cpu), "others": cpu.others,
            "req_bytes_per_row": rbytes / records if records else None,
            "requests": st1["requests"] - st0["requests"],
            "reconnects": m.get("reconnects"), "failed": m.get("rows_failed"),
            "ack_p50": m.get("ack_latency_p50_ms"), "ack_p99": m.get("ack_latency_p99_ms"),
            "all_acked_s": sampler.t_all if sampler else None,
        }

    # ---- scenarios

    def sc_verify(self):
        """Both movers deliver the same, correct records (checked by a storing emulator)."""
        r = self.report
        n = 2000
        if "store" not in self.emus:
            self.add_emulator("store", ["--no-proxy"])
        emu = self.emus["store"]
        cols = [("id", "BIGINT", False), ("created_at", "TIMESTAMP", False), ("account", "STRING", True),
                ("amount", "DECIMAL(12,2)", True), ("status", "STRING", True), ("payload", "STRING", True)]
        for t in ("main.default.by_extension", "main.default.by_client"):
            req = urllib.request.Request(emu.http + "/emulator/tables", method="POST",
                                         headers={"Content-Type": "application/json"},
                                         data=json.dumps({"name": t, "columns": [
                                             {"name": c, "type": ty, "nullable": nl} for c, ty, nl in cols]}).encode())
            urllib.request.urlopen(req, timeout=30).read()
        src = self.new_queue()
        self.fill(src, n, ROW_SIZES["200B"])
        self.sql("UPDATE %s SET amount = NULL, status = NULL WHERE id %% 7 = 0" % src)  # NULLs too
        expected = [list(x) for x in self.sql(
            "SELECT id, (extract(epoch FROM created_at) * 1000000)::bigint, account, amount::text, "
            "status, payload FROM %s ORDER BY id" % src)]
        # the extension
        queue = self.new_queue()
        stream = self.sql("SELECT zerobus.create_stream('s_verify', %s, 'store', 'main.default.by_extension')",
                          (queue,))
        self.sql("INSERT INTO %s SELECT * FROM %s" % (queue, src))
        self.one("SELECT zerobus.flush('s_verify', '2 min')")
        self.drop("s_verify", queue)
        # the polling client
        queue = self.new_queue(extra=",\n    PRIMARY KEY (id)")
        self.sql("INSERT INTO %s SELECT * FROM %s" % (queue, src))
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "polling_client.py"), "--dsn", self.cluster.dsn(),
                        "--queue", queue, "--http", emu.http, "--grpc", emu.grpc_hostport,
                        "--target", "main.default.by_client", "--batch", "500"],
                       check=True, capture_output=True, text=True)
        self.drop(None, queue)
        self.drop(None, src)
        verdicts = []
        for who, t in (("zerobus_fdw", "main.default.by_extension"), ("polling client", "main.default.by_client")):
            with urllib.request.urlopen(emu.http + "/emulator/tables/%s/rows" % t, timeout=60) as resp:
                got = json.load(resp)["rows"]
            got = sorted(([int(x[0]), int(x[1]), x[2], None if x[3] is None else "%.2f" % float(x[3]),
                           x[4], x[5]] for x in got),
                         key=lambda x: x[0])
            ok = got == expected
            verdicts.append("%s %s (%d rows)" % (who, "identical" if ok else "DIFFERENT", len(got)))
            if not ok:
                self.notes.append("verify: %s delivered different records than PostgreSQL holds "
                                  "(first: %s vs %s)" % (who, got[:1], expected[:1]))
        r.add("Check: %d rows sent by each mover to a storing emulator (not sink mode) decode to the "
              "values PostgreSQL holds: %s." % (n, "; ".join(verdicts)))
        r.add()

    def sc_fill(self):
        r = self.report
        r.add("## Fill rate (the yardstick)")
        r.add()
        r.add("One session fills a queue whose stream is stopped; one statement, one transaction, "
              "CHECKPOINT before each; median of 3 runs. `plain` is a table without the stream's "
              "trigger (reference). COPY runs `psql -c 'COPY … FROM STDIN'` fed from a file of the "
              "same rows.")
        r.add()
        rows = []
        self.fill_rate = {}
        for size, pad in ROW_SIZES.items():
            n = self.p("fill_rows_200" if size == "200B" else "fill_rows_1k")
            # the COPY data: the same rows, written by the server beforehand
            path = os.path.join(self.workdir, "copy_%s.tsv" % size)
            self.sql("COPY (%s) TO '%s'" % (ROWS_SQL.format(pad=pad, lo=1, hi=n), path))
            for what in ("plain INSERT … SELECT", "queue INSERT … SELECT", "queue COPY FROM STDIN"):
                runs = []
                for _ in range(3):
                    queue = self.new_queue()
                    stream = None if what.startswith("plain") else self.create_stream(queue, start=False)
                    self.settle()
                    with Meter(self) as cpu:
                        t0 = time.monotonic()
                        if "COPY" in what:
                            self.cluster.psql_copy(queue, path)
                        else:
                            self.fill(queue, n, pad)
                        elapsed = time.monotonic() - t0
                    rb = self.row_bytes(queue)
                    self.drop(stream, queue)
                    runs.append((n / elapsed, elapsed, cores(cpu)))
                runs.sort()
                rate, elapsed, busy = runs[1]
                self.fill_rate[(size, what)] = rate
                rows.append([size, what, fmt_int(n), fmt_f(elapsed, 2), fmt_int(rate),
                             "%s – %s" % (fmt_int(runs[0][0]), fmt_int(runs[-1][0])), rb,
                             busy])
                log("fill %s %s: %.0f rows/s" % (size, what, rate))
            os.unlink(path)
        r.table(["row", "how", "rows", "s", "rows/s (median of 3)", "range", "bytes/row (PG)",
                 "cores ours / others"], rows)

    def sc_drain(self):
        r = self.report
        r.add("## Drain: pre-filled queue → durable acks")
        r.add()
        r.add("Queue filled with the stream stopped, VACUUMed; time from `start_stream` to the "
              "return of `zerobus.flush` (includes worker start, token, stream open). "
              "CPU: worker utime+stime from /proc over the drain ÷ rows; the emulator's likewise; "
              "`flush` is the CPU of the backend running `zerobus.flush` (it re-scans the queue "
              "every 10 ms); page faults: the worker's minor faults (/proc minflt) ÷ rows. The "
              "`no flush` row waits by polling zb_metrics instead of calling flush until all are "
              "acked (then flush once), to show what flush's polling costs.")
        r.add()
        rows = []
        self.drain_results = {}
        for size, pad in ROW_SIZES.items():
            n = self.p("drain_rows_200" if size == "200B" else "drain_rows_1k")
            for fmt in ("proto", "json"):
                for workers in (1, 2, 4):
                    d = self.drain(n, pad, fmt, workers)
                    self.drain_results[(size, fmt, workers)] = d
                    rows.append([size, fmt, workers, fmt_int(n), fmt_f(d["seconds"], 2),
                                 fmt_int(d["rate"]), fmt_f(d["req_bytes_per_row"], 0),
                                 fmt_f(d["worker_us_row"], 2), fmt_f(d["worker_minflt_row"], 2),
                                 fmt_f(d["emu_us_row"], 2), fmt_f(d["flush_cpu_s"], 2), d["cores"]])
                    log("drain %s %s w%d: %.0f rows/s" % (size, fmt, workers, d["rate"]))
        # the same drain waited for by polling zb_metrics instead of zerobus.flush
        n = self.p("drain_rows_200")
        d = self.drain(n, ROW_SIZES["200B"], "proto", 1, wait="metrics")
        self.drain_no_flush = d
        rows.append(["200B", "proto", "1 (no flush)", fmt_int(n), fmt_f(d["seconds"], 2),
                     fmt_int(d["rate"]), fmt_f(d["req_bytes_per_row"], 0), fmt_f(d["worker_us_row"], 2),
                     fmt_f(d["worker_minflt_row"], 2), fmt_f(d["emu_us_row"], 2),
                     fmt_f(d["flush_cpu_s"], 2), d["cores"]])
        log("drain 200B proto w1, waiting on zb_metrics: %.0f rows/s" % d["rate"])
        r.table(["row", "format", "workers", "rows", "s", "rows/s", "wire bytes/row",
                 "worker µs/row", "worker page faults/row", "emulator µs/row", "flush CPU s",
                 "cores ours / others"], rows)
        # what start-up costs in these figures
        starts = []
        for workers in (1, 4):
            queue = self.new_queue()
            stream = self.create_stream(queue, "emu", "proto", workers, start=False)
            self.settle()
            t0 = time.monotonic()
            self.sql("SELECT zerobus.start_stream(%s)", (stream,))
            self.fill(queue, 1, ROW_SIZES["200B"])
            self.one("SELECT zerobus.flush(%s, '5 min')", (stream,))
            starts.append("%d worker(s) %.2f s" % (workers, time.monotonic() - t0))
            self.drop(stream, queue)
        r.add("Start-up included in each drain time above (`start_stream`, then one row, until "
              "`flush` returns): %s." % ", ".join(starts))
        r.add()

    def sc_concurrent(self):
        r = self.report
        n = self.p("concurrent_rows")
        r.add("## Concurrent: INSERT … SELECT while the stream runs")
        r.add()
        r.add("Stream running (idle) first; one session `CALL bench_fill(...)`: %s rows of 200 B "
              "in transactions of 10,000 rows as fast as it can; end-to-end time from the start "
              "until `zerobus.flush` returns. `queue at end of insert` is count(*) right after "
              "the last commit: near 0 means ingestion kept pace." % fmt_int(n))
        r.add()
        rows = []
        for fmt, workers in (("proto", 1), ("proto", 2), ("json", 1)):
            queue = self.new_queue()
            stream = self.create_stream(queue, "emu", fmt, workers, start=True)
            self.wait_running(stream, workers)
            self.settle()
            emu = self.emus["emu"]
            emu_cpu0 = proc_cpu_s(emu.pid)
            pids = self.worker_pids(stream)
            w0 = {p: proc_cpu_s(p) for p in pids}
            iconn = self.cluster.connect()
            ipid = self.one("SELECT pg_backend_pid()", conn=iconn)
            i0 = proc_cpu_s(ipid)
            with Meter(self) as cpu:
                t0 = time.monotonic()
                self.sql("CALL bench_fill(%s, %s, 10000, %s)", (queue, n, ROW_SIZES["200B"]), conn=iconn)
                t_ins = time.monotonic() - t0
                depth = self.one("SELECT count(*) FROM %s" % queue)
                acked_at_ins = self.metrics(stream).get("rows_acked")
                self.one("SELECT zerobus.flush(%s, '30 min')", (stream,))
                elapsed = time.monotonic() - t0
            icpu = proc_cpu_s(ipid) - i0
            iconn.close()
            wcpu = sum((proc_cpu_s(p) or 0) - (w0[p] or 0) for p in pids)
            emu_cpu = proc_cpu_s(emu.pid) - emu_cpu0
            m = self.metrics(stream)
            left = self.one("SELECT count(*) FROM %s" % queue)
            self.drop(stream, queue)
            if left != 0 or m.get("rows_acked") != n:
                self.notes.append("concurrent %s w%d: rows_acked %s, %s left (expected %d, 0)"
                                  % (fmt, workers, m.get("rows_acked"), left, n))
            yard = getattr(self, "fill_rate", {}).get(("200B", "queue INSERT … SELECT"))
            rows.append([fmt, workers, fmt_int(n), fmt_int(n / t_ins), fmt_int(n / elapsed),
                         fmt_int(depth), fmt_int(acked_at_ins), fmt_f(elapsed - t_ins, 2),
                         "yes" if depth <= max(20000, n // 100) else "no",
                         fmt_f(wcpu * 1e6 / n, 2), fmt_f(icpu * 1e6 / n, 2), fmt_f(emu_cpu * 1e6 / n, 2),
                         cores(cpu)])
            self.concurrent = getattr(self, "concurrent", {})
            self.concurrent[(fmt, workers)] = {"insert": n / t_ins, "e2e": n / elapsed, "depth": depth,
                                               "others": cpu.others,
                                               "kept": depth <= max(20000, n // 100)}
            log("concurrent %s w%d: insert %.0f rows/s, end to end %.0f rows/s, depth %d"
                % (fmt, workers, n / t_ins, n / elapsed, depth))
        r.table(["format", "workers", "rows", "insert rows/s", "end-to-end rows/s",
                 "queue at end of insert", "acked at end of insert", "drain after insert s",
                 "kept pace", "worker µs/row", "inserting backend µs/row", "emulator µs/row",
                 "cores ours / others"], rows)
        if yard:
            r.add("Yardstick (fill scenario, one INSERT … SELECT, stream stopped): %s rows/s." % fmt_int(yard))
            r.add()

    def sc_latency(self):
        r = self.report
        secs = self.p("latency_s")
        r.add("## Latency at a fixed 10,000 rows/s")
        r.add()
        r.add("pgbench `-R 100 -T %d`, each transaction `INSERT … SELECT` of 100 rows of 200 B "
              "(10,000 rows/s on average, Poisson-spaced commits); one worker, a fresh stream "
              "(fresh histograms). commit→ack: from the row's commit timestamp "
              "(track_commit_timestamp) to its durable ack; ack: from a request's send to its ack."
              % secs)
        r.add()
        rows = []
        for fmt in ("proto", "json"):
            queue = self.new_queue()
            stream = self.create_stream(queue, "emu", fmt, 1, start=True)
            self.wait_running(stream, 1)
            script = os.path.join(self.workdir, "insert100_%s.sql" % queue)
            with open(script, "w") as f:
                f.write("INSERT INTO %s %s;\n" % (queue, ROWS_SQL.format(
                    pad=ROW_SIZES["200B"], lo=1, hi=100).replace("\n", " ")))
            os.chmod(script, 0o644)
            self.settle()
            pids = self.worker_pids(stream)
            w0 = {p: proc_cpu_s(p) for p in pids}
            with Meter(self) as cpu:
                res = self.cluster.pgbench(["-n", "-R", "100", "-T", str(secs), "-c", "1"], script)
            self.one("SELECT zerobus.flush(%s, '5 min')", (stream,))
            wcpu = sum((proc_cpu_s(p) or 0) - (w0[p] or 0) for p in pids)
            m = self.metrics(stream)
            lat = lag = None
            for line in res.stdout.splitlines():
                if line.startswith("latency average"):
                    lat = line.split("=")[1].strip()
                if line.startswith("rate limit schedule lag"):
                    lag = line.split(":", 1)[1].strip()
            self.drop(stream, queue)
            n = m.get("rows_acked") or 0
            rows.append([fmt, fmt_int(n), fmt_int(n / secs), fmt_f(m.get("commit_to_ack_p50_ms"), 2),
                         fmt_f(m.get("commit_to_ack_p99_ms"), 2), fmt_f(m.get("ack_latency_p50_ms"), 2),
                         fmt_f(m.get("ack_latency_p99_ms"), 2), fmt_f(m.get("ack_latency_max_ms"), 2),
                         m.get("requests_acked"), fmt_f(wcpu * 1e6 / n if n else None, 2),
                         lat, lag, cores(cpu)])
            self.latency = getattr(self, "latency", {})
            self.latency[fmt] = dict(m, others=cpu.others)
            log("latency %s: commit->ack p50 %s p99 %s ms" % (
                fmt, m.get("commit_to_ack_p50_ms"), m.get("commit_to_ack_p99_ms")))
        r.table(["format", "rows", "rows/s", "commit→ack p50 ms", "commit→ack p99 ms",
                 "ack p50 ms", "ack p99 ms", "ack max ms", "requests", "worker µs/row",
                 "pgbench latency avg", "pgbench schedule lag", "cores ours / others"], rows)

    def sc_polling(self):
        r = self.report
        n = self.p("poll_rows")
        pad = ROW_SIZES["200B"]
        r.add("## Polling client (the obvious alternative) on the same rows")
        r.add()
        r.add("`bench/polling_client.py`: one Python process, psycopg2 + grpcio; per batch of "
              "5,000 rows: BEGIN; prepared `DELETE … WHERE id = ANY(ARRAY(SELECT id … ORDER BY id "
              "LIMIT 5000 FOR UPDATE SKIP LOCKED)) RETURNING …`; encode PROTO records; one "
              "IngestRecordBatchRequest; wait for its ack; COMMIT. Its queue has `PRIMARY KEY (id)` "
              "(it needs a key to claim by); the extension's has no index. Same %s rows of 200 B, "
              "same emulator, VACUUMed queue for both." % fmt_int(n))
        r.add()
        ext = self.drain(n, pad, "proto", 1)
        out = self.poll_run(n, pad, "emu")
        prate = out["rate"]
        self.poll_ratio = ext["rate"] / prate
        self.poll_ext, self.poll_cli = ext, out
        r.table(["mover", "rows", "s", "rows/s", "mover CPU µs/row (client + its backend)",
                 "emulator µs/row", "cores ours / others"], [
            ["zerobus_fdw, 1 worker", fmt_int(n), fmt_f(ext["seconds"], 2), fmt_int(ext["rate"]),
             fmt_f(ext["worker_us_row"], 2), fmt_f(ext["emu_us_row"], 2), ext["cores"]],
            ["polling client", fmt_int(n), fmt_f(out["seconds"], 2), fmt_int(prate),
             "%s (%s + %s)" % (fmt_f(out["client_us_row"] + (out["backend_us_row"] or 0), 2),
                               fmt_f(out["client_us_row"], 2), fmt_f(out["backend_us_row"], 2)),
             fmt_f(out["emu_us_row"], 2), out["cores"]],
        ])
        r.add("Ratio zerobus_fdw / polling client: **%.1f×** (the client's time excludes its "
              "start-up; the extension's includes worker start)." % self.poll_ratio)
        r.add()
        log("polling: client %s rows/s, extension %.0f rows/s, ratio %.1f" % (prate, ext["rate"], self.poll_ratio))

    def poll_run(self, n, pad, server):
        """The polling client over a fresh, VACUUMed queue of n rows (with a primary key)."""
        queue = self.new_queue(extra=",\n    PRIMARY KEY (id)")
        self.fill(queue, n, pad)
        self.sql("VACUUM (ANALYZE) %s" % queue)
        self.settle()
        emu = self.emus[server]
        st0 = emu.stats()
        emu_cpu0 = proc_cpu_s(emu.pid)
        cmd = ["/usr/bin/python3", os.path.join(HERE, "polling_client.py"), "--dsn", self.cluster.dsn(),
               "--queue", queue, "--http", emu.http, "--grpc", emu.grpc_hostport,
               "--target", "main.default.bench", "--batch", "5000"]
        with Meter(self) as cpu:
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        emu_cpu = proc_cpu_s(emu.pid) - emu_cpu0
        st1 = emu.stats()
        left = self.one("SELECT count(*) FROM %s" % queue)
        self.drop(None, queue)
        if out["rows"] != n or left != 0 or st1["records"] - st0["records"] != n:
            self.notes.append("polling client: moved %s rows, emulator got %d, %s left (expected %d)"
                              % (out["rows"], st1["records"] - st0["records"], left, n))
        return {"rate": out["rows_per_s"], "seconds": out["seconds"],
                "client_us_row": out["cpu_s"] * 1e6 / n,
                "backend_us_row": out["backend_cpu_s"] * 1e6 / n if out["backend_cpu_s"] is not None else None,
                "emu_us_row": emu_cpu * 1e6 / n, "cores": cores(cpu), "others": cpu.others}

    def sc_acks150(self):
        r = self.report
        n = self.p("acks150_rows")
        if "emu150" not in self.emus:
            self.add_emulator("emu150", ["--sink", "--no-proxy", "--ack-delay-ms", "150"])
        r.add("## Drain with 150 ms acks (scaling with workers)")
        r.add()
        r.add("A second emulator, `--sink --no-proxy --ack-delay-ms 150`; %s rows of 200 B PROTO, "
              "pre-filled and VACUUMed; defaults batch_rows 5,000, max_inflight 50,000 per worker."
              % fmt_int(n))
        r.add()
        rows = []
        self.acks150 = {}
        for workers in (1, 2, 4, 8):
            d = self.drain(n, ROW_SIZES["200B"], "proto", workers, server="emu150")
            self.acks150[workers] = d
            rows.append([workers, fmt_int(n), fmt_f(d["seconds"], 2), fmt_int(d["rate"]),
                         fmt_f(d["ack_p50"], 1), fmt_f(d["ack_p99"], 1), fmt_f(d["worker_us_row"], 2),
                         d["cores"]])
            log("acks150 w%d: %.0f rows/s" % (workers, d["rate"]))
        pn = self.p("poll_rows")
        pc = self.poll_run(pn, ROW_SIZES["200B"], "emu150")
        self.acks150_poll = pc
        rows.append(["polling client", fmt_int(pn), fmt_f(pc["seconds"], 2), fmt_int(pc["rate"]),
                     "–", "–", fmt_f(pc["client_us_row"], 2) + " (client)", pc["cores"]])
        log("acks150 polling client: %.0f rows/s" % pc["rate"])
        r.table(["workers", "rows", "s", "rows/s", "ack p50 ms", "ack p99 ms", "worker µs/row",
                 "cores ours / others"], rows)
        r.add("Ratio zerobus_fdw (best) / polling client with 150 ms acks: **%.1f×**."
              % (max(v["rate"] for v in self.acks150.values()) / pc["rate"]))
        r.add()

    def sc_rss(self):
        r = self.report
        secs, every = self.p("rss_s"), self.p("rss_every_s")
        rate_tx = 200
        r.add("## Worker memory under steady load")
        r.add()
        r.add("One worker, PROTO; pgbench `-R %d` × 100 rows of 200 B (%s rows/s) for %d s; "
              "VmRSS and RssAnon (private memory; VmRSS also counts the shared buffers the worker "
              "has touched) sampled every %d s." % (rate_tx, fmt_int(rate_tx * 100), secs, every))
        r.add()
        queue = self.new_queue()
        stream = self.create_stream(queue, "emu", "proto", 1, start=True)
        self.wait_running(stream, 1)
        pid = self.worker_pids(stream)[0]
        script = os.path.join(self.workdir, "insert100_%s.sql" % queue)
        with open(script, "w") as f:
            f.write("INSERT INTO %s %s;\n" % (queue, ROWS_SQL.format(
                pad=ROW_SIZES["200B"], lo=1, hi=100).replace("\n", " ")))
        os.chmod(script, 0o644)
        samples = []
        result = {}

        def load():
            result["pgbench"] = self.cluster.pgbench(
                ["-n", "-R", str(rate_tx), "-T", str(secs), "-c", "1"], script)

        th = threading.Thread(target=load)
        t0 = time.monotonic()
        th.start()
        sconn = self.cluster.connect()
        palloc = []             # (s, bytes used by the worker's memory contexts)
        dumped_early = False
        while th.is_alive():
            if not dumped_early and time.monotonic() - t0 >= every:
                palloc.append((time.monotonic() - t0, self.context_total(sconn, pid)))
                dumped_early = True
            mem = proc_mem_kb(pid)
            acked = self.metrics_on(sconn, stream).get("rows_acked")
            samples.append((time.monotonic() - t0, mem.get("VmRSS"), mem.get("RssAnon"), acked))
            th.join(every)
        mem = proc_mem_kb(pid)
        samples.append((time.monotonic() - t0, mem.get("VmRSS"), mem.get("RssAnon"),
                        self.metrics_on(sconn, stream).get("rows_acked")))
        palloc.append((time.monotonic() - t0, self.context_total(sconn, pid)))
        self.one("SELECT zerobus.flush(%s, '5 min')", (stream,))
        m = self.metrics(stream)
        still = pid in self.worker_pids(stream)
        sconn.close()
        self.drop(stream, queue)
        rss = [s[1] for s in samples if s[1]]
        anon = [s[2] for s in samples if s[2]]
        # growth over the second half (after warm-up)
        half = [s for s in samples if s[0] >= secs / 2 and s[2]]
        growth = (half[-1][2] - half[0][2]) if len(half) >= 2 else None
        r.table(["rows acked", "samples", "VmRSS min kB", "VmRSS max kB", "RssAnon min kB",
                 "RssAnon max kB", "RssAnon growth, 2nd half kB", "same worker pid throughout",
                 "commit→ack p99 ms"],
                [[fmt_int(m.get("rows_acked")), len(samples), fmt_int(min(rss)), fmt_int(max(rss)),
                  fmt_int(min(anon)), fmt_int(max(anon)), fmt_int(growth), "yes" if still else "no",
                  fmt_f(m.get("commit_to_ack_p99_ms"), 2)]])
        r.add("The worker's PostgreSQL memory contexts (`pg_log_backend_memory_contexts`, "
              "\"Grand total … used\"): %s. RssAnon growth that palloc does not show is memory "
              "allocated with malloc outside the contexts (libcurl, nghttp2, protobuf-c, glibc arenas)."
              % ", ".join("%s bytes at %.0f s" % (fmt_int(b) if b is not None else "?", t) for t, b in palloc))
        r.add()
        r.add("<details><summary>samples (s, VmRSS kB, RssAnon kB, rows acked)</summary>")
        r.add()
        r.add("```")
        for s in samples:
            r.add("%6.0f %9s %9s %12s" % s)
        r.add("```")
        r.add("</details>")
        r.add()
        self.rss = {"growth": growth, "anon_max": max(anon), "anon_min": min(anon)}

    def context_total(self, conn, pid):
        """Bytes used by a backend's memory contexts, from pg_log_backend_memory_contexts
        (the server log's "Grand total" line for that pid)."""
        with open(self.cluster.logfile, "rb") as f:
            f.seek(0, 2)
            start = f.tell()
        self.one("SELECT pg_log_backend_memory_contexts(%s)", (pid,), conn=conn)
        tag = ("[%d] " % pid).encode()
        for _ in range(100):
            time.sleep(0.05)
            with open(self.cluster.logfile, "rb") as f:
                f.seek(start)
                for line in f:
                    if tag in line and b"Grand total:" in line:
                        # "Grand total: N bytes in B blocks; F free (C chunks); U used"
                        try:
                            return int(line.rsplit(b";", 1)[1].split()[0])
                        except (IndexError, ValueError):
                            return None
        return None

    def metrics_on(self, conn, stream):
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM zb_metrics WHERE stream = %s", (stream,))
            row = cur.fetchone()
            return dict(zip([d.name for d in cur.description], row)) if row else {}

    # ---- header and summary

    def header(self):
        r = self.report
        now = datetime.datetime.now()
        r.add("# zerobus_fdw benchmark — %s mode, %s" % (self.mode, now.strftime("%Y-%m-%d %H:%M")))
        r.add()
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        r.add("- machine: %s, %d cores, %.0f GiB RAM, Linux %s" % (
            cpu, os.cpu_count(), mem_kb / 1048576, platform.release()))
        r.add("- PostgreSQL: %s" % self.one("SELECT version()"))
        r.add("- zerobus_fdw: %s (commit %s%s)" % (
            self.one("SELECT extversion FROM pg_extension WHERE extname = 'zerobus_fdw'"),
            commit, ", uncommitted changes" if dirty else ""))
        r.add("- emulator: `%s`" % " ".join(self.emus["emu"].args))
        r.add("- settings added to postgresql.conf: " + ", ".join("`%s = %s`" % kv for kv in SETTINGS))
        r.add("- in effect: " + ", ".join("`%s = %s`" % (n, s) for n, s in self.sql(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) "
            "ORDER BY array_position(%s, name)", (SHOWN_SETTINGS, SHOWN_SETTINGS))))
        r.add("- rows: `id bigint NOT NULL, created_at timestamptz NOT NULL, account text, "
              "amount numeric(12,2), status text, payload text`; payload of %d / %d characters "
              "for ~200 B / ~1 KB PROTO records" % (ROW_SIZES["200B"], ROW_SIZES["1KB"]))
        r.add("- everything shares %d cores: PostgreSQL (workers, backends, WAL writer, "
              "checkpointer, autovacuum), the emulator (Python grpcio) and the load generator"
              % os.cpu_count())
        r.add()

    def summary(self):
        r = self.report
        r.add("## Targets")
        r.add()
        r.add("`others`: cores used by other processes on the machine during the measurements "
              "behind the figure (max); above ~0.2 the figure is disturbed.")
        r.add()
        rows = []
        d = getattr(self, "drain_results", {})
        p200 = {k: v for k, v in d.items() if k[0] == "200B" and k[1] == "proto"}
        if p200:
            k, best = max(p200.items(), key=lambda kv: kv[1]["rate"])
            rows.append(["≥ 200,000 rows/s, 200 B PROTO (best drain)",
                         "%s (%d workers)" % (fmt_int(best["rate"]), k[2]), fmt_f(best["others"], 2),
                         "met" if best["rate"] >= 200000 else "MISSED"])
        if hasattr(self, "poll_ratio"):
            rows.append(["≥ 10× the polling client", "%.1f× (%s vs %s rows/s)" % (
                self.poll_ratio, fmt_int(self.poll_ext["rate"]), fmt_int(self.poll_cli["rate"])),
                fmt_f(max(self.poll_ext["others"], self.poll_cli["others"]), 2),
                "met" if self.poll_ratio >= 10 else "MISSED"])
        if getattr(self, "acks150_poll", None) and getattr(self, "acks150", None):
            best = max(v["rate"] for v in self.acks150.values())
            ratio = best / self.acks150_poll["rate"]
            rows.append(["≥ 10× the polling client, with 150 ms acks", "%.1f×" % ratio,
                         fmt_f(max([self.acks150_poll["others"]] + [v["others"] for v in self.acks150.values()]), 2),
                         "met" if ratio >= 10 else "MISSED"])
        lat = getattr(self, "latency", {}).get("proto")
        if lat and lat.get("commit_to_ack_p99_ms") is not None:
            p99 = lat["commit_to_ack_p99_ms"]
            rows.append(["commit→ack p99 ≤ 20 ms at 10,000 rows/s (PROTO)", "%.2f ms" % p99,
                         fmt_f(lat["others"], 2), "met" if p99 <= 20 else "MISSED"])
        fr = getattr(self, "fill_rate", {}).get(("200B", "queue INSERT … SELECT"))
        if fr and p200:
            best = max(v["rate"] for v in p200.values())
            rows.append(["drain ≥ one session's INSERT … SELECT (%s rows/s, stream stopped)" % fmt_int(fr),
                         "best drain %s" % fmt_int(best), fmt_f(max(v["others"] for v in p200.values()), 2),
                         "met" if best >= fr else "MISSED"])
        c = getattr(self, "concurrent", {})
        for (f, w), v in c.items():
            rows.append(["keeps pace with one session inserting 10k-row transactions (%s, %d worker%s)"
                         % (f, w, "s" if w > 1 else ""),
                         "insert %s, end to end %s rows/s, %s rows queued at end of insert"
                         % (fmt_int(v["insert"]), fmt_int(v["e2e"]), fmt_int(v["depth"])),
                         fmt_f(v["others"], 2), "yes" if v["kept"] else "NO"])
        a = getattr(self, "acks150", {})
        if a:
            best = max(v["rate"] for v in a.values())
            rows.append(["150 ms acks: ≥ 100,000 rows/s with enough workers",
                         " / ".join("w%d %s" % (w, fmt_int(v["rate"])) for w, v in sorted(a.items())),
                         fmt_f(max(v["others"] for v in a.values()), 2),
                         "met" if best >= 100000 else "MISSED"])
        if hasattr(self, "rss"):
            g = self.rss["growth"]
            rows.append(["worker memory flat", "RssAnon %s–%s kB, 2nd-half growth %s kB" % (
                fmt_int(self.rss["anon_min"]), fmt_int(self.rss["anon_max"]), fmt_int(g)), "–",
                "flat" if g is not None and g <= 1024 else "CHECK"])
        r.table(["target", "measured", "others", "verdict"], rows)
        if d:
            r.add("CPU per row, from the drains with 1 worker (µs of CPU ÷ rows delivered):")
            r.add()
            r.table(["row", "format", "worker", "emulator (sink)"],
                    [[k[0], k[1], fmt_f(v["worker_us_row"], 2), fmt_f(v["emu_us_row"], 2)]
                     for k, v in d.items() if k[2] == 1])
        if self.notes:
            r.add("## Anomalies")
            r.add()
            for n in self.notes:
                r.add("- " + n)
            r.add()

    def run(self, scenarios):
        started = time.monotonic()
        self.setup()
        self.header()
        for s in scenarios:
            log("scenario %s" % s)
            getattr(self, "sc_" + s)()
        self.summary()
        if self.busy_waits:
            self.report.add("%d measurement(s) started while other processes on the machine used "
                            "more than 0.15 cores (after waiting for them); the `others` figures "
                            "show how much they took." % self.busy_waits)
            self.report.add()
        self.report.add("Total benchmark time: %.0f s." % (time.monotonic() - started))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--port", type=int, default=55491)
    ap.add_argument("--mode", choices=("quick", "full"), default="quick")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("scenarios", nargs="*")
    args = ap.parse_args()
    scenarios = args.scenarios or [s for s in ALL_SCENARIOS]
    for s in scenarios:
        if s not in ALL_SCENARIOS:
            ap.error("unknown scenario %s (known: %s)" % (s, " ".join(ALL_SCENARIOS)))
    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    ok = False
    try:
        bench.run(scenarios)
        ok = True
    finally:
        bench.teardown()
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "results-%s.md" % datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        text = bench.report.text()
        if not ok:
            text += "\n**The run stopped early (error); figures above are partial.**\n"
        with open(path, "w") as f:
            f.write(text)
        log("report written to %s" % path)


if __name__ == "__main__":
    main()
