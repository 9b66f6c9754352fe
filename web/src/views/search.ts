// Search: one box over runs, models, model versions, datasets, deployments and alerts. An exact
// id or reference (tumor-classifier@champion, run:…) opens that node; other text is looked for
// by the hub in the names, ids, tags and other text fields of every node of each kind
// (the filter operator $contains), newest first, at most PAGE of each.
import { gql } from "../api";
import { errorBox, h, kindName, nodeLink, show, when } from "../dom";

const PAGE = 50;
const FIELDS = "nodes { id kind createdAt properties }";
const EXACT = `query Exact($ref: String!) { node(ref: $ref) { id kind createdAt properties } }`;
const QUERY = `query Search($n: Int!, $runs: JSON, $models: JSON, $versions: JSON, $datasets: JSON,
    $deployments: JSON, $alerts: JSON) {
  runs(first: $n, orderBy: ["-_created_at"], where: $runs) { ${FIELDS} }
  models(first: $n, orderBy: ["-_created_at"], where: $models) { ${FIELDS} }
  modelVersions(first: $n, orderBy: ["-_created_at"], where: $versions) { ${FIELDS} }
  datasets(first: $n, orderBy: ["-_created_at"], where: $datasets) { ${FIELDS} }
  deployments(first: $n, orderBy: ["-_created_at"], where: $deployments) { ${FIELDS} }
  alerts(first: $n, orderBy: ["-_created_at"], where: $alerts) { ${FIELDS} }
}`;
/** The text fields each kind is searched in (besides its id). */
const SEARCHED: Record<string, string[]> = {
  runs: ["name", "experiment", "project", "tags"],
  models: ["name", "description", "tags"],
  versions: ["model", "aliases", "description", "tags"],
  datasets: ["name", "namespace", "description"],
  deployments: ["name", "environment", "endpoint", "tags"],
  alerts: ["rule", "message"],
};

/** The hub-side filter for ``text`` in one kind's fields (the operator takes 1–200 chars). */
function where(fields: string[], text: string): unknown {
  const t = text.slice(0, 200);
  return { $or: ["id", ...fields].map((f) => ({ [f]: { $contains: t } })) };
}

type Hit = { id: string; kind: string; createdAt?: string; properties: any };
const GROUPS: [string, string][] = [
  ["runs", "Runs"],
  ["models", "Models"],
  ["modelVersions", "Model versions"],
  ["datasets", "Datasets"],
  ["deployments", "Deployments"],
  ["alerts", "Alerts"],
];

export async function searchView(q: string): Promise<void> {
  const input = h("input", {
    id: "q",
    type: "search",
    name: "q",
    value: q,
    placeholder: "a name, an id or a reference: tumor-classifier@champion",
    "aria-label": "Search runs, models, datasets, deployments and alerts",
    autocomplete: "off",
  });
  const results = h("div", { id: "results", "aria-live": "polite" }, h("p", { class: "muted" }, "Searching…"));
  const form = h(
    "form",
    { role: "search", class: "searchbar" },
    input,
    h("button", { type: "submit" }, "Search"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    location.hash = value ? `#/?q=${encodeURIComponent(value)}` : "#/";
  });
  show("Search", h("h1", {}, "Search the hub"), form, results);
  input.focus();
  input.setSelectionRange(q.length, q.length);

  let data: Record<string, any>;
  try {
    // an id or a reference opens its node; other text is not one (VALIDATION): no exact hit
    const exact = q ? gql(EXACT, { ref: q }).then((d) => d.node, () => null) : Promise.resolve(null);
    // nothing asked: the newest few of each kind (a landing page that stays fast)
    const filters = Object.fromEntries(
      Object.entries(SEARCHED).map(([k, fields]) => [k, q ? where(fields, q) : null]),
    );
    data = { ...(await gql(QUERY, { n: q ? PAGE : 8, ...filters })), exact: await exact };
  } catch (e) {
    if ((e as { code?: string }).code === "UNAUTHENTICATED") throw e;
    results.replaceChildren(errorBox(e));
    return;
  }
  const needle = q.toLowerCase();
  const sections: HTMLElement[] = [];
  if (data.exact) {
    sections.push(
      h("section", { "aria-labelledby": "g-exact" }, h("h2", { id: "g-exact" }, "Exact match"),
        h("ul", { class: "hits" }, hit(data.exact))),
    );
  }
  let total = data.exact ? 1 : 0;
  for (const [key, title] of GROUPS) {
    const found: Hit[] = data[key]?.nodes ?? [];
    if (!found.length) continue;
    total += found.length;
    const shown = needle ? found : found.slice(0, 8);
    sections.push(
      h("section", { "aria-labelledby": `g-${key}` },
        h("h2", { id: `g-${key}` }, `${title} `, h("span", { class: "count" }, needle ? (found.length >= PAGE ? `(newest ${PAGE})` : `(${found.length})`) : "(newest)")),
        h("ul", { class: "hits" }, ...shown.map(hit))),
    );
  }
  results.replaceChildren(
    ...(sections.length ? sections : [h("p", {}, `Nothing matches “${q}”.`)]),
  );
  results.dataset.total = String(total);
}

function hit(n: Hit): HTMLElement {
  return h(
    "li",
    {},
    nodeLink(n),
    h("span", { class: "badge" }, kindName(n.kind)),
    h("span", { class: "muted small" }, ` ${n.id} · ${when(n.createdAt)}`),
  );
}
