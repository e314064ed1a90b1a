"""Plots of large runs: the report, the browser and the notebook, against their targets.

Measures, side by side in one run:

* **report writing**: ``write_report`` of a 10^6-entry log (2 keys) by Mímir now,
  against the report writer of commit 03eb08e (extracted with ``git archive`` and
  run with ``PYTHONPATH`` pointing at it) on a 10^5-entry log; each in a fresh
  subprocess, timing the call alone (Bokeh imported before), best of interleaved
  rounds. Target: at least 5x faster per entry.
* **report size**: of the 10^6-entry report. Target: at most 5 MB.
* **ready in the browser**: the report opened in headless Chromium, until BokehJS's
  document is idle (``Bokeh.documents[0].is_idle``, which BokehJS sets once every
  view has been drawn the first time; polled in the page every 5 ms and timed from
  the navigation start, ``performance.now()``). Target: within 3 s.
* **live frames**: ``mimir plot --file`` following a 10^7-entry log, which grows
  while it is read, zoomed now and then, in headless Chromium. Long tasks of the
  page's main thread are recorded with a ``PerformanceObserver`` for
  ``longtask`` entries (installed before the page's scripts run), and the longest
  gap between two animation frames too. Target: every frame under 100 ms.
* **notebook**: how long ``notebook_plot`` takes to return in a real kernel
  (nbclient), in a fresh kernel (Bokeh imported by the call) and once Bokeh is
  imported. Target: 0.5 s.

Usage: python benchmarks/bench_plot.py [--report-entries N] [--live-entries N]
       [--live-seconds S] [--rounds R] [--skip report|live|notebook]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "03eb08e"

#: Run in a subprocess: write a report of argv[1] to argv[2], print the seconds of the call.
_WRITE = """
import sys, time
import bokeh.embed, bokeh.plotting  # imported before timing, by both writers
from mimir.plot.server import write_report
started = time.perf_counter()
write_report(sys.argv[1], "iteration", ["loss", "accuracy"], sys.argv[2])
print(time.perf_counter() - started)
"""

#: Run in the page: resolves with performance.now() when the Bokeh document is idle.
_IDLE_JS = """
const done = arguments[arguments.length - 1];
const check = () => {
  if (window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle)
    done(performance.now());
  else setTimeout(check, 5);
};
check();
"""

#: Installed before any script of the page: records long tasks and animation-frame gaps.
_OBSERVE_JS = """
window.__longtasks = [];
window.__frames = {last: 0, worst: 0, at: 0, count: 0, over: 0};
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    window.__longtasks.push([entry.startTime, entry.duration]);
}).observe({type: "longtask", buffered: true});
const frame = (now) => {
  const f = window.__frames;
  // Gaps count from the first data drawn on (the page's load is reported on its own).
  const counted = window.__ready && f.last >= window.__ready;
  if (f.last && counted && document.visibilityState === "visible") {
    if (now - f.last > f.worst) { f.worst = now - f.last; f.at = f.last; }
    if (now - f.last > 100) f.over += 1;
  }
  f.last = now;
  f.count += 1;
  requestAnimationFrame(frame);
};
requestAnimationFrame(frame);
"""

#: Resolves once the page shows its first points, and notes when (window.__ready, in ms).
_FIRST_DATA_JS = """
const done = arguments[arguments.length - 1];
const check = () => {
  const s = window.Bokeh && Bokeh.documents.length &&
    Bokeh.documents[0].get_model_by_name("mimir:loss");
  if (s && s.get_length() > 0 && Bokeh.documents[0].is_idle) {
    window.__ready = performance.now();
    done(window.__ready);
  } else setTimeout(check, 5);
};
check();
"""

_ZOOM_JS = """
const [x0, x1] = [arguments[0], arguments[1]];
const doc = Bokeh.documents[0];
const events = Bokeh.require("core/bokeh_events");
const figures = [...doc.all_models].filter((m) => m.type === "Figure");
if (!figures.length) return 0;
figures[0].x_range.setv({start: x0, end: x1});
for (const fig of figures) fig.trigger_event(new events.RangesUpdate(x0, x1, null, null));
return figures.length;
"""


def write_log(path: str, count: int, start: int = 0) -> None:
    """``count`` entries of a noisy decaying loss and an accuracy, one spike in the loss."""
    with open(path, "a") as file:
        lines = []
        for i in range(start, start + count):
            loss = 1.0 / (1 + i / 1000) + 0.01 * math.sin(i * 12.9898)
            if i == (start + count) * 3 // 5:
                loss = 50.0
            lines.append(f'{{"iteration": {i}, "loss": {loss:.6f}, "accuracy": {1 - loss:.6f}}}\n')
            if len(lines) >= 100_000:
                file.write("".join(lines))
                lines = []
        file.write("".join(lines))


def baseline_tree(directory: str) -> str | None:
    """The mimir package of the baseline commit, extracted into ``directory``; None if not."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return None
    archive = subprocess.run(
        [git, "-C", str(ROOT), "archive", BASELINE_COMMIT, "mimir"], capture_output=True
    )
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", directory], input=archive.stdout, check=True)
    return directory


