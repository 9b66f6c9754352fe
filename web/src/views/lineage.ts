// The interactive lineage graph (Cytoscape.js): upstream / downstream / both, depth, node
// kinds, as-of time; click a node to see it, double-click (or "Expand") to add its
// neighbours, pick two nodes to highlight the path between them, export the picture as PNG.
// Layout is computed here, in columns by signed distance from the roots (upstream to the
// left), so a few hundred nodes draw at once without an iterative layout.
import cytoscape from "cytoscape";
import { gql } from "../api";
import { announce, errorBox, h, kindName, label, show } from "../dom";

const KINDS = [
  "RUN", "DATASET", "DATASET_VERSION", "CODE_COMMIT", "ENVIRONMENT", "ARTIFACT", "MODEL",
  "MODEL_VERSION", "DEPLOYMENT", "MONITORING_WINDOW", "ALERT", "AGENT", "EXPERIMENT", "PROJECT",
];
const COLORS: Record<string, string> = {
  RUN: "#e07b39", DATASET: "#3a86c8", DATASET_VERSION: "#4aa3df", CODE_COMMIT: "#7a7a7a",
  ENVIRONMENT: "#9b9b9b", ARTIFACT: "#b07cc6", MODEL: "#2a9d5c", MODEL_VERSION: "#3cbf72",
  DEPLOYMENT: "#c0392b", MONITORING_WINDOW: "#d4a017", ALERT: "#e63946", AGENT: "#8d6e63",
  EXPERIMENT: "#607d8b", PROJECT: "#455a64",
};
const QUERY = `query Lineage($input: LineageInput!) {
  lineage(input: $input) {
    nodes { distance direction reachedFrom node { id kind properties } }
    edges { id source target kind role }
    truncated truncationReason withheld
  }
}`;

const PATH = `query Path($from: String!, $to: String!) {
  path(from: $from, to: $to, maxDepth: 12) { relation length paths { edges { id source target kind role } } truncated }
}`;
const NODES = `query Nodes($ids: [ID!]!) { nodes(ids: $ids) { id kind properties } }`;

/** The graph on screen (one at a time). */
let live: cytoscape.Core | null = null;

type Options = { direction: string; depth: number; kinds: string[]; asOf: string };

