"""effcam-serve's life: start-up errors, overload, graceful drain, pre-forked workers.

  startup   bad flags and a bad model file: one line on stderr and a non-zero exit before the port opens
  bound     the printed bound holds for an image of --max-pixels with pictures at its size; larger ones get 400
  overload  64 concurrent clients against --queue 4: every answer 200 or 503 (with Retry-After), none past the
            timeout, peak RSS under the printed bound
  drain     SIGTERM while 8 requests are in flight: all 8 answered 200, exit status 0
  workers   --workers 2: kill -9 one worker, the service keeps answering and a new worker appears; the weights'
            Pss per worker is about half the file size (the page cache holds one copy)
"""
import concurrent.futures
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib as s  # noqa: E402
from servelib import t  # noqa: E402


def photo():
    return s.read(os.path.join(t.FOOD101, "samples", "bibimbap.png"))


def startup():
    s.require_built()
    model = s.food101_model("fp16")
    broken = os.path.join(t.TESTDATA, "effcam", "serve_broken.effcam")
    with open(model, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF  # a flipped byte in the weights: the checksum names it
    with open(broken, "wb") as f:
        f.write(data)
    cases = [
        ([], "no --model"),
        (["--model", model, "--sessions", "0"], "zero sessions"),
        (["--model", model, "--port", "70000"], "a port out of range"),
        (["--model", model, "--bogus"], "an unknown flag"),
        (["--model", model, "--cam-default", "sparkles"], "an unknown CAM method"),
        (["--model", model, "--cam-layers", "no_such_layer"], "an unknown CAM layer"),
        (["--model", model, "--memory-budget", "1MiB"], "a memory budget below the arena's floor"),
        (["--model", model, "--memory-budget", "12.5MiB"], "a memory budget that is not a byte count"),
        (["--model", "a=" + model, "--model", "a=" + model], "two models with one name"),
        (["--model", "/nonexistent/model.effcam"], "a missing model file"),
        (["--model", broken], "a corrupt model file"),
        (["--model", model, "--host", "203.0.113.1"], "an address it cannot listen on"),
    ]
    for args, what in cases:
        result = subprocess.run([s.SERVE, "--port", "0"] + args, capture_output=True, text=True, timeout=60 * s.SLOW)
        first = result.stderr.strip().splitlines()[0] if result.stderr.strip() else ""
        t.check(result.returncode != 0 and first.startswith("effcam-serve: ") and "listening" not in result.stdout,
                f"{what}: exit {result.returncode} before listening, '{first}'")


def overload():
    s.require_built()
    model = s.food101_model("fp16")
    image = photo()
    timeout_ms = 4000 * s.SLOW
    with s.Server(f"food={model}", args=["--sessions", "1", "--queue", "4", "--timeout-ms", str(timeout_ms),
                                         "--connections", "80"]) as server:
        def client(_):
            started = time.monotonic()
            try:
                status, headers, _ = server.request("POST", "/predict?cam=gradcam", image,
                                                    {"Content-Type": "image/png"})
            except OSError as e:
                return "error " + str(e), time.monotonic() - started, {}
            return status, time.monotonic() - started, headers

        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            results = list(pool.map(client, range(64)))
        codes = [status for status, _, _ in results]
        slowest = max(seconds for _, seconds, _ in results)
        t.info(f"64 clients against --queue 4: {codes.count(200)} x 200, {codes.count(503)} x 503, slowest "
               f"{slowest:.2f} s")
        t.check(all(code in (200, 503) for code in codes), f"every answer is 200 or 503 ({set(map(str, codes))})")
        t.check(codes.count(200) >= 5, "the admitted requests (1 running + 4 waiting) are served")
        t.check(all("retry-after" in headers for status, _, headers in results if status == 503),
                "every 503 has Retry-After")
        t.check(slowest < timeout_ms / 1000 + 5 * s.SLOW, f"none hangs past the timeout ({slowest:.2f} s)")
        status, memory = server.json("GET", "/memory")
        if not t.SANITIZED:
            t.check(memory["peak_rss_bytes"] <= server.bound(),
                    f"peak RSS {memory['peak_rss_bytes']} <= the printed bound {server.bound()}")
        t.check(server.alive(), "still serving after the overload")


def bound():
    """The printed bound holds for a heavy request it admits: a noise PNG (the largest PNGs) of --max-pixels pixels
    with an overlay and a heatmap at its own size, inside --max-image-mib; one pixel row more is refused before
    decoding, and so is an image whose decoding would need more than --max-image-mib."""
    s.require_built()
    model = s.food101_model("fp16")
    rng = np.random.default_rng(7)
    side = 1400
    at_limit = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(at_limit, "PNG")
    over = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side + 1, side, 3), dtype=np.uint8)).save(over, "PNG")
    # Within --max-pixels, but its original-size pictures need more than 16 MiB.
    over_budget = io.BytesIO()
    Image.new("RGB", (1200, 1200), (40, 90, 200)).save(over_budget, "PNG")
    with s.Server(f"food={model}", args=["--sessions", "1", "--max-pixels", str(side * side),
                                         "--max-image-mib", "96", "--max-body", str(16 << 20)]) as server:
        status, _, _ = server.request("POST", "/predict?cam=gradcam&overlay=png&heatmap=png&overlay_size=original",
                                      at_limit.getvalue(), {"Content-Type": "image/png"})
        t.check(status == 200, f"an image of exactly --max-pixels with pictures at its size: 200 (got {status})")
        status, answer = server.json("POST", "/predict", over.getvalue(), {"Content-Type": "image/png"})
        t.check(status == 400 and "limit" in answer.get("error", ""),
                f"one row more than --max-pixels: 400 ({status}: {answer})")
        status, memory = server.json("GET", "/memory")
        t.info(f"peak RSS {memory['peak_rss_bytes']} against the bound {memory['bound_bytes']} (images term "
               f"{memory['images_bytes']})")
        if not t.SANITIZED:
            t.check(memory["peak_rss_bytes"] <= memory["bound_bytes"], "peak RSS <= the printed bound")
    with s.Server(f"food={model}", args=["--sessions", "1", "--max-image-mib", "16"]) as server:
        query = "/predict?cam=gradcam&overlay=png&heatmap=png&overlay_size=original"
        status, answer = server.json("POST", query, over_budget.getvalue(), {"Content-Type": "image/png"})
        t.check(status == 400 and "budget" in answer.get("error", ""),
                f"pictures needing more than --max-image-mib: 400 naming the budget ({status}: {answer})")
        status, answer = server.json("POST", "/predict?cam=gradcam&overlay=png", over_budget.getvalue(),
                                     {"Content-Type": "image/png"})
        t.check(status == 200, f"the same image with model-size pictures: 200 ({status}: {answer.get('error')})")


