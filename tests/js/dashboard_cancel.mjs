// The dashboard cancels a pending scheduled function: log in, open Schedules, press its Cancel
// button, and wait for the live list to show it canceled.
//
//   node dashboard_cancel.mjs URL ADMIN_KEY JOB_ID

import { chromium } from "playwright-core";

const [url, adminKey, jobId] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: FLAGS });
const out = {};
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(`${url}/dashboard#schedules`);
  await page.fill("#admin-key", adminKey);
  await page.click("#login-button");
  const row = `#scheduled tbody tr[data-id="${jobId}"]`;
  await page.waitForSelector(`${row}[data-state="pending"]`);
  out.before = await page.locator(row).getAttribute("data-state");
  await page.click(`${row} button`);
  await page.waitForSelector(`${row}[data-state="canceled"]`);
  out.after = await page.locator(row).getAttribute("data-state");
  out.cancelButtons = await page.locator(`${row} button`).count();
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
