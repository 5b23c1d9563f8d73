/**
 * launchChromium starts Debian's Chromium headless through playwright-core,
 * as the dashboard's end-to-end test (web/test/dashboard.test.ts) and
 * `npm run bench:dashboard` drive it (the SDK's browser test takes the path,
 * the flags and the check for a persistent context of its own); without the
 * package it fails saying what to install.
 */
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** CHROMIUM_FLAGS: no sandbox or GPU (containers, CI), nothing fetched in the background. */
export const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** requireChromium throws, saying what to install, on a machine without Chromium. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) throw new Error("Chromium is missing: run `apt-get install -y chromium` (npm test does it where it can)");
}

export async function launchChromium(): Promise<Browser> {
  requireChromium();
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", ...CHROMIUM_FLAGS],
  });
}
