// Walks the lineage explorer in headless Chromium against a real `lineagehub serve` of the
// demo's hub, with every request to anything but the hub blocked: sign in, search, open a
// model version, walk its lineage (expand, path, PNG export), compare two runs, approve a
// pending promotion, switch theme; keyboard-only search; labels and secrets checked.
// Prints a JSON report on stdout (tests/test_explorer_browser.py) and saves screenshots.
//   TOKEN=lh_... SHOTS=dir RUNS=name1,name2 node explorer.mjs URL CHROMIUM
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [baseUrl, executablePath] = process.argv.slice(2);
const hub = new URL(baseUrl);
const shots = process.env.SHOTS || "/tmp";
const secret = process.env.TOKEN || "";
const viewerSecret = process.env.VIEWER_TOKEN || "";
const [runA, runB] = (process.env.RUNS || "").split(",");
mkdirSync(shots, { recursive: true });
const report = {
  blocked: [], served: [], consoleErrors: [], pageErrors: [], steps: {}, unlabeled: {}, timings: {},
};
const T = { timeout: 30000 };

/** Form controls and buttons without an accessible name, on the current view. */
async function unlabeled(page) {
  return page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll("button, input, select, textarea, a[href]")) {
      if (el.type === "hidden" || el.closest("[hidden]")) continue;
      const named = el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") ||
        (el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`)) || el.closest("label") ||
        (el.textContent || "").trim() || el.getAttribute("title");
      if (!named) bad.push(el.outerHTML.slice(0, 120));
    }
    return bad;
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 860 }, acceptDownloads: true, colorScheme: "light" });
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    const local = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname) && url.port === hub.port;
    if (local || url.protocol === "data:" || url.protocol === "blob:") {
      report.served.push(url.pathname);
      return route.continue();
    }
    report.blocked.push(url.href);
    return route.abort("blockedbyclient");
  });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") report.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => report.pageErrors.push(String(e)));

  // 1. the page asks for a token (a link straight to a lineage graph too); a viewer's is
  // refused an approval later, an approver's is not
  await page.goto(`${baseUrl}#/lineage/${encodeURIComponent("mv:tumor-classifier/3")}`, { waitUntil: "load", ...T });
  await page.locator("#token").waitFor({ state: "visible", ...T });
  report.steps.lineageAsksSignIn = true;
  await page.goto(baseUrl, { waitUntil: "load", ...T });
  report.timings.firstContentfulPaintMs = await page.evaluate(
    () => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null,
  );
  const box = page.locator("#token");
  await box.waitFor({ state: "visible", ...T });
  report.steps.signInShown = true;
  report.unlabeled.signin = await unlabeled(page);
  await shot(page, "signin");
  await box.fill(viewerSecret || secret);
  await box.press("Enter");

  // 2. search, keyboard only: "/" focuses the box, type, Enter, Tab to the first hit, Enter
  await page.locator("#results[data-total]").waitFor(T);
  await page.locator("body").click({ position: { x: 5, y: 300 } });
  await page.keyboard.press("/");
  report.steps.slashFocusesSearch = await page.evaluate(() => document.activeElement?.id === "q");
  await page.keyboard.type("tumor");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => location.hash.includes("q=tumor") && document.querySelector("#results[data-total]"), null, T);
  const hits = await page.locator("#results a").allTextContents();
  report.steps.searchHits = hits;
  report.unlabeled.search = await unlabeled(page);
  await shot(page, "search");
  // Tab from the box until a result link has the focus, then Enter opens it
  await page.locator("#q").focus();
  let focused = "";
  for (let i = 0; i < 6 && !focused.startsWith("#/node/"); i++) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => document.activeElement?.getAttribute("href") ?? "");
  }
  await page.keyboard.press("Enter");
  await page.locator("#props").waitFor(T);
  report.steps.keyboardOpened = decodeURIComponent(focused);

  // the hub searches every node's text fields, not only what the page shows: runs by the
  // name of their experiment, whatever its case
  await page.goto(`${baseUrl}#/?q=${encodeURIComponent("DATA-PREP")}`);
  await page.waitForFunction(
    () => document.querySelector("#q")?.value === "DATA-PREP" && document.querySelector("#results[data-total]"),
    null,
    T,
  );
  report.steps.searchByExperiment = await page.locator("#results a").allTextContents();

  // 3. an exact reference opens the champion version; its page has properties and neighbours
  await page.goto(`${baseUrl}#/?q=${encodeURIComponent("tumor-classifier@champion")}`);
  await page.locator("#g-exact").waitFor(T);
  await page.locator("section[aria-labelledby=g-exact] a").first().click();
  await page.locator("#nb + table, #nb ~ table").first().waitFor(T);
  report.steps.nodeTitle = await page.locator("h1").textContent();
  report.steps.properties = await page.locator("#props + table tbody tr").count();
  report.steps.neighbours = await page.locator("#nb ~ table tbody tr").allTextContents();
  report.unlabeled.node = await unlabeled(page);
  await shot(page, "node");

  // a graph opened by a reference marks the version it names as its root; a time with its
  // zone in the link; links to nothing say so in the page's own words
  await page.goto(`${baseUrl}#/lineage/${encodeURIComponent("tumor-classifier@champion")}`);
  await page.locator("#graph[data-ready]").waitFor(T);
  report.steps.refRoots = await page.evaluate(() => window.__lineage.$("node.root").map((n) => n.id()));
  await page.goto(`${baseUrl}#/lineage/${encodeURIComponent("mv:tumor-classifier/3")}?asOf=2100-01-01T00:00:00Z`);
  await page.locator("#graph[data-ready]").waitFor(T);
  report.steps.asOfZoned = await page.locator("#asof").inputValue();
  await page.goto(`${baseUrl}#/models/no-such-model`);
  await page.locator("h1", { hasText: "Not found" }).waitFor(T);
  report.steps.unknownModel = await page.locator("main").innerText();
  await page.goto(`${baseUrl}#/node/%E0%A4%A`);
  await page.locator("h1", { hasText: "No such page" }).waitFor(T);
  report.steps.brokenLink = await page.locator("main").innerText();
  await page.goBack();
  await page.goto(`${baseUrl}#/?q=${encodeURIComponent("tumor-classifier@champion")}`);
  await page.locator("#g-exact").waitFor(T);
  await page.locator("section[aria-labelledby=g-exact] a").first().click();
  await page.locator("#nb + table, #nb ~ table").first().waitFor(T);

  // 4. its lineage: upstream 3, then deeper; expand a node; highlight a path; export PNG
  await page.getByRole("link", { name: "Lineage graph" }).click();
  await page.locator("#graph[data-ready]").waitFor(T);
  const count = () => page.evaluate(() => window.__lineage.nodes().length);
  report.steps.lineageNodes = await count();
  await page.locator("#depth").fill("8");
  await page.locator("#direction").selectOption("BOTH");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => location.hash.includes("depth=8"), null, T);
  await page.locator("#graph[data-ready]").waitFor(T);
  report.steps.lineageNodesDeep = await count();
  report.timings.lineageDrawMs = Number(await page.locator("#graph").getAttribute("data-draw-ms"));
  // keys on the graph: left to an upstream neighbour, right back, Enter opens it
  await page.locator("#graph").focus();
  const selected = () => page.evaluate(() => window.__lineage.$("node:selected").id() ?? null);
  await page.keyboard.press("ArrowLeft");
  report.steps.keyLeft = await selected();
  report.steps.keyLeftNeighbours = await page.evaluate(
    () => window.__lineage.$("node:selected").neighborhood("node").map((n) => n.id()));
  await page.keyboard.press("ArrowRight");
  report.steps.keyRight = await selected();
  await page.locator("#nodelist button", { hasText: /^rf-/ }).first().click();  // selected: a panel
  await shot(page, "lineage");
  const lineageUrl = page.url();
  await page.locator("#graph").focus();
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => location.hash.startsWith("#/node/run"), null, T);
  report.steps.keyEnter = await page.evaluate(() => decodeURIComponent(location.hash));
  // the run's own metrics (one run: its charts and params)
  await page.getByRole("link", { name: "Metrics" }).click();
  await page.locator("#charts[data-ready]").waitFor(T);
  report.steps.oneRunCharts = await page.locator("#charts figure").count();
  report.steps.oneRunParams = await page.locator("#params-diff tbody tr").count();
  await page.goto(lineageUrl);
  await page.locator("#graph[data-ready]").waitFor(T);
  // node kinds: only runs, dataset versions and model versions
  await page.locator("details summary", { hasText: "Node kinds" }).click();
  for (const kind of ["run", "dataset version", "model version"]) {
    await page.getByRole("checkbox", { name: kind, exact: true }).check();
  }
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => location.hash.includes("kinds="), null, T);
  await page.locator("#graph[data-ready]").waitFor(T);
  report.steps.kindsShown = await page.evaluate(() => [...new Set(window.__lineage.nodes().map((n) => n.data("kind")))].sort());
  // as of a time before the demo: the version was not known yet
  await page.locator("#asof").fill("2000-01-01T00:00:00");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => location.hash.includes("asOf="), null, T);
  await page.locator("#lineage-info .error").waitFor(T);
  report.steps.asOfBefore = await page.locator("#lineage-info").textContent();
  // the deployment: what it serves, its monitoring windows as charts, its alerts (the demo
  // replays a week of traffic that drifts from day 5)
  await page.goto(`${baseUrl}#/node/${encodeURIComponent(process.env.DEPLOYMENT)}`);
  await page.locator("#deployment table").first().waitFor(T);
  report.steps.deployment = await page.locator("#deployment").textContent();
  report.steps.monitoringCharts = await page.locator("#monitoring figure canvas").count();
  // an alert's page lists its own edges only (an edge between two of its neighbours, the
  // deployment SERVES a version, was listed as the alert's)
  await page.locator('#deployment a[href^="#/node/alert"]').first().click();
  await page.locator("h1 .badge", { hasText: /^alert$/i }).waitFor(T);
  await page.locator("#nb ~ table").first().waitFor(T);
  report.steps.alertEdges = await page.locator("#nb ~ table tbody tr td:nth-child(2)").allTextContents();
  // a link with the status in lower case filters as the select does
  await page.goto(`${baseUrl}#/runs?status=finished`);
  await page.locator("#runs-table").waitFor(T);
  report.steps.finishedStatuses = await page.locator("#runs-table tbody tr td:nth-child(3)").allTextContents();
  report.steps.finishedSelect = await page.locator("#status-filter").inputValue();
  // expand: back to depth 1, then expand the training run from the node list
  await page.goto(`${baseUrl}#/lineage/${encodeURIComponent("tumor-classifier@champion")}?direction=UPSTREAM&depth=1`);
  await page.locator("#graph[data-ready]").waitFor(T);
  const before = await count();
  const trainer = page.locator("#nodelist button", { hasText: /^rf-/ }).first();
  await trainer.click();
  await page.locator("#expand").click();
  await page.waitForFunction((n) => window.__lineage.nodes().length > n, before, T);
  report.steps.expanded = [before, await count()];
  // path: from the root to a dataset version reached by the expansion
  await page.locator("#nodelist button").filter({ hasText: "tumor-classifier v" }).first().click();
  await page.locator("#path-from").click();
  await page.locator("#nodelist button").filter({ hasText: "breast_cancer_clean@" }).first().click();
  await page.waitForFunction(() => window.__lineage.$(".path").length > 0, null, T);
  report.steps.pathElements = await page.evaluate(() => window.__lineage.$(".path").length);
  report.steps.pathInfo = await page.locator("#lineage-info").textContent();
  report.unlabeled.lineage = await unlabeled(page);
  await shot(page, "lineage-path");
  // as of a time before the promotion requests (ASOF, after the demo and the sweep): the
  // graph, a node's expansion and a path are all of then (version 1's request came later)
  const asOfUrl = `${baseUrl}#/lineage/${encodeURIComponent("mv:tumor-classifier/1")}?direction=BOTH&depth=1`;
  await page.goto(`${asOfUrl}&asOf=${encodeURIComponent(process.env.ASOF)}`);
  await page.locator("#graph[data-ready]").waitFor(T);
  const drawnIds = () => page.evaluate(() => window.__lineage.nodes().map((n) => n.id()).sort());
  const thenIds = await drawnIds();
  await page.locator("#nodelist button").filter({ hasText: "tumor-classifier v1" }).first().click();
  await page.locator("#expand").click();
  await page.waitForFunction(() => /added/.test(document.querySelector("#lineage-info").textContent), null, T);
  report.steps.asOfExpanded = [thenIds, await drawnIds()];
  await page.locator("#path-from").click();
  await page.locator("#nodelist button", { hasText: /^rf-/ }).first().click();
  await page.waitForFunction(() => window.__lineage.$(".path").length > 0, null, T);
  report.steps.asOfPath = [await page.evaluate(() => window.__lineage.$(".path").length), await page.locator("#lineage-info").textContent()];
  await page.goto(asOfUrl);
  await page.locator("#graph[data-ready]").waitFor(T);
  report.steps.nowIds = await drawnIds();
  await page.goto(lineageUrl);
  await page.locator("#graph[data-ready]").waitFor(T);
  const [download] = await Promise.all([page.waitForEvent("download", T), page.locator("#export-png").click()]);
  await download.saveAs(join(shots, "lineage-export.png"));
  report.steps.exported = download.suggestedFilename();

  // 5. runs: filter, sort, tick two, compare: charts over steps and the params diff
  await page.goto(`${baseUrl}#/runs`);
  await page.locator("#runs-table").waitFor(T);
  report.steps.runsRows = await page.locator("#runs-table tbody tr").count();
  await page.locator("#run-filter").fill(runA.split("-")[0]);
  report.steps.runsFiltered = await page.locator("#runs-table tbody tr").count();
  await page.locator("#runs-table th button", { hasText: "name" }).click();  // the hub sorts
  await page.locator("#runs-table th[aria-sort=ascending]", { hasText: "name" }).waitFor(T);
  report.steps.runsSortHash = await page.evaluate(() => decodeURIComponent(location.hash));
  report.steps.runsSortedByName = await page.locator("#runs-table tbody tr td:nth-child(2)").allTextContents();
  for (const name of [runA, runB]) await page.getByRole("checkbox", { name: `select ${name}`, exact: true }).check();
  report.unlabeled.runs = await unlabeled(page);
  await shot(page, "runs");
  await page.locator("#compare").click();
  await page.locator("#charts[data-ready]").waitFor(T);
  report.steps.charts = await page.locator("#charts figure").evaluateAll((fs) => fs.map((f) => f.dataset.key));
  report.steps.chartCanvases = await page.locator("#charts canvas").count();
  report.steps.paramsDiff = await page.locator("#params-diff tbody tr").allTextContents();
  report.unlabeled.compare = await unlabeled(page);
  await shot(page, "compare");

  // 6. the registry: a viewer's approval is refused (FORBIDDEN); the approver's promotes
  await page.goto(`${baseUrl}#/models/tumor-classifier`);
  await page.locator("#pending article").first().waitFor(T);
  report.steps.pendingBefore = await page.locator("#pending article").count();
  report.unlabeled.models = await unlabeled(page);
  await shot(page, "models");
  if (viewerSecret) {
    await page.locator("#pending article button.approve").first().click();
    await page.locator("#pending article .error").first().waitFor(T);
    report.steps.viewerRefused = await page.locator("#pending article .error").first().textContent();
    await page.locator("#signout").click();
    await page.locator("#token").waitFor({ state: "visible", ...T });
    // signed out: the button is gone (its own display rule showed it, hidden or not)
    report.steps.signOutHidden = await page.evaluate(() => getComputedStyle(document.getElementById("signout")).display === "none");
    await page.locator("#token").fill(secret);
    await page.locator("#token").press("Enter");
    await page.goto(`${baseUrl}#/models/tumor-classifier`);
    await page.locator("#pending article").first().waitFor(T);
  }
  const card = page.locator("#pending article", { hasText: "tumor-classifier v1" });
  await card.locator("input").fill("checked in the explorer");
  await card.locator("button.approve").click();
  await page.locator("#pending .flash").waitFor(T);
  report.steps.approved = await page.locator("#pending .flash").textContent();
  report.steps.pendingBetween = await page.locator("#pending article").count();
  // rejecting needs a reason
  const other = page.locator("#pending article", { hasText: "tumor-classifier v2" });
  await other.locator("button.reject").click();
  report.steps.rejectWithoutReason = await other.locator(".error").textContent();
  await other.locator("input").fill("not better than the champion");
  await other.locator("button.reject").click();
  await page.locator("#pending .flash", { hasText: "Rejected" }).waitFor(T);
  report.steps.rejected = await page.locator("#pending .flash").textContent();
  report.steps.pendingAfter = await page.locator("#pending article").count();
  report.steps.history = await page.locator("#hh ~ div table tbody tr").allTextContents();

  // 7. dark theme (remembered), the lineage again for the picture
  await page.locator("#theme").click();
  report.steps.theme = await page.evaluate(() => document.documentElement.dataset.theme);
  await page.goto(`${baseUrl}#/lineage/${encodeURIComponent("tumor-classifier@champion")}?direction=UPSTREAM&depth=8`);
  await page.locator("#graph[data-ready]").waitFor(T);
  await shot(page, "lineage-dark");
  await page.goto(`${baseUrl}#/models/tumor-classifier`);
  await page.locator("#vv").waitFor(T);
  await shot(page, "models-dark");

  // 8. no secret in the page or in lasting storage; the token only in this tab's session
  report.steps.secretInPage = await page.evaluate((s) => document.documentElement.outerHTML.includes(s), secret);
  report.steps.secretInLocalStorage = await page.evaluate(
    (s) => Object.keys(localStorage).some((k) => (localStorage.getItem(k) || "").includes(s)), secret);
  report.steps.secretInSession = await page.evaluate((s) => sessionStorage.getItem("lineagehub.token") === s, secret);
  report.steps.cookies = (await context.cookies()).length;
} catch (e) {
  report.error = String(e.stack || e);
  for (const p of browser.contexts().flatMap((c) => c.pages())) {
    report.errorPage = await p.evaluate(() => location.hash + " " + document.querySelector("main")?.innerText.slice(0, 400)).catch(() => null);
    await p.screenshot({ path: join(shots, "error.png") }).catch(() => {});
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
