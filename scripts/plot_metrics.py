#!/usr/bin/python3
"""Plot zerobus_fdw's per-second metrics history (zb_metrics_history), or a
dashboard's data, to a PNG.

Three panels over time, like the Grafana dashboard's: throughput (rows
generated vs rows acknowledged per second), acknowledgement latency
percentiles, and queue depth / rows in flight.

With --board dashboards/<name>.json (sensors, orders or weblogs), the picture
of that dashboard's data: its panels' own SQL, expanded the way Grafana
expands it (template variables at their saved values, $__interval,
$__timeFilter and the other macros of the PostgreSQL data source) over the
last --seconds, run through psql, drawn with matplotlib:

    /usr/bin/python3 scripts/plot_metrics.py --board dashboards/orders.json \
        --dsn 'host=/tmp port=5432 dbname=postgres user=grafana_reader' --seconds 300 -o orders.png

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
import json
import os
import re
import subprocess
import sys
import time

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


# ------------------------------------------------------------------ dashboards

# rangeutil.roundInterval: (below this many ms, this interval)
ROUND_MS = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
            (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
            (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000),
            (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
            (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000),
            (86400000, 43200000), (604800000, 86400000)]
UNIT_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000}


def interval_ms(text):
    m = re.match(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$", text)
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def ms_text(ms):
    for unit, size in (("w", 604800000), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms >= size:
            return "%d%s" % (ms // size, unit)
    return "%dms" % ms


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Board:
    """A dashboard's panels, their SQL expanded as Grafana and its PostgreSQL data source do."""

    def __init__(self, path, psql, dsn, seconds):
        with open(path, encoding="utf-8") as f:
            self.dash = json.load(f)
        self.psql, self.dsn = psql, dsn
        self.to = time.time() + 1
        self.frm = self.to - seconds
        self.panels = {}
        for p in self.dash["panels"]:
            for q in [p] + p.get("panels", []):
                if q["type"] != "row":
                    self.panels[q["title"]] = q
        self.defs = {v["name"]: v for v in self.dash.get("templating", {}).get("list", [])}
        self.values, self.options = {}, {}
        for v in self.dash.get("templating", {}).get("list", []):
            if v["type"] == "query":
                _, rows = self.query(self.expand(v["query"], {}))
                self.options[v["name"]] = [r[0] for r in rows]
            else:
                self.options[v["name"]] = [o.strip() for o in v["query"].split(",")]
            self.values[v["name"]] = v.get("current", {}).get("value", "$__all")

    def interval(self, panel):
        points = panel.get("maxDataPoints") or 1000
        ms = (self.to - self.frm) * 1000 / points
        ms = next((r for below, r in ROUND_MS if ms < below), 604800000)
        return max(ms, interval_ms(panel.get("interval") or "1s"))

    def variable(self, name):
        d, v = self.defs[name], self.values[name]
        values = v if isinstance(v, list) else [v]
        if d.get("multi") or d.get("includeAll"):
            if values == ["$__all"]:
                if d.get("allValue"):
                    return d["allValue"]
                values = self.options[name]
            return ",".join("'%s'" % x.replace("'", "''") for x in values)
        return values[0].replace("'", "''")

    def expand(self, sql, panel):
        ms = int(self.interval(panel))
        sql = re.sub(r"\$__interval_ms\b", str(ms), sql)
        sql = re.sub(r"\$__interval\b", ms_text(ms), sql)
        sql = re.sub(r"\$__range_s\b", str(int(self.to - self.frm)), sql)
        sql = re.sub(r"\$\{?([a-zA-Z]\w*)\}?",
                     lambda m: self.variable(m.group(1)) if m.group(1) in self.defs else m.group(0), sql)

        def macro(m):
            name, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
            if name == "__timeFilter":
                return "%s BETWEEN '%s' AND '%s'" % (args[0], rfc3339(self.frm), rfc3339(self.to))
            if name == "__timeFrom":
                return "'%s'" % rfc3339(self.frm)
            if name == "__timeTo":
                return "'%s'" % rfc3339(self.to)
            if name in ("__timeGroup", "__timeGroupAlias"):
                secs = interval_ms(args[1].strip("'")) / 1000
                return "floor(extract(epoch from %s)/%g)*%g%s" % (
                    args[0], secs, secs, ' AS "time"' if name == "__timeGroupAlias" else "")
            raise ValueError("macro $%s" % name)
        return re.sub(r"\$(__\w+)\(([^)]*)\)", macro, sql)

    def query(self, sql):
        env = dict(os.environ, PGTZ="UTC", PGCLIENTENCODING="UTF8")
        cmd = [self.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
               "COPY (%s) TO STDOUT WITH (FORMAT csv, HEADER)" % sql]
        if self.dsn:
            cmd[1:1] = ["-d", self.dsn]
        out = subprocess.run(cmd, check=True, capture_output=True, env=env).stdout.decode("utf-8")
        rows = list(csv.reader(io.StringIO(out)))
        # a one-column NULL is an empty line, which csv reads as no fields
        return rows[0], [r or [""] * len(rows[0]) for r in rows[1:]]

    def data(self, title, ref=None):
        """A panel target's rows as dicts: numbers as floats, time as datetimes."""
        panel = self.panels[title]
        target = next(t for t in panel["targets"] if ref is None or t["refId"] == ref)
        cols, rows = self.query(self.expand(target["rawSql"], panel))
        out = []
        for r in rows:
            d = {}
            for c, v in zip(cols, r):
                if v == "":
                    d[c] = None
                elif c in ("time", "last_seen", "ordered_at", "logged_at") and re.match(r"^\d{4}-", v):
                    d[c] = parse_time(v)
                elif c == "time":
                    d[c] = datetime.datetime.fromtimestamp(float(v), datetime.timezone.utc)
                else:
                    try:
                        d[c] = float(v)
                    except ValueError:
                        d[c] = v
            out.append(d)
        return out