export async function lineageView(root: string, q: URLSearchParams): Promise<void> {
  const opts: Options = {
    direction: q.get("direction") ?? "UPSTREAM",
    depth: Math.min(Math.max(Number(q.get("depth") ?? 3) || 3, 1), 10),
    kinds: (q.get("kinds") ?? "").split(",").filter((k) => KINDS.includes(k)),
    asOf: q.get("asOf") ?? "",
  };
  // a time in the link: the picker's local form (UTC), or a full ISO time with its zone
  const zoned = /(?:[zZ]|[+-]\d\d:?\d\d)$/.test(opts.asOf);
  const asOfTime = opts.asOf ? new Date(zoned ? opts.asOf : opts.asOf + "Z") : null;
  // what the hub is asked: an ISO time as the link has it (a Date keeps milliseconds only,
  // and an edge recorded at .123456 is not in the graph as of .123), else the Date's
  const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:[zZ]|[+-]\d\d:?\d\d)?$/.test(opts.asOf);
  const asOfSent = !asOfTime || isNaN(asOfTime.getTime()) ? null : iso ? (zoned ? opts.asOf : opts.asOf + "Z") : asOfTime.toISOString();
  const direction = h(
    "select",
    { id: "direction", name: "direction" },
    ...["UPSTREAM", "DOWNSTREAM", "BOTH"].map((d) => h("option", { value: d, selected: d === opts.direction }, d.toLowerCase())),
  );
  const depth = h("input", { id: "depth", name: "depth", type: "number", min: 1, max: 10, value: opts.depth });
  const asOfValue = asOfTime && !isNaN(asOfTime.getTime()) ? asOfTime.toISOString().slice(0, 19) : "";
  const asOf = h("input", { id: "asof", name: "asOf", type: "datetime-local", step: 1, value: asOfValue });
  const kindBoxes = KINDS.map((k) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "kind", value: k, checked: opts.kinds.includes(k) }), kindName(k)),
  );
  const form = h(
    "form",
    { class: "controls", "aria-label": "Lineage options" },
    h("label", { for: "direction" }, "Direction"), direction,
    h("label", { for: "depth" }, "Depth"), depth,
    h("label", { for: "asof" }, "As of (UTC)"), asOf,
    h("details", {}, h("summary", {}, "Node kinds"), h("fieldset", {}, h("legend", {}, "Only these kinds (none: all)"), ...kindBoxes)),
    h("button", { type: "submit" }, "Apply"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams({ direction: direction.value, depth: depth.value });
    const kinds = kindBoxes.map((l) => l.querySelector("input")!).filter((i) => i.checked).map((i) => i.value);
    if (kinds.length) p.set("kinds", kinds.join(","));
    // the picker shows whole seconds: a time it was given and the user left alone stays whole
    if (asOf.value) p.set("asOf", asOf.value === asOfValue ? opts.asOf : asOf.value);
    location.hash = `#/lineage/${encodeURIComponent(root)}?${p}`;
  });
  const canvas = h("div", {
    id: "graph",
    class: "graph",
    role: "application",
    tabindex: 0,
    "aria-label": `Lineage graph of ${root}. Arrow keys move between nodes (left: upstream, right: downstream, up and down: the same column), Enter opens the node (or ends a path), E expands it, P starts a path; the list beside it holds the same nodes`,
    "aria-describedby": "graph-keys",
  });
  const keys = h("p", { id: "graph-keys", class: "muted small" },
    "Keys on the graph: ← upstream, → downstream, ↑ ↓ within a column, Enter opens (or ends a path started with P), E expands.");
  const panel = h("aside", { class: "panel", "aria-label": "Selected node" }, h("p", { class: "muted" }, "Select a node."));
  const list = h("ul", { class: "nodelist", id: "nodelist", "aria-label": "Nodes in the graph" });
  const info = h("p", { class: "muted", id: "lineage-info" }, "Loading…");
  const exportButton = h("button", { type: "button", id: "export-png" }, "Export PNG");
  const fitButton = h("button", { type: "button" }, "Fit");
  const clearButton = h("button", { type: "button" }, "Clear highlight");
  show(
    "Lineage",
    h("h1", {}, "Lineage of ", h("a", { href: `#/node/${encodeURIComponent(root)}` }, root)),
    form,
    h("p", { class: "actions" }, exportButton, fitButton, clearButton, info),
    h("div", { class: "graph-layout" }, h("div", {}, canvas, keys), h("div", { class: "side" }, panel, h("h2", {}, "Nodes"), list)),
  );

  const input: Record<string, unknown> = {
    roots: [root],
    direction: opts.direction,
    upstreamDepth: opts.depth,
    downstreamDepth: opts.depth,
    maxNodes: 2000,
  };
  if (opts.kinds.length) input.nodeKinds = opts.kinds;
  let result: any;
  try {
    if (asOfTime && isNaN(asOfTime.getTime())) throw new Error(`asOf: ${JSON.stringify(opts.asOf)} is not a time`);
    if (asOfSent) input.asOf = asOfSent;
    result = (await gql(QUERY, { input })).lineage;
  } catch (e) {
    info.replaceChildren(errorBox(e));
    return;
  }
  if (!canvas.isConnected) return; // the user has moved on
  const started = performance.now();
  const column = new Map<string, number>();
  const nodes = new Map<string, any>();
  // the roots as the hub resolved them (a reference such as churn@champion names a version)
  const roots = new Set<string>(result.nodes.filter((n: any) => n.distance === 0).map((n: any) => n.node.id));
  live?.destroy(); // the previous view's graph: its animations and listeners end with it
  const cy = cytoscape({
    container: canvas,
    elements: [],
    layout: { name: "preset" }, // positions are ours (layout()); no grid layout at start
    style: style(),
    minZoom: 0.05,
    maxZoom: 3,
    boxSelectionEnabled: false,
  });
  live = cy;
  (window as any).__lineage = cy; // for the browser test and the curious

  function add(lin: any, from?: string): number {
    const base = from ? column.get(from) ?? 0 : 0;
    const fresh: any[] = [];
    for (const n of lin.nodes) {
      if (nodes.has(n.node.id)) continue;
      nodes.set(n.node.id, n.node);
      const sign = n.direction === "DOWNSTREAM" ? 1 : -1;
      column.set(n.node.id, base + sign * n.distance);
      fresh.push({ group: "nodes", data: { id: n.node.id, label: label(n.node), kind: n.node.kind ?? "" } });
    }
    const known = new Set(cy.edges().map((e) => e.id()));
    for (const e of lin.edges) {
      if (known.has(e.id) || !nodes.has(e.source) || !nodes.has(e.target)) continue;
      known.add(e.id);
      fresh.push({ group: "edges", data: { id: e.id, source: e.source, target: e.target, label: e.kind.toLowerCase() } });
    }
    cy.batch(() => {
      cy.add(fresh); // one insertion, one style pass, one render
      layout();
    });
    renderList();
    return fresh.filter((f) => f.group === "nodes").length;
  }

  /** The whole graph in view, never magnified past 1.2 (a handful of nodes stays readable). */
  function fit(): void {
    cy.fit(undefined, 50);
    if (cy.zoom() > 1.2) {
      cy.zoom(1.2);
      cy.center();
    }
  }

  function layout(): void {
    const cols = new Map<number, string[]>();
    for (const [id, c] of column) cols.set(c, [...(cols.get(c) ?? []), id]);
    for (const [c, ids] of cols) {
      const key = new Map(ids.map((id) => [id, `${nodes.get(id).kind} ${label(nodes.get(id))}`]));
      ids.sort((a, b) => (key.get(a)! < key.get(b)! ? -1 : key.get(a)! > key.get(b)! ? 1 : 0));
      ids.forEach((id, i) => cy.getElementById(id).position({ x: c * 240, y: (i - (ids.length - 1) / 2) * 64 }));
    }
    for (const id of roots) cy.getElementById(id).addClass("root");
  }

  function renderList(): void {
    const items = [...nodes.values()].sort((a, b) => (column.get(a.id)! - column.get(b.id)!) || label(a).localeCompare(label(b)));
    list.replaceChildren(
      ...items.map((n) =>
        h("li", {}, h("button", { type: "button", class: "linkish", "data-id": n.id, onclick: () => select(n.id) }, label(n)), " ", h("span", { class: "badge" }, kindName(n.kind))),
      ),
    );
  }

  let pathFrom: string | null = null;
  /** Show a node in the panel; choosing it (a click, the list, not an arrow key's move)
   *  ends a path started with "Highlight path to…". */
  function select(id: string, moveOnly = false): void {
    const n = nodes.get(id);
    if (!n) return;
    if (pathFrom && pathFrom !== id && !moveOnly) {
      void highlight(pathFrom, id);
      pathFrom = null;
    }
    cy.elements().unselect();
    const el = cy.getElementById(id);
    el.select();
    cy.animate({ center: { eles: el } }, { duration: 150 });
    const expand = h("button", { type: "button", id: "expand", onclick: () => void expandNode(id) }, "Expand neighbours");
    const pathButton = h("button", { type: "button", id: "path-from", onclick: () => {
      pathFrom = id;
      announce(`Path from ${label(n)}: now pick the other node.`);
      pathButton.textContent = "Now pick the other node…";
    } }, "Highlight path to…");
    panel.replaceChildren(
      h("h2", {}, label(n)),
      h("p", {}, h("span", { class: "badge" }, kindName(n.kind)), " ", h("code", { class: "small" }, n.id)),
      h("p", { class: "actions" },
        h("a", { class: "button", href: `#/node/${encodeURIComponent(id)}` }, "Open"),
        h("a", { class: "button", href: `#/lineage/${encodeURIComponent(id)}?direction=BOTH&depth=2` }, "Recentre"),
        expand, pathButton),
    );
  }

  /** The hub's shortest lineage path between a and b (drawing any node of it not drawn yet);
   *  when the hub knows none, the shortest undirected path in the drawn graph. */
  async function highlight(a: string, b: string): Promise<void> {
    cy.elements().removeClass("path");
    if (asOfSent) {
      // the hub's paths are of the graph now; the one drawn is the graph as of then
      highlightDrawn(a, b);
      announce(info.textContent ?? "");
      return;
    }
    let found: any = null;
    try {
      found = (await gql(PATH, { from: a, to: b })).path;
    } catch (e) {
      info.replaceChildren(errorBox(e));
      return;
    }
    const edges: any[] = found.paths[0]?.edges ?? [];
    if (edges.length) {
      const missing = [...new Set(edges.flatMap((e) => [e.source, e.target]))].filter((id) => !nodes.has(id));
      if (missing.length) {
        const fetched = (await gql(NODES, { ids: missing })).nodes.filter(Boolean);
        // place them by walking the path: each edge's target is one step upstream of its source
        const col = new Map<string, number>([...column]);
        for (let pass = 0; pass < edges.length; pass++) {
          for (const e of edges) {
            if (col.has(e.source) && !col.has(e.target)) col.set(e.target, col.get(e.source)! - 1);
            if (col.has(e.target) && !col.has(e.source)) col.set(e.source, col.get(e.target)! + 1);
          }
        }
        const lin = {
          nodes: fetched.map((n: any) => ({ node: n, distance: Math.abs(col.get(n.id) ?? 0), direction: (col.get(n.id) ?? 0) > 0 ? "DOWNSTREAM" : "UPSTREAM" })),
          edges,
        };
        add(lin);
        fit();
      } else {
        add({ nodes: [], edges });
      }
      for (const e of edges) cy.getElementById(e.id).addClass("path");
      for (const id of new Set(edges.flatMap((e) => [e.source, e.target]))) cy.getElementById(id).addClass("path");
      const [la, lb] = [label(nodes.get(a)), label(nodes.get(b))];
      const relation = found.relation === "connected" ? `${la} and ${lb} are connected` : `${la} is ${found.relation} of ${lb}`;
      info.textContent = `${relation}: a path of ${found.length} hop(s) highlighted.`;
    } else {
      const drawn = cy.elements().aStar({ root: cy.getElementById(a), goal: cy.getElementById(b), directed: false });
      if (drawn.found) {
        drawn.path.addClass("path");
        info.textContent = `Neither is upstream of the other; connected in the drawn graph by ${drawn.distance} hop(s).`;
      } else {
        info.textContent = "No path between them.";
      }
    }
    announce(info.textContent ?? "");
  }

  /** The shortest path between a and b in the drawn graph: along the edges (one is upstream
   *  of the other) if there is one, else either way. */
  function highlightDrawn(a: string, b: string): void {
    const [na, nb] = [cy.getElementById(a), cy.getElementById(b)];
    const [la, lb] = [label(nodes.get(a)), label(nodes.get(b))];
    // edges point from what came later to what it came from: b reaches a when a is upstream
    const tries: [any, any, string][] = [[nb, na, "upstream"], [na, nb, "downstream"]];
    for (const [from, to, relation] of tries) {
      const found = cy.elements().aStar({ root: from, goal: to, directed: true });
      if (found.found) {
        found.path.addClass("path");
        info.textContent = `${la} is ${relation} of ${lb}: a path of ${found.distance} hop(s) highlighted.`;
        return;
      }
    }
    const drawn = cy.elements().aStar({ root: na, goal: nb, directed: false });
    if (drawn.found) {
      drawn.path.addClass("path");
      info.textContent = `${la} and ${lb} are connected: a path of ${drawn.distance} hop(s) highlighted.`;
    } else {
      info.textContent = "No path between them.";
    }
  }

  async function expandNode(id: string): Promise<void> {
    const input: Record<string, unknown> = { roots: [id], direction: "BOTH", upstreamDepth: 1, downstreamDepth: 1, maxNodes: 500 };
    if (asOfSent) input.asOf = asOfSent; // the neighbours it had then
    try {
      const more = (await gql(QUERY, { input })).lineage;
      const added = add(more, id);
      fit();
      const cut = more.truncated ? `; it has more neighbours than the ${more.nodes.length - 1} drawn (${more.truncationReason})` : "";
      info.textContent = `${nodes.size} nodes, ${cy.edges().length} edges (${added} added${cut}).`;
      announce(info.textContent);
      document.querySelector<HTMLButtonElement>(`#nodelist button[data-id="${CSS.escape(id)}"]`)?.focus();
    } catch (e) {
      info.replaceChildren(errorBox(e));
    }
  }

  add(result);
  fit();
  const drawnIn = performance.now() - started;
  canvas.dataset.drawMs = drawnIn.toFixed(0);
  info.textContent = `${nodes.size} nodes, ${cy.edges().length} edges${result.truncated ? ` (truncated: ${result.truncationReason})` : ""}${result.withheld ? `, ${result.withheld} withheld` : ""}.`;
  canvas.dataset.ready = "true";
  cy.on("tap", "node", (ev) => select(ev.target.id()));
  canvas.addEventListener("keydown", (ev) => {
    const current = cy.$("node:selected").first().id() || [...roots][0] || root;
    const here = cy.getElementById(current);
    const col = column.get(current) ?? 0;
    const step: Record<string, number> = { ArrowLeft: -1, ArrowRight: 1 };
    let target: string | null = null;
    if (ev.key in step || ev.key === "ArrowUp" || ev.key === "ArrowDown") {
      const y = here.position("y");
      const wanted = col + (step[ev.key] ?? 0);
      const near = here.neighborhood("node").map((n) => n.id());
      let candidates = [...column].filter(([id, c]) => c === wanted && id !== current).map(([id]) => id);
      if (ev.key === "ArrowUp") candidates = candidates.filter((id) => cy.getElementById(id).position("y") < y);
      if (ev.key === "ArrowDown") candidates = candidates.filter((id) => cy.getElementById(id).position("y") > y);
      if (ev.key in step && candidates.some((id) => near.includes(id))) candidates = candidates.filter((id) => near.includes(id));
      candidates.sort((a, b) => Math.abs(cy.getElementById(a).position("y") - y) - Math.abs(cy.getElementById(b).position("y") - y));
      target = candidates[0] ?? null;
    } else if (ev.key === "Enter") {
      if (pathFrom && pathFrom !== current) select(current); // ends the path there
      else location.hash = `#/node/${encodeURIComponent(current)}`;
    } else if (ev.key === "e" || ev.key === "E") {
      void expandNode(current);
    } else if (ev.key === "p" || ev.key === "P") {
      select(current);
      document.getElementById("path-from")?.click();
    } else {
      return;
    }
    ev.preventDefault();
    if (target) {
      select(target, true);
      announce(`${label(nodes.get(target))}, ${kindName(nodes.get(target).kind)}`);
    }
  });
  cy.on("dbltap", "node", (ev) => void expandNode(ev.target.id()));
  fitButton.addEventListener("click", fit);
  clearButton.addEventListener("click", () => {
    cy.elements().removeClass("path");
    pathFrom = null;
  });
  exportButton.addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme === "dark";
    // within what a browser canvas can hold (16,384 px a side, 268M px): a larger one is empty
    const box = cy.elements().boundingBox();
    const w = Math.max(box.w, 1), hgt = Math.max(box.h, 1);
    const scale = Math.min(2, 16000 / w, 16000 / hgt, Math.sqrt(2.6e8 / (w * hgt)));
    const uri = cy.png({ full: true, scale, bg: dark ? "#14171c" : "#ffffff", output: "base64uri" }) as string;
    if (!uri || uri.length < 100) {
      info.textContent = "The graph is too large for a PNG in the browser: export it as SVG or PDF (lineagehub lineage -o, or /export/lineage).";
      announce(info.textContent);
      return;
    }
    const a = h("a", { href: uri, download: `lineage-${root.replace(/[^\w.-]+/g, "_")}.png` });
    document.body.append(a);
    a.click();
    a.remove();
  });
  const restyle = () => (cy.destroyed() ? window.removeEventListener("themechange", restyle) : cy.style(style()));
  window.addEventListener("themechange", restyle);
}

