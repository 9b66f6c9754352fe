// A node page: its properties and tags, and its neighbours one hop up and down the lineage.
import { gql } from "../api";
import { fmt, h, kindName, label, nodeLink, show, table, when } from "../dom";

const QUERY = `query NodePage($ref: String!) {
  node(ref: $ref) { id kind createdAt updatedAt properties tags }
}`;
const NEIGHBOURS = `query Neighbours($id: String!) {
  lineage(input: {roots: [$id], direction: BOTH, upstreamDepth: 1, downstreamDepth: 1, maxNodes: 500}) {
    nodes { distance direction node { id kind properties } }
    edges { source target kind role eventTime }
    truncated
  }
}`;

export async function nodeView(ref: string): Promise<void> {
  const data = await gql(QUERY, { ref });
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
  const lin = (await gql(NEIGHBOURS, { id: node.id })).lineage;
  const byId = new Map<string, any>(lin.nodes.map((n: any) => [n.node.id, n.node]));
  const rows: any[][] = [];
  for (const e of lin.edges) {
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
}