def value(fmt, v):
    return "–" if v is None else fmt.format(v)


def series(rows, key, value):
    """{label: (times, values)} from long-format rows."""
    out = {}
    for r in rows:
        t, v = out.setdefault(r.get(key, ""), ([], []))
        t.append(r["time"])
        v.append(r[value] if r[value] is not None else float("nan"))
    return out


def time_axis(ax):
    import matplotlib.dates as mdates
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=7))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(True, alpha=0.3)


def plot_sensors(b, plt, out, title):
    from matplotlib.gridspec import GridSpec
    head = "  ·  ".join("%s: %s" % (t, value(fmt, b.data(t)[0][c])) for t, c, fmt in (
        ("Devices active", "devices active", "{:,.0f}"), ("Readings/s", "readings/s", "{:,.0f}"),
        ("Average speed", "average speed", "{:.1f} km/h"), ("Low battery", "low battery", "{:,.0f}"),
        ("Average temperature", "average temperature", "{:.1f} °C"),
        ("Average signal", "average signal", "{:.0f} dBm")))
    latest = b.data("Where the devices are", "A")
    tracks = b.data("Where the devices are", "B")
    fig = plt.figure(figsize=(14, 9))
    gs = GridSpec(3, 3, figure=fig, width_ratios=[1.05, 1, 1.25])
    ax = fig.add_subplot(gs[:, 0])
    sc = ax.scatter([r["longitude"] for r in latest], [r["latitude"] for r in latest],
                    c=[r["battery_pct"] for r in latest], cmap="RdYlGn", vmin=0, vmax=100, s=14)
    fig.colorbar(sc, ax=ax, label="battery %", shrink=0.6)
    lat0 = sum(r["latitude"] for r in latest) / max(len(latest), 1)
    import math
    ax.set_aspect(1 / math.cos(math.radians(lat0)))
    ax.set_title("Latest positions of %d devices (colour: battery)" % len(latest), loc="left", fontsize=10)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.grid(True, alpha=0.3)
    # the map's track layer: every reading of the chosen devices, blue (oldest) to red (newest);
    # on the fleet's scale a track is a dot, so the first device's is drawn zoomed in
    devices = sorted({r["device_id"] for r in tracks})
    for r in tracks:
        ax.plot(r["longitude"], r["latitude"], marker="o", mfc="none", mec="tab:blue", ms=7)
    zoom = fig.add_subplot(gs[0:2, 1])
    pts = [r for r in tracks if r["device_id"] == devices[0]] if devices else []
    zoom.plot([p["longitude"] for p in pts], [p["latitude"] for p in pts], color="0.8", lw=0.8, zorder=1)
    zoom.scatter([p["longitude"] for p in pts], [p["latitude"] for p in pts],
                 c=[p["epoch"] for p in pts], cmap="coolwarm", s=14, zorder=2)
    if pts:
        zoom.annotate("latest", (pts[-1]["longitude"], pts[-1]["latitude"]), fontsize=8,
                      xytext=(5, 5), textcoords="offset points")
    zoom.set_aspect(1 / math.cos(math.radians(lat0)))
    zoom.set_title("%s: %d readings, blue → red" % (devices[0] if devices else "-", len(pts)),
                   loc="left", fontsize=10)
    zoom.grid(True, alpha=0.3)
    zoom.ticklabel_format(useOffset=False)
    zoom.tick_params(labelsize=7)
    for i, (t, col, unit) in enumerate((("Battery", "battery", "%"), ("Temperature", "temperature", "°C"),
                                        ("Signal", "signal", "dBm"))):
        a = fig.add_subplot(gs[i, 2])
        for d, (ts, vs) in sorted(series(b.data(t), "device_id", col).items()):
            a.plot(ts, vs, label=d)
        a.set_title("%s (%s)" % (t, unit), loc="left", fontsize=10)
        a.legend(fontsize=7, loc="upper left")
        time_axis(a)
    rps = b.data("Readings per second")
    a = fig.add_subplot(gs[2, 1])
    a.bar([r["time"] for r in rps], [r["readings/s"] for r in rps], align="edge",
          width=b.interval(b.panels["Readings per second"]) / 86400000 * 0.9, color="tab:blue")
    a.set_title("Readings per second (whole fleet)", loc="left", fontsize=10)
    time_axis(a)
    fig.suptitle(title + "\n" + head, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def plot_orders(b, plt, out, title):
    from matplotlib.gridspec import GridSpec
    s = b.data("Orders in the time range")[0]
    head = "orders %s  ·  revenue \\$%s  ·  average order \\$%s  ·  units %s  ·  customers %s  ·  cancelled %.1f %%" % (
        "{:,.0f}".format(s["orders"]), "{:,.0f}".format(s["revenue"]), "{:,.2f}".format(s["average order"]),
        "{:,.0f}".format(s["units"]), "{:,.0f}".format(s["customers"]), s["cancelled"] or 0)
    fig = plt.figure(figsize=(14, 9))
    gs = GridSpec(3, 3, figure=fig)
    a = fig.add_subplot(gs[0, 0:2])
    pm = b.data("Orders and revenue per minute")
    a.bar([r["time"] for r in pm], [r["orders/min"] for r in pm], color="tab:blue", alpha=0.6, align="edge",
          width=b.interval(b.panels["Orders and revenue per minute"]) / 86400000 * 0.9, label="orders/min")
    a.set_ylabel("orders / min")
    a2 = a.twinx()
    half = datetime.timedelta(milliseconds=b.interval(b.panels["Orders and revenue per minute"]) / 2)
    a2.plot([r["time"] + half for r in pm], [r["revenue/min"] for r in pm], color="tab:green", label="revenue/min")
    a2.set_ylabel("revenue \\$ / min")
    a2.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: "{:,.0f}".format(v)))
    a.set_title("Orders and revenue per minute", loc="left", fontsize=10)
    a.legend(loc="upper left", fontsize=8)
    a2.legend(loc="upper right", fontsize=8)
    time_axis(a)
    st = b.data("By status")
    a = fig.add_subplot(gs[0, 2])
    a.pie([r["orders"] for r in st], labels=[r["status"] for r in st], autopct="%1.0f%%",
          wedgeprops={"width": 0.45}, textprops={"fontsize": 8})
    a.set_title("By status", loc="left", fontsize=10)
    a = fig.add_subplot(gs[1, 0:2])
    for region, (ts, vs) in sorted(series(b.data("Average order value by region"), "region",
                                          "average order").items()):
        a.plot(ts, vs, label=region)
    a.set_title("Average order value by region (\\$)", loc="left", fontsize=10)
    a.legend(fontsize=7, ncol=3, loc="upper left")
    time_axis(a)
    rg = b.data("By region")
    a = fig.add_subplot(gs[1, 2])
    a.bar([r["region"] for r in rg], [r["revenue"] for r in rg], color="tab:green")
    a.set_title("Revenue by region (\\$)", loc="left", fontsize=10)
    a.tick_params(axis="x", labelrotation=30, labelsize=8)
    a.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: "{:,.0f}".format(v)))
    tp = b.data("Top products")
    a = fig.add_subplot(gs[2, 0])
    a.barh([r["product"] for r in tp][::-1], [r["revenue"] for r in tp][::-1], color="tab:purple")
    a.set_title("Top products by revenue (\\$)", loc="left", fontsize=10)
    a.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: "{:,.1f}M".format(v / 1e6)))
    ro = b.data("Recent orders")[:9]
    a = fig.add_subplot(gs[2, 1:3])
    a.axis("off")
    cols = ["ordered_at", "order_id", "product", "quantity", "total", "status", "region"]
    cells = [[r["ordered_at"].strftime("%H:%M:%S.%f")[:-3] if c == "ordered_at" else
              ("%.0f" % r[c] if c == "quantity" else ("%.2f" % r[c] if c == "total" else r[c]))
              for c in cols] for r in ro]
    t = a.table(cellText=cells, colLabels=cols, loc="upper center", cellLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(7.5)
    t.scale(1, 1.25)
    a.set_title("Recent orders", loc="left", fontsize=10)
    fig.suptitle(title + "\n" + head, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def plot_weblogs(b, plt, out, title):
    from matplotlib.gridspec import GridSpec
    s = b.data("Requests in the time range")[0]
    head = "requests %s  ·  %.0f req/s  ·  5xx %.2f %%  ·  4xx %.2f %%  ·  mean latency %.0f ms  ·  %s clients" % (
        "{:,.0f}".format(s["requests"]), s["requests/s"], s["5xx"], s["4xx"], s["mean latency"],
        "{:,.0f}".format(s["clients"]))
    fig = plt.figure(figsize=(14, 10))
    gs = GridSpec(3, 2, figure=fig)
    a = fig.add_subplot(gs[0, 0])
    rows = b.data("Requests per second by status class")
    width = b.interval(b.panels["Requests per second by status class"]) / 86400000 * 0.9
    bottom = {}
    for cls, color in (("2xx", "tab:green"), ("3xx", "tab:blue"), ("4xx", "tab:orange"), ("5xx", "tab:red")):
        pts = [r for r in rows if r["status_class"] == cls]
        base = [bottom.get(r["time"], 0) for r in pts]
        a.bar([r["time"] for r in pts], [r["requests/s"] for r in pts], width=width, bottom=base, align="edge",
              color=color, label=cls)
        for r, y0 in zip(pts, base):
            bottom[r["time"]] = y0 + r["requests/s"]
    a.set_title("Requests per second by status class", loc="left", fontsize=10)
    a.legend(fontsize=8, ncol=4, loc="upper left")
    time_axis(a)
    a = fig.add_subplot(gs[0, 1])
    er = b.data("Error rate")
    a.plot([r["time"] for r in er], [r["5xx"] for r in er], color="tab:red", label="5xx")
    a.plot([r["time"] for r in er], [r["4xx"] for r in er], color="tab:orange", label="4xx")
    a.set_title("Error rate (% of requests)", loc="left", fontsize=10)
    a.legend(fontsize=8)
    time_axis(a)
    for i, (t, col, unit) in enumerate((("Latency anomalies", "mean latency", "ms"),
                                        ("Error-rate anomalies", "5xx", "%"))):
        a = fig.add_subplot(gs[1, i])
        rows = b.data(t)
        ts = [r["time"] for r in rows]
        a.plot(ts, [r[col] for r in rows], color="tab:blue", label=col)
        a.plot(ts, [r["mean + 3σ"] if r["mean + 3σ"] is not None else float("nan") for r in rows],
               color="tab:orange", linestyle="--", label="mean + 3σ of the previous 60 intervals")
        an = [r for r in rows if r["anomaly"] is not None]
        a.scatter([r["time"] for r in an], [r["anomaly"] for r in an], color="red", s=40, zorder=3,
                  label="anomaly (%d)" % len(an))
        a.set_yscale("log")
        a.set_title("%s (%s)" % (t, unit), loc="left", fontsize=10)
        a.legend(fontsize=7, loc="upper left")
        time_axis(a)
    a = fig.add_subplot(gs[2, 0])
    p = b.data("Latency p50 and p95 by path")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (path, (ts, vs)) in enumerate(sorted(series(p, "endpoint", "p95").items())):
        a.plot(ts, vs, color=colors[i % len(colors)], label=path)
        a.plot(ts, series(p, "endpoint", "p50")[path][1], color=colors[i % len(colors)], linestyle=":")
    a.set_title("Latency p95 (solid) and p50 (dotted) by path, ms", loc="left", fontsize=10)
    a.legend(fontsize=6.5, ncol=2, loc="upper left")
    time_axis(a)
    a = fig.add_subplot(gs[2, 1])
    a.axis("off")
    cols = ["path", "requests", "5xx %", "mean", "p50", "p95", "p99"]
    cells = [[r["path"], "{:,.0f}".format(r["requests"])] + ["%.1f" % r[c] for c in cols[2:]]
             for r in b.data("Paths")]
    t = a.table(cellText=cells, colLabels=cols, loc="upper center", cellLoc="right")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1, 1.3)
    a.set_title("Paths (latency ms, from the warehouse's histogram)", loc="left", fontsize=10)
    fig.suptitle(title + "\n" + head, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def plot_board(path, psql, dsn, seconds, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    b = Board(path, psql, dsn, seconds)
    kind = b.dash["uid"].replace("zerobus-", "")
    draw = {"sensors": plot_sensors, "orders": plot_orders, "weblogs": plot_weblogs}.get(kind)
    if draw is None:
        sys.exit("--board: no picture for the dashboard %s (sensors, orders, weblogs)" % b.dash["uid"])
    draw(b, plt, out, title or b.dash["title"])
    print("%s: the data of %s over the last %d s" % (out, path, seconds))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--csv", help="read this CSV (zb_metrics_history with a header) instead of a server")
    src.add_argument("--dsn", help="libpq connection string for psql (default: the PG* environment)")
    ap.add_argument("--board", help="a dashboard's JSON (sensors, orders, weblogs): plot its panels' data")
    ap.add_argument("--psql", default="psql", help="the psql program (default: psql on PATH)")
    ap.add_argument("--stream", help="only this stream (default: every stream)")
    ap.add_argument("--seconds", type=int, help="only the last N seconds (the ring holds about 17 minutes)")
    ap.add_argument("--title", help="the picture's title")
    ap.add_argument("-o", "--output", default="zerobus-metrics.png", help="the PNG to write")
    args = ap.parse_args()

    if args.board:
        try:
            plot_board(args.board, args.psql, args.dsn, args.seconds or 900, args.output, args.title)
        except subprocess.CalledProcessError as e:
            sys.exit("psql failed: %s" % e.stderr.decode("utf-8", "replace").strip())
        return
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
    plot(by, args.output, args.title or "zerobus_fdw: zb_metrics_history")
    print("%s: %d samples of %s" % (args.output, sum(len(s["time"]) for s in by.values()),
                                   ", ".join(sorted(by))))


if __name__ == "__main__":
    main()
