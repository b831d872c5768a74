#!/usr/bin/python3
"""Load test of effcam-serve: N requests from C concurrent keep-alive clients, a mix of /predict and
/predict?cam=gradcam&overlay=png, with JPEG uploads of the generated EfficientNetV2-S (fp16, 300x300).

    /usr/bin/python3 bench/serve_load.py [--requests 10000] [--clients 4] [--sessions 1,2] [--build DIR]
                                         [--baseline-images 30] [--json OUT]

For each --sessions value it starts effcam-serve --sessions S --threads-per-session 1 on a free loopback port and
reports: errors (any answer but 200), throughput, median /predict and /predict+CAM latency, RSS after the first 200
answers and after the last (the flat-memory bar: within 1 MiB), peak RSS (VmHWM) against the printed bound and
64 MiB + 12 MiB per extra session. Then the throughput ratio of the sessions given (2 vs 1: >= 1.8), and the
median /predict latency against the same file's decode + preprocess + forward inside one warm effcam-predict
process (>= 1.05 fails the bar). The server's figures are read from /proc/PID/status, not asked over HTTP.
"""
import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "serve"))
MIB = 1 << 20


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_load(server, uploads, requests, clients, flat_after=200):
    """Sends `requests` requests from `clients` keep-alive connections; returns the figures."""
    pid = server.process.pid
    lock = threading.Lock()
    next_index = [0]
    done = [0]
    errors = []
    latency = {"predict": [], "cam": []}
    server_ms = []  # the server's own decode + preprocess + forward of each /predict (its timing_ms)
    rss_after_first = [None]

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        try:
            while True:
                with lock:
                    index = next_index[0]
                    next_index[0] += 1
                if index >= requests:
                    return
                kind = "cam" if index % 2 else "predict"
                path = "/predict?cam=gradcam&overlay=png" if kind == "cam" else "/predict"
                body = uploads[index % len(uploads)]
                started = time.perf_counter()
                try:
                    connection.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
                    response = connection.getresponse()
                    data = response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as e:
                    status, data = f"{type(e).__name__}: {e}", b""
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                seconds = time.perf_counter() - started
                with lock:
                    if status != 200:
                        errors.append((index, status, data[:200]))
                    latency[kind].append(seconds)
                    if status == 200 and kind == "predict":
                        timing = json.loads(data)["timing_ms"]
                        server_ms.append(timing["decode"] + timing["preprocess"] + timing["forward"])
                    done[0] += 1
                    if done[0] == flat_after:
                        rss_after_first[0] = proc_status(pid, "VmRSS")
        finally:
            connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "requests": requests,
        "clients": clients,
        "errors": len(errors),
        "first_errors": [str(e) for e in errors[:5]],
        "seconds": elapsed,
        "requests_per_s": requests / elapsed,
        "median_predict_ms": 1000 * statistics.median(latency["predict"]) if latency["predict"] else None,
        "median_cam_ms": 1000 * statistics.median(latency["cam"]) if latency["cam"] else None,
        "median_server_predict_ms": statistics.median(server_ms) if server_ms else None,
        "rss_after_first_bytes": rss_after_first[0],
        "rss_after_last_bytes": proc_status(pid, "VmRSS"),
        "peak_rss_bytes": proc_status(pid, "VmHWM"),
        "bound_bytes": server.bound(),
    }