def drain():
    s.require_built()
    # EfficientNetV2-S with Grad-CAM on one session. The first request is slow (a 3000x3000 JPEG answered with an
    # original-size PNG overlay: seconds); the other 7 (300x300) queue behind it, so all 8 are inside at once
    # however loaded the machine is.
    model = s.s_model("fp16")
    photo = Image.open(t.test_images(300, 300, 1)[0]).convert("RGB")
    big = io.BytesIO()
    photo.resize((3000, 3000)).save(big, "JPEG", quality=90)
    small = io.BytesIO()
    photo.save(small, "JPEG", quality=90)
    server = s.Server(f"s={model}", args=["--sessions", "1", "--queue", "8", "--timeout-ms", str(60000 * s.SLOW),
                                          "--max-image-mib", "256"])  # the 9 MP overlay's budget
    with server:
        results = []
        lock = threading.Lock()

        def client(image, query):
            try:
                status, _, body = server.request("POST", "/predict?cam=gradcam&overlay=png" + query, image,
                                                 {"Content-Type": "image/jpeg"})
            except OSError as e:
                status, body = "error " + str(e), b""
            with lock:
                results.append(status)

        def in_flight():
            pool = server.json("GET", "/health")[1]["models"]["s"]
            return pool["busy"] + pool["waiting"]

        def wait_for(count):
            deadline = time.monotonic() + 30 * s.SLOW
            while in_flight() < count and time.monotonic() < deadline:
                time.sleep(0.01)
            return in_flight()

        threads = [threading.Thread(target=client, args=(big.getvalue(), "&overlay_size=original"))]
        threads[0].start()
        wait_for(1)
        threads += [threading.Thread(target=client, args=(small.getvalue(), "")) for _ in range(7)]
        for thread in threads[1:]:
            thread.start()
        # All 8 inside the server (running or queued), then ask it to stop.
        count = wait_for(8)
        t.check(count == 8, f"in flight at SIGTERM: {count} requests running or waiting")
        code = server.stop(signal.SIGTERM)
        for thread in threads:
            thread.join()
    t.check(results == [200] * 8, f"SIGTERM with 8 requests in flight: all answered 200 ({results})")
    t.check(code == 0, f"exit status 0 after the drain (got {code})")


