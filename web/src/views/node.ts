// A node page: its properties and tags, and its neighbours one hop up and down the lineage.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { gql } from "../api";
import { fmt, h, stillCurrent, kindName, label, nodeLink, show, table, when } from "../dom";

const QUERY = `query NodePage($ref: String!) {
  node(ref: $ref) { id kind createdAt updatedAt properties tags }
}`;
const DEPLOYMENT = `query Deployment($ref: String!) {
  node(ref: $ref) { ... on Deployment { environment endpoint status requireStage
    serves { node { id kind properties } edge { eventTime properties } }
    windows { id start end metrics }
    alerts { id kind properties rule severity state message firedAt createdAt } } }
}`;
const NEIGHBOURS = `query Neighbours($id: String!) {
  lineage(input: {roots: [$id], direction: BOTH, upstreamDepth: 1, downstreamDepth: 1, maxNodes: 500}) {
    nodes { distance direction node { id kind properties } }
    edges { source target kind role eventTime }
    truncated
  }
}`;

export async function nodeView(ref: string): Promise<void> {
  const current = stillCurrent();
  const data = await gql(QUERY, { ref });
  if (!current()) return;
  const node = data.node;
  if (!node) {
    show("Not found", h("h1", {}, "Not found"), h("p", {}, `The hub holds no node “${ref}”.`));
    return;
  }
  const actions = h(
    "p",
    { class: "actions" },
    h("a", { class: "button", href: `#/lineage/${encodeURIComponent(node.id)}` }, "Lineage graph"),
    node.kind === "RUN" ? h("a", { class: "button", href: `#/compare/${encodeURIComponent(node.id)}` }, "Metrics") : null,
    node.kind === "MODEL" || node.kind === "MODEL_VERSION"
      ? h("a", { class: "button", href: `#/models/${encodeURIComponent(node.properties.model ?? node.properties.name)}` }, "In the registry")
      : null,
  );
  const props = Object.entries(node.properties ?? {}).map(([k, v]) => [h("code", {}, k), fmt(v)]);
  const tags = Object.entries(node.tags ?? {}).map(([k, v]) => [h("code", {}, k), fmt(v)]);
  const neighbours = h("section", { "aria-labelledby": "nb" }, h("h2", { id: "nb" }, "Neighbours"), h("p", { class: "muted" }, "Loading…"));
  show(
    label(node),
    h("h1", {}, label(node), " ", h("span", { class: "badge" }, kindName(node.kind))),
    h("p", { class: "muted" }, h("code", {}, node.id), ` · created ${when(node.createdAt)} · updated ${when(node.updatedAt)}`),
    actions,
    h("section", { "aria-labelledby": "props" }, h("h2", { id: "props" }, "Properties"), table(["property", "value"], props)),
    tags.length ? h("section", { "aria-labelledby": "tags" }, h("h2", { id: "tags" }, "Tags"), table(["tag", "value"], tags)) : null,
    neighbours,
  );
  if (node.kind === "DEPLOYMENT") neighbours.before(await deploymentSection(node.id));
  const lin = (await gql(NEIGHBOURS, { id: node.id })).lineage;
  const byId = new Map<string, any>(lin.nodes.map((n: any) => [n.node.id, n.node]));
  const rows: any[][] = [];
  for (const e of lin.edges) {
    if (e.source !== node.id && e.target !== node.id) continue; // an edge between two neighbours
    const up = e.source === node.id; // edges point to what a thing came from
    const other = byId.get(up ? e.target : e.source);
    if (!other || other.id === node.id) continue;
    rows.push([up ? "upstream" : "downstream", h("code", {}, e.kind), e.role ?? "", nodeLink(other), kindName(other.kind), when(e.eventTime)]);
  }
  neighbours.replaceChildren(
    h("h2", { id: "nb" }, "Neighbours"),
    rows.length
      ? table(["direction", "edge", "role", "node", "kind", "when"], rows)
      : h("p", { class: "muted" }, "No lineage neighbours."),
  );
  if (lin.truncated) {
    neighbours.append(h("p", { class: "muted", id: "nb-truncated" },
      `The first ${rows.length} neighbours: the node has more. The lineage graph, or an export, shows the rest.`));
  }
}

/** A deployment: the versions it served, its monitoring windows' metrics over time, alerts. */
async function deploymentSection(id: string): Promise<HTMLElement> {
  const d = (await gql(DEPLOYMENT, { ref: id })).node;
  const section = h("section", { "aria-labelledby": "mon", id: "deployment" }, h("h2", { id: "mon" }, "Serving and monitoring"));
  section.append(table(["serves", "since"], d.serves.map((l: any) => [nodeLink(l.node), when(l.edge.properties?.valid_from ?? l.edge.eventTime)])));
  const windows = [...d.windows].sort((a: any, b: any) => String(a.start).localeCompare(String(b.start)));
  if (!windows.length) {
    section.append(h("p", { class: "muted" }, "No monitoring windows recorded for this deployment."));
  } else {
    const keys = [...new Set(windows.flatMap((w: any) => Object.keys(w.metrics ?? {})))] as string[];
    const xs = windows.map((w: any) => new Date(w.start ?? w.end).getTime() / 1000);
    const charts = h("div", { class: "charts", id: "monitoring" });
    section.append(charts);
    for (const key of keys.slice(0, 12)) {
      const ys = windows.map((w: any) => (typeof w.metrics?.[key] === "number" ? w.metrics[key] : null));
      const box = h("figure", { class: "chart", "data-key": key }, h("figcaption", {}, key));
      charts.append(box);
      const css = getComputedStyle(document.documentElement);
      new uPlot({
        width: 380, height: 180,
        axes: [{ stroke: css.getPropertyValue("--fg").trim() }, { stroke: css.getPropertyValue("--fg").trim(), size: 60 }],
        series: [{}, { label: key, stroke: "#1f77b4", width: 2, spanGaps: true }],
      }, [xs, ys] as uPlot.AlignedData, box);
      box.querySelector("canvas")?.setAttribute("aria-label", `${key} per monitoring window`);
    }
  }
  section.append(h("h3", {}, `Alerts (${d.alerts.length})`));
  section.append(d.alerts.length
    ? table(["alert", "severity", "state", "message", "raised"], d.alerts.map((a: any) => [nodeLink(a), a.severity, a.state, a.message ?? "", when(a.firedAt ?? a.createdAt)]))
    : h("p", { class: "muted" }, "No alerts."));
  return section;
}
