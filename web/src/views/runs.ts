// Runs: a table with a filter (status on the server, text over the loaded page) and sorting by
// any column; tick two or more runs to compare them: metric charts over steps (uPlot), the
// params side by side with the differing ones marked, inputs, code and environment.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { gql } from "../api";
import { announce, errorBox, fmt, h, stillCurrent, label, nodeLink, show, table, when } from "../dom";

const RUNS = `query Runs($where: JSON, $n: Int!, $orderBy: [String!], $after: String) {
  runs(where: $where, first: $n, orderBy: $orderBy, after: $after) {
    nodes { id kind properties name status runKind experimentName projectName user startedAt endedAt headlineMetric { key value } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const PAGE = 200;

/** A column: how to show it, and the property path the hub sorts by (none: sorted here). */
type Column = { title: string; value: (r: any) => string | number | null; path?: string };
const COLUMNS: Column[] = [
  { title: "name", value: (r) => r.name, path: "name" },
  { title: "status", value: (r) => r.status, path: "status" },
  { title: "kind", value: (r) => r.runKind, path: "kind" },
  { title: "experiment", value: (r) => r.experimentName ?? "", path: "experiment" },
  { title: "user", value: (r) => r.user ?? "", path: "user" },
  { title: "started", value: (r) => r.startedAt ?? "", path: "_created_at" },
  { title: "headline metric", value: (r) => r.headlineMetric?.value ?? null },
];

export async function runsView(q: URLSearchParams): Promise<void> {
  const status = (q.get("status") ?? "").toUpperCase(); // #/runs?status=finished too
  const statusSelect = h(
    "select",
    { id: "status-filter", "aria-label": "Status" },
    ...["", "RUNNING", "FINISHED", "FAILED", "KILLED"].map((s) => h("option", { value: s, selected: s === status }, s || "any status")),
  );
  statusSelect.addEventListener("change", () => {
    location.hash = statusSelect.value ? `#/runs?status=${statusSelect.value}` : "#/runs";
  });
  const text = h("input", { id: "run-filter", type: "search", value: q.get("filter") ?? "", placeholder: "filter by name, experiment, user, param…", "aria-label": "Filter runs" });
  const compare = h("button", { type: "button", id: "compare", disabled: true }, "Compare selected");
  const holder = h("div", { class: "scroll" }, h("p", { class: "muted" }, "Loading…"));
  show("Runs", h("h1", {}, "Runs"), h("div", { class: "controls" }, statusSelect, text, compare), holder);

  // sorting by a column the hub can order by asks the hub (all runs, a page at a time);
  // the headline metric is sorted among the runs loaded
  const sortParam = q.get("sort") ?? "-started";
  let descending = sortParam.startsWith("-");
  let sortBy = Math.max(0, COLUMNS.findIndex((c) => c.title === sortParam.replace(/^-/, "")));
  const path = COLUMNS[sortBy].path;
  const vars = { where: status ? { status } : null, n: PAGE, orderBy: path ? [`${descending ? "-" : ""}${path}`, "-_created_at"] : ["-_created_at"] };
  const first = (await gql(RUNS, vars)).runs;
  const runs: any[] = [...first.nodes];
  let next: string | null = first.pageInfo.hasNextPage ? first.pageInfo.endCursor : null;
  const more = h("button", { type: "button", id: "more-runs" }, "Load more runs");
  more.addEventListener("click", async () => {
    const page = (await gql(RUNS, { ...vars, after: next })).runs;
    runs.push(...page.nodes);
    next = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    render();
  });
  const chosen = new Set<string>();

  function sortTo(i: number): void {
    const down = i === sortBy ? !descending : false;
    if (COLUMNS[i].path) {
      const p = new URLSearchParams(status ? { status } : {});
      p.set("sort", `${down ? "-" : ""}${COLUMNS[i].title}`);
      if (text.value.trim()) p.set("filter", text.value.trim());
      location.hash = `#/runs?${p}`;
      return;
    }
    descending = down;
    sortBy = i;
    render();
  }

  function render(): void {
    const needle = text.value.trim().toLowerCase();
    const shown = runs.filter((r) => !needle || JSON.stringify([r.name, r.experimentName, r.user, r.id, r.properties?.params]).toLowerCase().includes(needle));
    const col = COLUMNS[sortBy];
    if (!col.path) {
      shown.sort((a, b) => {
        const x = col.value(a), y = col.value(b);
        const c = x === null ? 1 : y === null ? -1 : typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return descending ? -c : c;
      });
    }
    const head = h("tr", {}, h("th", { scope: "col" }, h("span", { class: "sr-only" }, "select")),
      ...COLUMNS.map((c, i) => h("th", { scope: "col", "aria-sort": i === sortBy ? (descending ? "descending" : "ascending") : "none" },
        h("button", { type: "button", class: "linkish sort", onclick: () => sortTo(i) },
          c.title, i === sortBy ? (descending ? " ▼" : " ▲") : ""))));
    const rows = shown.map((r) => {
      const box = h("input", { type: "checkbox", "aria-label": `select ${r.name}`, "data-id": r.id, checked: chosen.has(r.id) });
      box.addEventListener("change", () => {
        if (box.checked) chosen.add(r.id); else chosen.delete(r.id);
        compare.disabled = chosen.size < 2;
        compare.textContent = `Compare selected (${chosen.size})`;
      });
      return h("tr", {}, h("td", {}, box), h("td", {}, nodeLink(r)), h("td", {}, h("span", { class: `st st-${r.status.toLowerCase()}` }, r.status)),
        h("td", {}, r.runKind), h("td", {}, r.experimentName ?? ""), h("td", {}, r.user ?? ""), h("td", {}, when(r.startedAt)),
        h("td", {}, r.headlineMetric ? `${r.headlineMetric.key} ${fmt(r.headlineMetric.value)}` : "—"));
    });
    holder.replaceChildren(
      h("table", { id: "runs-table" }, h("caption", {}, `${shown.length} of ${runs.length} runs loaded${next ? " (more on the hub)" : ""}`), h("thead", {}, head), h("tbody", {}, ...rows)),
      next ? more : "",
    );
  }
  text.addEventListener("input", render);
  compare.addEventListener("click", () => {
    location.hash = `#/compare/${[...chosen].map(encodeURIComponent).join(",")}`;
  });
  render();
}

