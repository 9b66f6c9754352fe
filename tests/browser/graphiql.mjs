// Loads a hub's GraphiQL page in headless Chromium with every request to anything but the hub
// itself blocked, runs a query, and prints a JSON report on stdout (tests/test_graphiql_browser.py).
//   node graphiql.mjs URL CHROMIUM
import { chromium } from "playwright-core";

const [pageUrl, executablePath] = process.argv.slice(2);
const hub = new URL(pageUrl);
const report = { blocked: [], served: [], consoleErrors: [], pageErrors: [], rendered: false, result: null };

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let page = null;
try {
  const context = await browser.newContext();
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    const local = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname) && url.port === hub.port;
    if (local || url.protocol === "data:") {
      report.served.push(url.pathname);
      return route.continue();
    }
    report.blocked.push(url.href);
    return route.abort("blockedbyclient");
  });
  page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") report.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => report.pageErrors.push(String(e)));
  await page.goto(pageUrl, { waitUntil: "load", timeout: 30000 });
  // GraphiQL replaced "Loading..." with its editors and its run button
  const run = page.locator(".graphiql-execute-button");
  await run.waitFor({ state: "visible", timeout: 30000 });
  report.rendered = true;
  await run.click();
  report.clicked = true;
  const result = page.locator(".graphiql-response .CodeMirror");
  await page.waitForFunction(
    () => (document.querySelector(".graphiql-response .CodeMirror")?.CodeMirror?.getValue() ?? "").includes("\"data\""),
    null,
    { timeout: 30000 },
  );
  report.result = await result.evaluate((el) => el.CodeMirror.getValue());
  await page.screenshot({ path: process.env.SCREENSHOT || "/dev/null" }).catch(() => {});
} catch (e) {
  report.error = String(e);
  // what the response pane held when it failed (an error answer, or nothing yet)
  report.response = await page?.evaluate(
    () => document.querySelector(".graphiql-response .CodeMirror")?.CodeMirror?.getValue() ?? null,
  ).catch(() => null);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
