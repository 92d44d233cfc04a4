// The chat page of `qllama serve` in a real browser: Debian's chromium,
// headless, driven by playwright-core. Type a message, see the answer stream
// in (and equal the API's greedy answer), stop a long answer mid-way and see
// its slot freed.
//
//   cd tests/server && npm install && QLLAMA_BIN=../../target/debug/qllama node --test page.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chromium } from "playwright-core";

const BIN = process.env.QLLAMA_BIN || "../../target/debug/qllama";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Only a guard against a hang; nothing asserts on time.
const GUARD_MS = 60000;

let server, base, browser;

function startServer() {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, ["serve", "--port", "0", "--parallel", "1", "--ctx", "2048", "-t", "1"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    p.stderr.on("data", (d) => {
      log += d;
      const m = log.match(/listening on (http:\/\/[\d.]+:\d+)/);
      if (m && !base) {
        base = m[1];
        resolve(p);
      }
    });
    p.on("exit", (code) => reject(new Error(`qllama serve exited (${code}):\n${log}`)));
  });
}

async function health() {
  return (await fetch(base + "/health")).json();
}

before(async () => {
  server = await startServer();
  // Playwright runs it headless with a fresh temporary profile.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
});

test("a typed message gets a streamed answer equal to the API's", async () => {
  const page = await browser.newPage();
  await page.goto(base + "/?temperature=0&max_tokens=60");
  await page.fill("#input", "Hello, who are you?");
  await page.press("#input", "Enter");
  const done = page.locator(".msg.assistant.done");
  await done.waitFor({ timeout: GUARD_MS });
  const text = await done.locator(".text").textContent();
  const updates = Number(await done.getAttribute("data-updates"));
  assert.ok(updates > 1, `the answer came in ${updates} pieces, not streamed`);
  assert.match(await done.locator(".meta").textContent(), /tokens\/s/);
  assert.equal(await page.locator(".msg.user").textContent(), "Hello, who are you?");

  const r = await fetch(base + "/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "Hello, who are you?" }], temperature: 0, max_tokens: 60 }),
  });
  const api = await r.json();
  assert.equal(text, api.choices[0].message.content);
  await page.close();
});

test("stop ends a long answer mid-way and frees the slot", async () => {
  const before = await health();
  const page = await browser.newPage();
  // An answer that would run to the end of the 2048-token slot.
  await page.goto(base + "/?temperature=0&max_tokens=100000&ignore_eos=true");
  await page.fill("#input", "Tell me everything.");
  await page.click("#send");
  // Check and click in one turn of the page's event loop: a separate
  // click waits for actionability, and on a fast or busy machine the whole
  // answer could end in between.
  await page.waitForFunction(
    () => {
      const stop = document.querySelector("#stop");
      if (!(Number(document.querySelector(".msg.assistant")?.dataset.updates) >= 5) || stop.disabled) return false;
      stop.click();
      return true;
    },
    null,
    { timeout: GUARD_MS, polling: 10 },
  );
  const done = page.locator(".msg.assistant.done");
  await done.waitFor({ timeout: GUARD_MS });
  assert.match(await done.locator(".meta").textContent(), /^stopped/);
  const shown = Number(await done.getAttribute("data-updates"));
  assert.ok(shown >= 5 && shown < 2000, `${shown} pieces shown`);

  // The server saw the disconnect and freed the slot (polled; the guard
  // only stops a hang).
  const deadline = Date.now() + GUARD_MS;
  let h = await health();
  while (!(h.slots_idle === 1 && h.requests_cancelled === before.requests_cancelled + 1)) {
    assert.ok(Date.now() < deadline, `slot not freed: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 20));
    h = await health();
  }
  assert.equal(h.requests_done, before.requests_done);

  // A new answer gets the freed slot.
  await page.goto(base + "/?temperature=0&max_tokens=5");
  await page.fill("#input", "Hi again");
  await page.click("#send");
  await page.locator(".msg.assistant.done").waitFor({ timeout: GUARD_MS });
  assert.match(await page.locator(".msg.assistant.done .meta").textContent(), /finished: (stop|length)/);
  await page.close();
});