const COMPARE = `query Compare($ids: [String!]!) {
  compareRuns(ids: $ids) {
    runs { id kind properties }
    params { key values differs }
    metrics { key last min max differs }
    codeDiffers environmentDiffers inputsOnlyIn
  }
}`;

const ONE = `query OneRun($id: ID!) { run(id: $id) { id kind properties params metrics { key last min max } } }`;

/** One run in the shape of a comparison (the API compares 2 to 50): its metrics and params. */
async function oneRun(id: string): Promise<any> {
  const run = (await gql(ONE, { id })).run;
  return {
    runs: [run],
    params: Object.entries(run.params ?? {}).map(([key, v]) => ({ key, values: [v], differs: false })),
    metrics: run.metrics.map((m: any) => ({ key: m.key, last: [m.last], min: [m.min], max: [m.max], differs: false })),
    codeDiffers: false,
    environmentDiffers: false,
  };
}

export async function compareView(ids: string[]): Promise<void> {
  const current = stillCurrent();
  const data = ids.length > 1 ? (await gql(COMPARE, { ids })).compareRuns : await oneRun(ids[0]);
  if (!current()) return;
  const runs: any[] = data.runs;
  const names = runs.map((r) => label(r));
  const charts = h("div", { class: "charts", id: "charts" }, h("p", { class: "muted" }, "Loading metric series…"));
  const onlyDiff = h("input", { type: "checkbox", id: "only-diff", checked: ids.length > 1 });
  const params = h("div", { class: "scroll" });
  function renderParams(): void {
    const rows = data.params.filter((p: any) => !onlyDiff.checked || p.differs)
      .map((p: any) => [h("code", {}, p.key), ...p.values.map((v: unknown) => fmt(v)), p.differs ? h("strong", { class: "differs" }, "differs") : "same"]);
    params.replaceChildren(table(["param", ...names, ""], rows, "Parameters"));
    params.querySelector("table")!.id = "params-diff";
  }
  onlyDiff.addEventListener("change", renderParams);
  renderParams();
  const metrics = table(["metric", ...names.map((n) => `${n} (last)`)],
    data.metrics.map((m: any) => [h("code", {}, m.key), ...m.last.map((v: unknown) => fmt(v))]), "Metrics, last values");
  show(
    "Compare runs",
    h("h1", {}, runs.length > 1 ? `Comparing ${runs.length} runs` : `Run ${names[0]}`),
    h("ul", { class: "inline" }, ...runs.map((r) => h("li", {}, nodeLink(r)))),
    runs.length > 1 ? h("p", {}, `Code ${data.codeDiffers ? "differs" : "is the same"}; environment ${data.environmentDiffers ? "differs" : "is the same"}.`) : null,
    h("section", { "aria-labelledby": "ch" }, h("h2", { id: "ch" }, "Metrics over steps"), charts),
    h("section", { "aria-labelledby": "pd" }, h("h2", { id: "pd" }, "Parameters"), h("label", { class: "check" }, onlyDiff, "only those that differ"), params),
    h("section", { "aria-labelledby": "md" }, h("h2", { id: "md" }, "Metrics"), h("div", { class: "scroll" }, metrics)),
  );
  // the series of each metric key (the differing ones first), one chart per key
  const keys: string[] = [...data.metrics].sort((a: any, b: any) => Number(b.differs) - Number(a.differs)).map((m: any) => m.key).slice(0, 12);
  if (!keys.length) {
    charts.replaceChildren(h("p", { class: "muted" }, "No metrics logged."));
    return;
  }
  // as few queries as the hub's limit of 50 aliased fields a query allows (a run's field and
  // its series each count): the runs split into groups, fetched at once
  const perQuery = Math.max(1, Math.floor(48 / (keys.length + 1)));
  const groups: number[][] = [];
  for (let i = 0; i < runs.length; i += perQuery) groups.push(runs.slice(i, i + perQuery).map((_r, k) => i + k));
  const series: any = {};
  try {
    const answers = await Promise.all(groups.map((group) => {
      const vars: Record<string, string> = {};
      const decl: string[] = [];
      const parts = group.map((i) => {
        vars[`r${i}`] = runs[i].id;
        decl.push(`$r${i}: ID!`);
        return `r${i}: run(id: $r${i}) { ${keys.map((_k, j) => `m${j}: metricSeries(key: $k${j}, maxPoints: 1000) { step value }`).join(" ")} }`;
      });
      keys.forEach((k, j) => { vars[`k${j}`] = k; decl.push(`$k${j}: String!`); });
      return gql(`query Series(${decl.join(", ")}) { ${parts.join(" ")} }`, vars);
    }));
    for (const answer of answers) Object.assign(series, answer);
  } catch (e) {
    charts.replaceChildren(errorBox(e));
    return;
  }
  charts.replaceChildren();
  const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  keys.forEach((key, j) => {
    const perRun: { step: number; value: unknown }[][] = runs.map((_r, i) => series[`r${i}`][`m${j}`]);
    const steps = [...new Set(perRun.flat().map((p) => p.step))].sort((a, b) => a - b);
    const ys = perRun.map((points) => {
      const at = new Map(points.map((p) => [p.step, Number(p.value)]));
      return steps.map((s) => (at.has(s) && Number.isFinite(at.get(s)) ? at.get(s)! : null));
    });
    const box = h("figure", { class: "chart", "data-key": key },
      h("figcaption", {}, key, ` (${steps.length} step${steps.length === 1 ? "" : "s"})`));
    charts.append(box);
    const css = getComputedStyle(document.documentElement);
    const fg = css.getPropertyValue("--fg").trim();
    const grid = css.getPropertyValue("--line").trim();
    new uPlot(
      {
        width: 380,
        height: 200,
        scales: { x: { time: false } },
        axes: [
          { stroke: fg, grid: { stroke: grid }, label: "step" },
          { stroke: fg, grid: { stroke: grid }, size: 60 },
        ],
        series: [{ label: "step" }, ...names.map((n, i) => ({ label: n, stroke: palette[i % palette.length], width: 2, spanGaps: true, points: { show: true, size: 6 } }))],
      },
      [steps, ...ys] as uPlot.AlignedData,
      box,
    );
    box.querySelector("canvas")?.setAttribute("aria-label", `${key} over steps for ${names.join(", ")}`);
    box.querySelector("canvas")?.setAttribute("role", "img");
  });
  charts.dataset.ready = "true";
  announce(`${keys.length} metric charts drawn.`);
}
