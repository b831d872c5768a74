"""effcam-serve's memory bars under load, reduced from bench/serve_load.py (10,000 requests) to seconds: 260
requests from 4 keep-alive clients, half /predict and half /predict?cam=gradcam&overlay=png, JPEG uploads of the
generated EfficientNetV2-S fp16 at 300x300, --sessions 1: no errors, RSS after the last answer within 1 MiB of RSS
after the first 200, peak RSS (VmHWM) <= the printed bound and <= 64 MiB. Plain build only (sanitizers' shadow
memory makes the figures meaningless).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench"))
import servelib as s  # noqa: E402
from servelib import t  # noqa: E402
import serve_load  # noqa: E402

MIB = 1 << 20


def main():
    s.require_built()
    model = s.s_model("fp16")
    uploads = [s.read(s.jpeg_of(p)) for p in t.test_images(300, 300, 4)]
    with s.Server(f"s={model}", args=["--sessions", "1", "--queue", "8"]) as server:
        figures = serve_load.run_load(server, uploads, requests=260, clients=4)
        code = server.stop()
    drift = figures["rss_after_last_bytes"] - figures["rss_after_first_bytes"]
    t.info(f"{figures['requests']} requests at {figures['requests_per_s']:.2f}/s; RSS after 200 "
           f"{figures['rss_after_first_bytes']} after the last {figures['rss_after_last_bytes']}; peak "
           f"{figures['peak_rss_bytes']}, bound {figures['bound_bytes']}")
    t.check(figures["errors"] == 0, f"no errors ({figures['first_errors']})")
    t.check(abs(drift) <= MIB, f"RSS after the last request within 1 MiB of RSS after the first 200 ({drift} bytes)")
    t.check(figures["peak_rss_bytes"] <= figures["bound_bytes"], "peak RSS <= the printed bound")
    t.check(figures["peak_rss_bytes"] <= 64 * MIB, f"peak RSS {figures['peak_rss_bytes'] / MIB:.2f} MiB <= 64 MiB")
    t.check(code == 0, f"exit status 0 on SIGTERM (got {code})")
    t.finish()


if __name__ == "__main__":
    main()
