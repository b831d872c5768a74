"""effcam-serve's web page in a real browser: Debian's Chromium, headless, driven by puppeteer-core (npm, installed
here with `npm ci --ignore-scripts` from the committed package-lock.json: no browser download). It uploads the
bundled bibimbap photo through the page's file input at desktop (1280 px) and phone (390 px) width and checks that
the page shows "bibimbap" first, a heatmap overlay of the photo's own size laid over it, the latency and the
server's memory, with no request leaving the server, and that nothing is wider than the screen. Screenshots go to
BUILD/test-artifacts/serve_page_{desktop,phone}.png.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib as s  # noqa: E402
from servelib import t  # noqa: E402

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
CHROMIUM = "/usr/bin/chromium"


def install_packages():
    """npm ci --ignore-scripts when node_modules is older than the lock file."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            t.skip(f"{tool} is not installed (scripts/install-deps.sh installs it)")
    lock = os.path.join(PAGE_DIR, "package-lock.json")
    installed = os.path.join(PAGE_DIR, "node_modules", ".package-lock.json")
    if not os.path.exists(installed) or os.path.getmtime(installed) < os.path.getmtime(lock):
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=PAGE_DIR, check=True,
                       capture_output=True, timeout=600)


def main():
    s.require_built()
    if not os.path.exists(CHROMIUM):
        t.skip(f"{CHROMIUM} is absent (scripts/install-deps.sh installs Debian's chromium)")
    install_packages()
    model = s.food101_model("fp16")
    photo = os.path.join(t.FOOD101, "samples", "bibimbap.png")
    from PIL import Image
    photo_size = list(Image.open(photo).size)
    out = os.path.join(t.BINARY_DIR, "test-artifacts")
    with s.Server(f"food101={model}", args=["--sessions", "1"]) as server:
        result = subprocess.run(["node", os.path.join(PAGE_DIR, "page_test.mjs"), "--url",
                                 f"http://{s.HOST}:{server.port}/", "--photo", photo, "--out", out,
                                 "--chromium", CHROMIUM], capture_output=True, text=True, timeout=300 * s.SLOW)
    if result.returncode != 0:
        t.check(False, f"the page test ran (exit {result.returncode}: {result.stderr.strip()[-2000:]})")
        t.finish()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for view in report["viewports"]:
        name = view["name"]
        t.check(view["state"] == "done", f"{name}: the answer arrived ({view['status']})")
        t.check(view["labels"][:1] == ["bibimbap"], f"{name}: bibimbap is first ({view['labels']})")
        t.check(view["photo"] == photo_size and view["heatmap"] == photo_size,
                f"{name}: the heatmap overlay is the photo's size {photo_size} (got {view['heatmap']})")
        t.check(view["heatmap_covers_photo"], f"{name}: the overlay lies exactly over the photo")
        t.check(view["heatmap_opacity"] == "0.4", f"{name}: the opacity slider's 40% applies")
        t.check("ms" in view["latency"] and "MiB" in view["memory"],
                f"{name}: latency and server memory shown ('{view['latency']}', '{view['memory']}')")
        t.check(view["outside_requests"] == [], f"{name}: no request leaves the server ({view['outside_requests']})")
        t.check(view["page_width"] <= view["viewport_width"],
                f"{name}: nothing wider than the screen ({view['page_width']} px in {view['viewport_width']})")
        shot = Image.open(view["screenshot"])
        scale = 2 if name == "phone" else 1
        t.check(shot.size[0] == view["viewport_width"] * scale, f"{name}: screenshot {view['screenshot']} {shot.size}")
    t.finish()


if __name__ == "__main__":
    main()
