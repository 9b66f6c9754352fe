// Opens a compliance report's HTML file in headless Chromium with every request but the page
// itself blocked, and prints what it found as JSON (tests/test_dossier_render.py).
//   node report.mjs FILE_URL CHROMIUM
import { chromium } from "playwright-core";

const [pageUrl, executablePath] = process.argv.slice(2);
const report = { requests: [], blocked: [], consoleErrors: [], pageErrors: [], sections: [], headings: [], svg: 0 };

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ offline: true });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    report.requests.push(url);
    if (url === pageUrl) return route.continue();
    report.blocked.push(url);
    return route.abort("blockedbyclient");
  });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") report.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => report.pageErrors.push(String(e)));
  await page.goto(pageUrl, { waitUntil: "load", timeout: 30000 });
  report.title = await page.title();
  report.sections = await page.locator("section").evaluateAll((els) => els.map((e) => e.id));
  report.headings = await page.locator("h2").allInnerTexts();
  report.svg = await page.locator("#lineage svg").count();
  report.svgWidth = await page.locator("#lineage svg").first().evaluate((e) => e.getBoundingClientRect().width).catch(() => 0);
  report.checklistRows = await page.locator("#checklist tbody tr").count();
  report.auditRows = await page.locator("#audit tbody tr").count();
  await page.screenshot({ path: process.env.SCREENSHOT || "/dev/null", fullPage: true }).catch(() => {});
} catch (e) {
  report.error = String(e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
