// Times the explorer in headless Chromium (benchmarks/explorer.py): first paint, the search
// page's results, and a lineage graph from the question to the drawing. Medians, in ms.
//   node explorer-perf.mjs URL CHROMIUM ROOT SAMPLES
import { chromium } from "playwright-core";

const [baseUrl, executablePath, root, samples] = process.argv.slice(2);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const out = { firstPaint: [], searchResults: [], lineageNodes: 0, lineageTotal: [], lineageDraw: [], lineageQuery: [] };
try {
  for (let i = 0; i < Number(samples); i++) {
    const context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
    const page = await context.newPage();
    await page.goto(baseUrl, { waitUntil: "load" });
    await page.locator("#results[data-total]").waitFor({ timeout: 60000 });
    out.firstPaint.push(await page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0].startTime));
    out.searchResults.push(await page.evaluate(() => performance.now()));
    const t0 = await page.evaluate(() => performance.now());
    await page.evaluate((r) => { location.hash = `#/lineage/${encodeURIComponent(r)}?direction=UPSTREAM&depth=3`; }, root);
    await page.locator("#graph[data-ready]").waitFor({ timeout: 60000 });
    out.lineageTotal.push((await page.evaluate(() => performance.now())) - t0);
    out.lineageDraw.push(Number(await page.locator("#graph").getAttribute("data-draw-ms")));
    out.lineageQuery.push(await page.evaluate(() => performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/graphql")).at(-1).duration));
    out.lineageNodes = await page.evaluate(() => window.__lineage.nodes().length);
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({
  first_contentful_paint_ms: Math.round(median(out.firstPaint)),
  search_results_ms: Math.round(median(out.searchResults)),
  lineage_nodes: out.lineageNodes,
  lineage_question_to_drawn_ms: Math.round(median(out.lineageTotal)),
  lineage_graphql_ms: Math.round(median(out.lineageQuery)),
  lineage_drawing_only_ms: Math.round(median(out.lineageDraw)),
}));