def warm_baseline(model, image, count):
    """Median decode + preprocess + forward of `image` in one warm effcam-predict process (the first, cold, left
    out), in ms: the same code path /predict runs, without HTTP."""
    import servelib as s
    result = subprocess.run([s.t.PREDICT, "--model", model, "--json", "--threads", "1"] + [image] * (count + 1),
                            capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in result.stdout.splitlines()][1:]
    return statistics.median(r["timing_ms"]["decode"] + r["timing_ms"]["preprocess"] + r["timing_ms"]["forward"]
                             for r in records)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sessions", default="1,2")
    parser.add_argument("--build", help="the build folder (default: build/ beside bench/)")
    parser.add_argument("--baseline-images", type=int, default=30)
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--latency-only", action="store_true", help="only the latency bar (no load runs)")
    args = parser.parse_args()
    if args.build:
        os.environ["EFFCAM_BINARY_DIR"] = os.path.abspath(args.build)
    import servelib as s
    t = s.t
    model = s.s_model("fp16")
    images = [s.jpeg_of(p) for p in t.test_images(300, 300, 8)]
    uploads = [s.read(p) for p in images]
    print(f"CPU: {cpu_model()}; model {model}; {len(uploads)} JPEG uploads of 300x300; " +
          ("the latency bar only" if args.latency_only else
           f"{args.requests} requests from {args.clients} keep-alive clients, half /predict, half "
           f"/predict?cam=gradcam&overlay=png"), flush=True)
    report = {"cpu": cpu_model(), "runs": {}}
    failed = []
    for sessions in [] if args.latency_only else [int(x) for x in args.sessions.split(",")]:
        with s.Server(f"s={model}", args=["--sessions", str(sessions), "--threads-per-session", "1",
                                          "--queue", str(2 * args.clients)]) as server:
            figures = run_load(server, uploads, args.requests, args.clients)
            code = server.stop()
        report["runs"][sessions] = figures
        drift = figures["rss_after_last_bytes"] - (figures["rss_after_first_bytes"] or 0)
        limit = 64 * MIB + 12 * MIB * (sessions - 1)
        print(f"--sessions {sessions}: {figures['requests']} requests in {figures['seconds']:.1f} s = "
              f"{figures['requests_per_s']:.2f}/s, {figures['errors']} errors; median /predict "
              f"{figures['median_predict_ms']:.1f} ms, /predict+CAM+overlay {figures['median_cam_ms']:.1f} ms; RSS "
              f"after 200 {figures['rss_after_first_bytes'] / MIB:.2f} MiB, after the last "
              f"{figures['rss_after_last_bytes'] / MIB:.2f} MiB (drift {drift / 1024:.0f} KiB); peak "
              f"{figures['peak_rss_bytes'] / MIB:.2f} MiB, printed bound {figures['bound_bytes'] / MIB:.2f} MiB; "
              f"exit {code}", flush=True)
        if figures["errors"]:
            failed.append(f"sessions {sessions}: {figures['errors']} errors {figures['first_errors']}")
        if abs(drift) > MIB:
            failed.append(f"sessions {sessions}: RSS drift {drift} bytes > 1 MiB")
        if figures["peak_rss_bytes"] > figures["bound_bytes"]:
            failed.append(f"sessions {sessions}: peak RSS over the printed bound")
        if figures["peak_rss_bytes"] > limit:
            failed.append(f"sessions {sessions}: peak RSS {figures['peak_rss_bytes']} over {limit}")
        if code != 0:
            failed.append(f"sessions {sessions}: exit status {code}")
    runs = report["runs"]
    if 1 in runs and 2 in runs:
        ratio = runs[2]["requests_per_s"] / runs[1]["requests_per_s"]
        report["throughput_ratio_2_vs_1"] = ratio
        print(f"throughput 2 sessions / 1 session: {ratio:.2f}x (bar >= 1.8x)", flush=True)
        if ratio < 1.8:
            failed.append(f"throughput ratio {ratio:.2f} < 1.8")
    if 1 in runs or args.latency_only:
        baseline = warm_baseline(model, images[0], args.baseline_images)
        # The latency bar compares like with like: one request at a time, so that the clients do not queue.
        with s.Server(f"s={model}", args=["--sessions", "1", "--threads-per-session", "1"]) as server:
            single = run_load(server, [uploads[0]] * 2, 2 * args.baseline_images, 1, flat_after=1)
        ratio = single["median_predict_ms"] / baseline
        report["latency"] = {"median_predict_ms": single["median_predict_ms"], "warm_decode_forward_ms": baseline,
                             "ratio": ratio}
        print(f"median /predict latency, one client: {single['median_predict_ms']:.1f} ms; effcam-predict's warm "
              f"decode + preprocess + forward of the same file: {baseline:.1f} ms; ratio {ratio:.3f} (bar <= 1.05); "
              f"the server's own decode + preprocess + forward in those requests: "
              f"{single['median_server_predict_ms']:.1f} ms (latency / that: "
              f"{single['median_predict_ms'] / single['median_server_predict_ms']:.3f})", flush=True)
        if ratio > 1.05:
            failed.append(f"latency ratio {ratio:.3f} > 1.05")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print("bars not met: " + "; ".join(failed) if failed else "all bars met", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