def time_report(pythonpath: str, log: str, output: str) -> float:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    done = subprocess.run(
        [sys.executable, "-c", _WRITE, log, output],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"report writer failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,800"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver_path))


def time_idle(driver, path: str) -> tuple[float, str]:
    """(ms from navigation start until the document is idle, BokehJS's own note of it)."""
    driver.get_log("browser")
    driver.set_script_timeout(120)
    driver.get(Path(path).as_uri())
    idle = driver.execute_async_script(_IDLE_JS)
    notes = [e["message"] for e in driver.get_log("browser") if "idle" in e["message"]]
    found = re.search(r"document idle at (\d+) ms", " ".join(notes))
    return idle, (f"{found.group(1)} ms" if found else "?")


def bench_reports(args, directory: str, driver) -> None:
    small = os.path.join(directory, "small.jsonl")
    large = os.path.join(directory, "large.jsonl")
    write_log(small, args.report_entries // 10)
    write_log(large, args.report_entries)
    os.makedirs(os.path.join(directory, "baseline"), exist_ok=True)
    baseline = baseline_tree(os.path.join(directory, "baseline"))
    now_report = os.path.join(directory, "now.html")
    old_report = os.path.join(directory, "old.html")
    now_times, old_times = [], []
    for _ in range(args.rounds):  # interleaved, best of each: the machine's load varies
        now_times.append(time_report(str(ROOT), large, now_report))
        if baseline is not None:
            old_times.append(time_report(baseline, small, old_report))
    now = min(now_times)
    per_now = now / args.report_entries * 1e6
    print(
        f"Report of {args.report_entries:,} entries x 2 keys (Mímir now), best of "
        f"{args.rounds}: {now:.2f} s, {per_now:.2f} us/entry, "
        f"{os.path.getsize(now_report) / 1e6:.2f} MB (target <= 5 MB)"
    )
    if baseline is None:
        print("  baseline: skipped (git or the repository's history is not available)")
    else:
        old = min(old_times)
        per_old = old / (args.report_entries // 10) * 1e6
        print(
            f"Report of {args.report_entries // 10:,} entries x 2 keys (baseline "
            f"{BASELINE_COMMIT}), best of {args.rounds}: {old:.2f} s, {per_old:.2f} us/entry, "
            f"{os.path.getsize(old_report) / 1e6:.2f} MB"
        )
        print(f"  per entry, Mímir now is {per_old / per_now:.1f}x faster (target >= 5x)")
    if driver is None:
        print("Ready in Chromium: skipped (no Chromium/chromedriver)")
        return
    idle, note = time_idle(driver, now_report)
    print(
        f"Report of {args.report_entries:,} entries idle in headless Chromium: "
        f"{idle / 1000:.2f} s after navigation start (BokehJS: {note}; target <= 3 s)"
    )
    if baseline is not None:
        idle, note = time_idle(driver, old_report)
        print(
            f"  baseline report of {args.report_entries // 10:,} entries: {idle / 1000:.2f} s "
            f"(BokehJS: {note})"
        )


def bench_live(args, directory: str, driver) -> None:
    if driver is None:
        print("Live frames: skipped (no Chromium/chromedriver)")
        return
    log = os.path.join(directory, "live.jsonl")
    started = time.perf_counter()
    write_log(log, args.live_entries)
    print(
        f"Live: wrote a {args.live_entries:,}-entry log in {time.perf_counter() - started:.0f} s"
        f" ({os.path.getsize(log) / 1e6:.0f} MB)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mimir.cli.plot",
            "iteration",
            "loss",
            "accuracy",
            "--file",
            log,
            "--port",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stop = threading.Event()
    grown = [args.live_entries]

    def grow() -> None:  # the run goes on while it is plotted
        while not stop.wait(0.1):
            write_log(log, 2000, grown[0])
            grown[0] += 2000

    try:
        line = server.stdout.readline()
        url = re.search(r"(http://\S+/)", line).group(1)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _OBSERVE_JS})
        writer = threading.Thread(target=grow, daemon=True)
        writer.start()
        driver.get(url)
        driver.set_script_timeout(120)
        driver.execute_async_script(_FIRST_DATA_JS)
        started = time.monotonic()
        deadline = started + args.live_seconds
        zooms = 0
        caught_up = None
        while time.monotonic() < deadline:
            time.sleep(1.0)
            status = driver.execute_script(
                "const d = window.Bokeh && Bokeh.documents.length &&"
                " Bokeh.documents[0].get_model_by_name('mimir:status');"
                "return d ? d.text : '';"
            )
            found = re.search(r"([\d,]+) entries from", status)
            entries = int(found.group(1).replace(",", "")) if found else 0
            shown = min(entries, grown[0])
            if caught_up is None and entries >= args.live_entries:
                caught_up = time.monotonic() - started
            zooms += 1
            if zooms % 3 == 0 and shown > 0:
                center = shown * (zooms % 7) / 7
                driver.execute_script(_ZOOM_JS, center, center + shown / 50)
        tasks = driver.execute_script("return window.__longtasks")
        frames = driver.execute_script("return window.__frames")
        ready = driver.execute_script("return window.__ready || 0")
    finally:
        stop.set()
        server.terminate()
        server.wait(30)
    loading = [d for start, d in tasks if start <= ready]
    over = [(start, d) for start, d in tasks if start > ready and d > 100]
    tasks = [d for start, d in tasks if start > ready]
    worst = max(tasks, default=0.0)
    print(
        f"  loading the page: {max(loading, default=0):.0f} ms longest task until the first "
        f"data was drawn at {ready / 1000:.1f} s"
    )
    print(
        f"Live plot of a {args.live_entries:,}-entry log growing by 20,000 entries/s, "
        f"{args.live_seconds:.0f} s in headless Chromium with a zoom every 3 s:"
    )
    print(
        f"  all entries shown after {caught_up:.0f} s"
        if caught_up
        else "  the plot had not shown every entry by the end"
    )
    print(
        f"  long tasks (> 50 ms): {len(tasks)}, longest {worst:.0f} ms; "
        f"{sum(t > 100 for t in tasks)} over 100 ms (target: none)"
    )
    for start, duration in over:
        print(f"    {duration:.0f} ms at {(start - ready) / 1000:.1f} s after the first data")
    print(
        f"  animation frames: {frames['count']:,}; after the first data, {frames['over']} gaps"
        f" over 100 ms, the longest {frames['worst']:.0f} ms at"
        f" {(frames['at'] - ready) / 1000:.1f} s"
    )
    print(
        f"  (load average of the machine at the end: {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores)"
    )


NOTEBOOK_CELLS = [
    "import time\nimport mimir.plot\nstarted = time.monotonic()\n"
    "plot = mimir.plot.notebook_plot('iteration', 'loss', address='tcp://127.0.0.1:1')\n"
    "print(time.monotonic() - started)",
    "import bokeh.plotting\nstarted = time.monotonic()\n"
    "again = mimir.plot.notebook_plot('iteration', 'loss', address='tcp://127.0.0.1:1')\n"
    "print(time.monotonic() - started)\nplot.stop()\nagain.stop()",
]


def bench_notebook() -> None:
    try:
        import nbclient
        import nbformat
    except ImportError:
        print("Notebook: skipped (needs nbclient and nbformat)")
        return
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(cell) for cell in NOTEBOOK_CELLS]
    client = nbclient.NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    cold, warm = (
        float("".join(o.get("text", "") for o in cell.outputs).split()[0])
        for cell in notebook.cells
    )
    print(
        f"notebook_plot returns after {cold:.2f} s in a fresh kernel (Bokeh imported by the "
        f"call), {warm:.2f} s once Bokeh is imported (target 0.5 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report-entries", type=int, default=1_000_000)
    parser.add_argument("--live-entries", type=int, default=10_000_000)
    parser.add_argument("--live-seconds", type=float, default=90.0)
    parser.add_argument("--rounds", type=int, default=3, help="report writing rounds")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["report", "live", "notebook"]
    )
    args = parser.parse_args()
    try:
        driver = chromium()
    except Exception as error:  # selenium missing or Chromium not starting
        print(f"(no browser: {error})")
        driver = None
    try:
        with tempfile.TemporaryDirectory() as directory:
            if "report" not in args.skip:
                bench_reports(args, directory, driver)
            if "live" not in args.skip:
                bench_live(args, directory, driver)
        if "notebook" not in args.skip:
            bench_notebook()
    finally:
        if driver is not None:
            driver.quit()


if __name__ == "__main__":
    main()
