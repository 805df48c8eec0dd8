#!/usr/bin/python3
"""Plot zerobus_fdw's per-second metrics history (zb_metrics_history) to a PNG.

Three panels over time, like the Grafana dashboard's: throughput (rows
generated vs rows acknowledged per second), acknowledgement latency
percentiles, and queue depth / rows in flight.

Read straight from a server (psql is run as a subprocess; libpq's usual
PGHOST, PGPORT, PGUSER, PGDATABASE apply, or give --dsn):

    /usr/bin/python3 scripts/plot_metrics.py --dsn 'host=/tmp port=5432 dbname=postgres' -o metrics.png

or from a CSV saved earlier with

    psql -XAt -c "\\copy (SELECT * FROM zb_metrics_history) TO STDOUT CSV HEADER" > history.csv
    /usr/bin/python3 scripts/plot_metrics.py --csv history.csv -o metrics.png

Needs matplotlib (Debian: python3-matplotlib); runs headless.
"""

import argparse
import csv
import datetime
import io
import subprocess
import sys

COLUMNS = ["time", "stream", "rows_per_sec", "generated_per_sec", "ack_latency_p50_ms",
           "ack_latency_p95_ms", "ack_latency_p99_ms", "commit_to_ack_p50_ms",
           "commit_to_ack_p99_ms", "queue_depth", "rows_in_flight"]


def read_psql(psql, dsn, stream, seconds):
    where = []
    if stream:
        where.append("stream = '%s'" % stream.replace("'", "''"))
    if seconds:
        where.append("\"time\" > now() - interval '%d seconds'" % seconds)
    query = "SELECT %s FROM zb_metrics_history%s ORDER BY \"time\", stream" % (
        ", ".join('"%s"' % c for c in COLUMNS), " WHERE " + " AND ".join(where) if where else "")
    cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
           "\\copy (%s) TO STDOUT CSV HEADER" % query]
    if dsn:
        cmd[1:1] = ["-d", dsn]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return list(csv.DictReader(io.StringIO(out)))


def parse_time(text):
    # PostgreSQL's timestamptz output: 2024-03-01 12:00:00.123456+00 (or +05:30)
    text = text.strip()
    if text[-3] in "+-" and text[-3:].lstrip("+-").isdigit():
        text += ":00"
    return datetime.datetime.fromisoformat(text)


def num(value):
    if value is None or value == "":
        return None
    return float(value)


def series_by_stream(rows, stream):
    by = {}
    for r in rows:
        if stream and r["stream"] != stream:
            continue
        s = by.setdefault(r["stream"], {c: [] for c in COLUMNS if c != "stream"})
        s["time"].append(parse_time(r["time"]))
        for c in COLUMNS[2:]:
            s[c].append(num(r.get(c)))
    return by


def no_zero(values):
    """Seconds without acknowledgements have latency 0: leave gaps there."""
    return [v if v else float("nan") for v in values]


def plot(by, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 9), sharex=True,
                                        gridspec_kw={"height_ratios": [1.2, 1, 0.8]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    multi = len(by) > 1
    for i, (name, s) in enumerate(sorted(by.items())):
        c = colors[i % len(colors)]
        suffix = " (%s)" % name if multi else ""
        ax1.plot(s["time"], s["generated_per_sec"], color=c, linestyle="--", linewidth=1.2,
                 label="generated" + suffix)
        ax1.plot(s["time"], s["rows_per_sec"], color=c, linewidth=1.6, label="acknowledged" + suffix)
        if multi:
            ax2.plot(s["time"], no_zero(s["ack_latency_p99_ms"]), color=c, label="ack p99" + suffix)
        else:
            ax2.plot(s["time"], no_zero(s["ack_latency_p50_ms"]), color=colors[0], label="ack p50")
            ax2.plot(s["time"], no_zero(s["ack_latency_p95_ms"]), color=colors[1], label="ack p95")
            ax2.plot(s["time"], no_zero(s["ack_latency_p99_ms"]), color=colors[3], label="ack p99")
            if any(s["commit_to_ack_p99_ms"]):
                ax2.plot(s["time"], no_zero(s["commit_to_ack_p99_ms"]), color=colors[4],
                         linestyle=":", label="commit→ack p99")
        ax3.plot(s["time"], s["queue_depth"], color=c, label="queued" + suffix, zorder=3)
        ax3.fill_between(s["time"], s["rows_in_flight"], color=c, alpha=0.25,
                         label="in flight" + suffix)

    thousands = FuncFormatter(lambda v, _: "{:,.0f}".format(v))
    ax1.set_ylabel("rows / s")
    ax1.yaxis.set_major_formatter(thousands)
    ax1.set_title("Throughput: generated vs acknowledged by ZeroBus", loc="left", fontsize=10)
    ax2.set_ylabel("ms")
    ax2.set_yscale("log")
    ax2.set_title("Acknowledgement latency (per second)", loc="left", fontsize=10)
    ax3.set_ylabel("rows")
    ax3.yaxis.set_major_formatter(thousands)
    ax3.set_title("Queue depth and rows in flight", loc="left", fontsize=10)
    for ax in (ax1, ax2, ax3):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncol=4)
        ax.set_ylim(bottom=0 if ax is not ax2 else None)
    ax3.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax3.set_xlabel("time (UTC)")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--csv", help="read this CSV (zb_metrics_history with a header) instead of a server")
    src.add_argument("--dsn", help="libpq connection string for psql (default: the PG* environment)")
    ap.add_argument("--psql", default="psql", help="the psql program (default: psql on PATH)")
    ap.add_argument("--stream", help="only this stream (default: every stream)")
    ap.add_argument("--seconds", type=int, help="only the last N seconds (the ring holds about 17 minutes)")
    ap.add_argument("--title", default="zerobus_fdw: zb_metrics_history", help="the picture's title")
    ap.add_argument("-o", "--output", default="zerobus-metrics.png", help="the PNG to write")
    args = ap.parse_args()

    if args.csv:
        with open(args.csv, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        try:
            rows = read_psql(args.psql, args.dsn, args.stream, args.seconds)
        except subprocess.CalledProcessError as e:
            sys.exit("psql failed: %s" % e.stderr.strip())
    by = series_by_stream(rows, args.stream)
    if args.csv and args.seconds and by:
        end = max(max(s["time"]) for s in by.values())
        start = end - datetime.timedelta(seconds=args.seconds)
        for s in by.values():
            keep = [i for i, t in enumerate(s["time"]) if t > start]
            for c in s:
                s[c] = [s[c][i] for i in keep]
    if not any(s["time"] for s in by.values()):
        sys.exit("no samples in zb_metrics_history%s" % (" for stream " + args.stream if args.stream else ""))
    plot(by, args.output, args.title)
    print("%s: %d samples of %s" % (args.output, sum(len(s["time"]) for s in by.values()),
                                   ", ".join(sorted(by))))


if __name__ == "__main__":
    main()
