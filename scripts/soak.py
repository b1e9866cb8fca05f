#!/usr/bin/env python3
"""Soak test (`make soak`): the mixed lab scenario for a long time (default 600 s), watched from
outside. Every 10 s it samples the daemon's resident memory and its counters; at the end it
checks that memory did not grow beyond warm-up, that no counter ever went backwards, and that the
daemon logged no error. Exit status 0 when all hold; a JSON summary on stdout either way.

Usage: scripts/soak.py [--seconds N] [--bin target/ci/scrubber] [--warmup S] [--max-growth-kib K]
"""
import argparse, json, os, subprocess, sys, threading, time

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=int, default=600)
p.add_argument("--bin", default="target/ci/scrubber")
p.add_argument("--ctl", default="target/ci/scrubctl")
p.add_argument("--warmup", type=int, default=60)
p.add_argument("--max-growth-kib", type=int, default=4096)
p.add_argument("--id", default="soak")
a = p.parse_args()

state_dir = f"/run/scrubber-lab/{a.id}"
run = subprocess.Popen(
    [a.bin, "lab", "run", "--scenario", "mixed", "--seconds", str(a.seconds), "--id", a.id, "--json"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

def daemon_pid():
    try:
        with open(f"{state_dir}/state.json") as f:
            return json.load(f)["daemon"]["pid"]
    except Exception:
        return None

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def flatten(prefix, v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            flatten(f"{prefix}.{k}" if prefix else k, x, out)
    elif isinstance(v, (int,)) and not isinstance(v, bool):
        out[prefix] = v

def counters():
    r = subprocess.run([a.ctl, "-s", f"{state_dir}/control.sock", "stats", "--json"],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return None
    s = json.loads(r.stdout)
    out = {}
    # Totals and per-worker counters only: rates, gauges (table lengths) and CPU ratios move both ways.
    flatten("totals", {k: v for k, v in s["totals"].items() if k != "tables"}, out)
    for name, t in s["totals"]["tables"].items():
        out[f"tables.{name}.evictions"] = t["evictions"]
    for i, w in enumerate(s["workers"]):
        for k in ("rx", "tx_egress", "tx_ingress", "tx_ring_full", "cpu_ns"):
            out[f"worker{i}.{k}"] = w[k]
    flatten("xdp", s["xdp"], out)
    return out

# The report is read on a thread: a long run's report outgrows the pipe's buffer, and the run
# cannot exit before it is written.
report_parts = []
reader = threading.Thread(target=lambda: report_parts.append(run.stdout.read()), daemon=True)
reader.start()

# The lab removes its state directory (and the daemon's log) when the run ends, so the log is
# read as it grows.
log_offset, log_chunks = 0, []

def read_log():
    global log_offset
    try:
        with open(f"{state_dir}/daemon.log", errors="replace") as f:
            f.seek(log_offset)
            chunk = f.read()
            log_offset = f.tell()
            log_chunks.append(chunk)
    except OSError:
        pass

samples, backwards, pid = [], [], None
start = time.time()
last = None
while run.poll() is None:
    time.sleep(10)
    read_log()
    pid = pid or daemon_pid()
    if not pid or not os.path.exists(f"/proc/{pid}"):
        continue
    c = counters()
    if c is None:
        continue
    t = round(time.time() - start)
    samples.append({"t": t, "rss_kib": rss_kib(pid)})
    if last:
        backwards += [{"t": t, "counter": k, "from": last[k], "to": v} for k, v in c.items() if k in last and v < last[k]]
    last = c

reader.join(timeout=30)
report_text = "".join(report_parts)
log = "".join(log_chunks)
errors = [l for l in log.splitlines() if " ERROR " in l or '"level":"ERROR"' in l]
warm = [s["rss_kib"] for s in samples if s["t"] >= a.warmup]
growth = (max(warm) - warm[0]) if len(warm) >= 2 else 0
result = {
    "seconds": a.seconds,
    "samples": samples,
    "rss_growth_after_warmup_kib": growth,
    "counters_backwards": backwards,
    "log_bytes_read": len(log),
    "log_errors": errors[:20],
    "lab_report": json.loads(report_text) if report_text.strip().startswith("{") else None,
}
ok = run.returncode == 0 and len(log) > 0 and len(warm) >= 2 and growth <= a.max_growth_kib and not backwards and not errors
result["ok"] = ok
print(json.dumps(result, indent=2))
sys.exit(0 if ok else 1)