def weights_pss(pid, model):
    """Pss and Rss of the model file's mappings in a process (bytes)."""
    pss = rss = 0
    current = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                current = line.rstrip().endswith(os.path.realpath(model))
            elif current and line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
            elif current and line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
    return pss, rss


def workers():
    s.require_built()
    model = s.s_model("fp16")
    image = s.read(s.jpeg_of(t.test_images(300, 300, 1)[0]))
    with s.Server(f"s={model}", args=["--workers", "2", "--sessions", "1"]) as server:
        def worker_pids():
            return [int(m.group(1)) for line in server.stdout if (m := re.match(r"worker \d+ started \(pid (\d+)\)", line))]

        deadline = time.monotonic() + 30 * s.SLOW
        while len(worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = worker_pids()
        t.check(len(pids) == 2, f"two workers started ({pids})")
        # Enough requests that both workers have run the model (the kernel spreads the accepts).
        for _ in range(12):
            status, _, _ = server.request("POST", "/predict", image, {"Content-Type": "image/jpeg"})
            t.check(status == 200, "a request to the workers: 200") if status != 200 else None
        file_bytes = os.path.getsize(model)
        figures = [weights_pss(pid, model) for pid in pids]
        for pid, (pss, rss) in zip(pids, figures):
            t.info(f"worker {pid}: weights Rss {rss} Pss {pss} bytes (file {file_bytes})")
        if all(rss > 0.9 * file_bytes for _, rss in figures):
            for pid, (pss, rss) in zip(pids, figures):
                t.check(0.4 * file_bytes <= pss <= 0.6 * file_bytes,
                        f"worker {pid}: weights Pss {pss} is about half the file ({file_bytes})")
        else:
            t.info("a worker has not touched all the weights yet: Pss not compared")
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        answered = 0
        for _ in range(10):
            status, _, _ = server.request("POST", "/predict", image, {"Content-Type": "image/jpeg"})
            answered += status == 200
        t.check(answered == 10, f"after kill -9 of worker {victim}: 10 of 10 requests answered 200 ({answered})")
        deadline = time.monotonic() + 30 * s.SLOW
        while len(worker_pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        t.check(len(worker_pids()) == 3 and worker_pids()[2] not in pids, f"a new worker appeared ({worker_pids()})")
        t.check(any(f"pid {victim}) killed by signal 9; restarting" in line for line in server.stderr),
                "the death is logged")
        code = server.stop()
        t.check(code == 0, f"exit status 0 after SIGTERM to the supervisor (got {code})")


if __name__ == "__main__":
    cases = {"startup": startup, "overload": overload, "bound": bound, "drain": drain, "workers": workers}
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(cases)}")
    cases[sys.argv[1]]()
    t.finish()
