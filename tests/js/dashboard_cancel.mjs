// The dashboard cancels a pending scheduled function: log in, open Schedules, press its Cancel
// button, and wait for the live list to show it canceled; a function that already ran shows its
// outcome, and the cron jobs are listed. Takes the Schedules screenshot into SHOT_DIR.
//
//   node dashboard_cancel.mjs URL ADMIN_KEY JOB_ID DONE_JOB_ID SHOT_DIR

import { chromium } from "playwright-core";
import path from "node:path";

const [url, adminKey, jobId, doneId, shotDir] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: FLAGS });
const out = {};
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 880 } });
  page.setDefaultTimeout(30_000);
  await page.goto(`${url}/dashboard#schedules`);
  await page.fill("#admin-key", adminKey);
  await page.click("#login-button");
  const row = `#scheduled tbody tr[data-id="${jobId}"]`;
  await page.waitForSelector(`${row}[data-state="pending"]`);
  out.before = await page.locator(row).getAttribute("data-state");
  await page.waitForSelector(`#scheduled tbody tr[data-id="${doneId}"][data-state="success"]`);
  out.ran = await page.locator(`#scheduled tbody tr[data-id="${doneId}"]`).getAttribute("data-state");
  await page.waitForSelector("#crons tbody tr[data-name]");
  out.crons = await page.locator("#crons tbody tr[data-name]").evaluateAll((rows) => rows.map((r) => r.dataset.name));
  await page.click(`${row} button`);
  await page.waitForSelector(`${row}[data-state="canceled"]`);
  out.after = await page.locator(row).getAttribute("data-state");
  out.cancelButtons = await page.locator(`${row} button`).count();
  await page.screenshot({ path: path.join(shotDir, "schedules.png") });
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