function style(): any[] {
  const css = getComputedStyle(document.documentElement);
  const fg = css.getPropertyValue("--fg").trim() || "#222";
  const muted = css.getPropertyValue("--muted").trim() || "#888";
  const accent = css.getPropertyValue("--accent").trim() || "#f0a";
  return [
    {
      selector: "node",
      style: {
        "background-color": (el: any) => COLORS[el.data("kind")] ?? "#888",
        label: "data(label)",
        color: fg,
        "font-size": 11,
        "text-valign": "bottom",
        "text-margin-y": 4,
        "text-max-width": "180px",
        "text-wrap": "ellipsis",
        "min-zoomed-font-size": 6,
        width: 22,
        height: 22,
      },
    },
    { selector: "node.root", style: { "border-width": 3, "border-color": fg, width: 30, height: 30 } },
    { selector: "node:selected", style: { "border-width": 4, "border-color": accent } },
    {
      selector: "edge",
      style: {
        width: 1.5,
        "line-color": muted,
        "target-arrow-color": muted,
        "target-arrow-shape": "triangle",
        "curve-style": "straight",
        "min-zoomed-font-size": 7, // labels only when readable: large graphs draw fast
        label: "data(label)",
        "font-size": 8,
        color: muted,
        "text-rotation": "autorotate",
      },
    },
    { selector: "edge.path", style: { "line-color": accent, "target-arrow-color": accent, width: 4 } },
    { selector: "node.path", style: { "border-width": 4, "border-color": accent } },
  ];
}
