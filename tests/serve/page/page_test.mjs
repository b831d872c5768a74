// Drives Debian's Chromium (headless, through puppeteer-core) through effcam-serve's page: uploads a photo with the
// page's own file input, waits for the answer, and reports what a person would see, at desktop and phone width,
// with a screenshot of each. The caller (check_serve_page.py) starts the server and checks the report.
//
//   node page_test.mjs --url http://127.0.0.1:PORT/ --photo FILE --out DIR [--chromium /usr/bin/chromium]
import fs from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at >= 0 && at + 1 < process.argv.length) return process.argv[at + 1];
  if (fallback === undefined) throw new Error(`--${name} is required`);
  return fallback;
}

const url = option("url");
const photo = option("photo");
const out = option("out");
const chromium = option("chromium", "/usr/bin/chromium");
fs.mkdirSync(out, { recursive: true });

const viewports = [
  { name: "desktop", width: 1280, height: 900, deviceScaleFactor: 1, isMobile: false, hasTouch: false },
  { name: "phone", width: 390, height: 844, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
];

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-extensions", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-component-update", "--disable-default-apps", "--metrics-recording-only", "--mute-audio"],
});
const report = { viewports: [] };
try {
  for (const viewport of viewports) {
    const page = await browser.newPage();
    const requests = [];
    page.on("request", (request) => requests.push(request.url()));
    await page.setViewport(viewport);
    await page.goto(url, { waitUntil: "networkidle0", timeout: 60000 });
    const input = await page.$("#file");
    await input.uploadFile(photo);
    await page.waitForFunction(() => document.body.dataset.state === "done" || document.body.dataset.state === "error",
                               { timeout: 120000 });
    // The heatmap and the photo have decoded before the screenshot.
    await page.waitForFunction(() => ["photo", "heatmap"].every((id) => {
      const img = document.getElementById(id);
      return img.complete && img.naturalWidth > 0;
    }), { timeout: 30000 });
    const seen = await page.evaluate(() => {
      const labels = [...document.querySelectorAll("#results .label")].map((e) => e.textContent);
      const photo = document.getElementById("photo");
      const heatmap = document.getElementById("heatmap");
      const box = heatmap.getBoundingClientRect();
      const under = document.getElementById("photo-under").getBoundingClientRect();
      return {
        state: document.body.dataset.state,
        status: document.getElementById("status").textContent,
        labels,
        photo: [photo.naturalWidth, photo.naturalHeight],
        heatmap: [heatmap.naturalWidth, heatmap.naturalHeight],
        heatmap_covers_photo: Math.abs(box.width - under.width) < 1 && Math.abs(box.height - under.height) < 1,
        heatmap_opacity: getComputedStyle(heatmap).opacity,
        latency: document.getElementById("latency").textContent,
        memory: document.getElementById("memory").textContent,
        page_width: document.documentElement.scrollWidth,
      };
    });
    seen.name = viewport.name;
    seen.viewport_width = viewport.width;
    seen.outside_requests = requests.filter((r) => !r.startsWith(new URL(url).origin) && !r.startsWith("data:") &&
                                                   !r.startsWith("blob:"));
    seen.screenshot = path.join(out, `serve_page_${viewport.name}.png`);
    await page.screenshot({ path: seen.screenshot, fullPage: true });
    report.viewports.push(seen);
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
