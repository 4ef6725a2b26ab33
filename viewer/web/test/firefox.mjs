// Drives the viewer page in stock Firefox (Debian's firefox-esr) through WebDriver BiDi with
// puppeteer-core: Playwright can only drive its own patched Firefox build, which cannot be
// downloaded here. Software WebGL2 comes from Mesa (llvmpipe).
//
//   node test/firefox.mjs URL [FIREFOX]      (URL: a running `emotalk3d viewer`)
//   node test/firefox.mjs --probe [FIREFOX]  ({"webgl2": bool}: can this Firefox draw at all?)
//
// It goes through the page's own controls like tests/viewer/test_browser.py does in Chromium
// (load, generate from the shortest example, seek, play, pause) and prints one JSON line of
// what it saw, canvas screenshots included; tests/viewer/test_firefox.py asserts on it.
import puppeteer from "puppeteer-core";

const [url, executablePath = "/usr/bin/firefox-esr"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node test/firefox.mjs URL [FIREFOX]");
  process.exit(2);
}
const TIMEOUT = 60_000;

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath,
  headless: true,
  // WebGL through EGL on Mesa's software rasterizer (with GLX, headless Firefox gives none)
  env: { ...process.env, LIBGL_ALWAYS_SOFTWARE: "1", MOZ_WEBGL_FORCE_EGL: "1" },
  extraPrefsFirefox: {
    "webgl.force-enabled": true, // no GPU: Mesa's software rasterizer
    "webgl.out-of-process": false,
    "media.autoplay.default": 0, // play() without a user gesture
    "media.autoplay.blocking_policy": 0,
  },
});
if (url === "--probe") {
  // the same browser set-up on a blank page: does it give a WebGL2 context on this machine?
  try {
    const page = await browser.newPage();
    await page.setContent("<canvas id=c></canvas>");
    const webgl2 = await page.evaluate(() => !!document.getElementById("c").getContext("webgl2"));
    console.log(JSON.stringify({ browser: await browser.version(), webgl2 }));
  } finally {
    await browser.close();
  }
  process.exit(0);
}
const out = { browser: await browser.version(), errors: [] };
try {
  const page = await browser.newPage();
  page.on("pageerror", (err) => out.errors.push(String(err)));
  await page.setViewport({ width: 480, height: 400 });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction("window.__viewer && window.__viewer.state !== 'loading'", {
    timeout: TIMEOUT,
  });
  out.state = await page.evaluate("[window.__viewer.state, window.__viewer.lastError]");
  out.emotions = await page.$$eval("#emotion option", (os) => os.map((o) => o.value));
  const shot = async () => Buffer.from(await (await page.$("#view")).screenshot()).toString("base64");
  const rendered = async (count) =>
    page.waitForFunction((c) => window.__viewer.renderCount > c, { timeout: TIMEOUT }, count);
  await rendered(0);
  await new Promise((r) => setTimeout(r, 100)); // let the compositor present the drawn frame
  out.camera = await page.evaluate("__viewer.camera()");
  out.idle_png = await shot();

  const sources = await page.$$eval("#source option", (os) => os.map((o) => o.value));
  const config = await page.evaluate("fetch('/api/config').then((r) => r.json())");
  const example = config.examples.reduce((a, b) => (b.duration < a.duration ? b : a));
  out.sources = sources;
  await page.select("#source", `example:${example.name}`);
  await page.select("#emotion", "happy");
  await page.click("#generate");
  await page.waitForFunction("window.__viewer.ready || window.__viewer.lastError !== null", {
    timeout: TIMEOUT,
  });
  out.clip = await page.evaluate(
    "({ready: __viewer.ready, error: __viewer.lastError, id: __viewer.clipId()," +
      " fps: __viewer.fps(), frames: __viewer.numFrames()})",
  );
  const { fps, frames } = out.clip;

  out.seeks = [];
  for (const t of [7.5 / fps, example.duration / 2, 0.5 / fps]) {
    const current = await page.evaluate(
      (t) =>
        new Promise((resolve) => {
          const audio = document.getElementById("audio");
          audio.addEventListener("seeked", () => resolve(audio.currentTime), { once: true });
          audio.currentTime = t;
        }),
      t,
    );
    const expected = Math.min(frames - 1, Math.floor(current * fps));
    await page.waitForFunction((e) => window.__viewer.shownFrame() === e, { timeout: TIMEOUT }, expected);
    out.seeks.push({
      t,
      current,
      shown: await page.evaluate("__viewer.shownFrame()"),
      counter: await page.$eval("#frame-counter", (el) => el.textContent),
      png: out.seeks.length === 0 ? await shot() : undefined, // frame 7 is on screen
    });
  }

  await page.click("#play");
  await page.waitForFunction("__viewer.frameIndex() >= 5", { timeout: TIMEOUT });
  out.playing = await page.evaluate("!document.getElementById('audio').paused");
  await page.click("#play"); // pause
  const paused = await page.evaluate("__viewer.frameIndex()");
  await new Promise((r) => setTimeout(r, 600));
  out.pause = { at: paused, after: await page.evaluate("__viewer.frameIndex()") };
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
