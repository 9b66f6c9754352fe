// The model registry: models, then one model's versions (stages, aliases, metrics), its
// history of stage and alias changes, and the promotion requests waiting for approval, with
// Approve and Reject (the hub refuses them to anyone who is not an approver, and says so).
import { ApiError, gql } from "../api";
import { announce, errorBox, fmt, h, stillCurrent, nodeLink, show, table, when } from "../dom";

const MODELS = `{
  models(first: 500, orderBy: ["name"]) { nodes { id kind properties name owner description versions { version stage aliases } } }
  pendingPromotions { ...Pending }
}`;
const PENDING = `fragment Pending on PendingPromotion {
  requestId stage requestedBy reason approvals approvalsNeeded requestedAt
  version { id kind properties modelName version stage headlineMetric { key value } }
}`;
const MODEL = `query Model($name: String!, $ref: String!) {
  node(ref: $ref) { id kind properties ... on Model { name owner description
    versions { id kind properties version stage aliases flavor createdAt headlineMetric { key value } trainedBy { id kind properties } } } }
  modelHistory(model: $name) { change alias fromStage toStage fromVersion toVersion actor reason at approvals version { version } }
  pendingPromotions(model: $name) { ...Pending }
}`;
const APPROVE = `mutation Approve($id: ID!, $comment: String) {
  approvePromotion(requestId: $id, comment: $comment) {
    __typename
    ... on ModelPromoted { stage version { modelName version } }
    ... on PromotionPending { approvals approvalsNeeded }
    ... on PolicyViolation { rules { rule message } }
  }
}`;
const REJECT = `mutation Reject($id: ID!, $reason: String!) {
  rejectPromotion(requestId: $id, reason: $reason) { requestId stage by }
}`;

export async function modelsView(): Promise<void> {
  const current = stillCurrent();
  const data = await gql(MODELS + PENDING);
  if (!current()) return;
  const rows = data.models.nodes.map((m: any) => [
    h("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name),
    m.owner ?? "—",
    String(m.versions.length),
    m.versions.filter((v: any) => v.stage && v.stage !== "None").map((v: any) => `v${v.version} ${v.stage}`).join(", ") || "—",
    m.versions.flatMap((v: any) => v.aliases.map((a: string) => `@${a} → v${v.version}`)).join(", ") || "—",
    m.description ?? "",
  ]);
  show(
    "Models",
    h("h1", {}, "Model registry"),
    pendingSection(data.pendingPromotions, () => void modelsView()),
    h("section", { "aria-labelledby": "ml" }, h("h2", { id: "ml" }, "Models"),
      table(["model", "owner", "versions", "stages", "aliases", "description"], rows)),
  );
}

export async function modelView(name: string): Promise<void> {
  const current = stillCurrent();
  let data: any;
  try {
    data = await gql(MODEL + PENDING, { name, ref: `model:${name}` });
  } catch (e) {
    // the history and pending requests of a model the hub does not hold: NOT_FOUND
    if (!(e instanceof ApiError && e.code === "NOT_FOUND")) throw e;
    data = { node: null };
  }
  if (!current()) return;
  const model = data.node;
  if (!model || model.kind !== "MODEL") {
    show("Not found", h("h1", {}, "Not found"), h("p", {}, `No registered model “${name}”.`));
    return;
  }
  const versions = [...model.versions].sort((a: any, b: any) => b.version - a.version).map((v: any) => [
    nodeLink(v),
    v.stage && v.stage !== "None" ? h("span", { class: `stage stage-${v.stage.toLowerCase()}` }, v.stage) : "—",
    v.aliases.map((a: string) => `@${a}`).join(" ") || "—",
    v.headlineMetric ? `${v.headlineMetric.key} ${fmt(v.headlineMetric.value)}` : "—",
    v.flavor ?? "—",
    v.trainedBy ? nodeLink(v.trainedBy) : "—",
    when(v.createdAt),
    h("a", { href: `#/lineage/${encodeURIComponent(v.id)}?direction=UPSTREAM&depth=4` }, "lineage"),
  ]);
  const history = [...data.modelHistory].reverse().map((c: any) => [
    when(c.at), c.change, `v${c.version.version}`,
    c.alias ? `@${c.alias}` : `${c.fromStage ?? "—"} → ${c.toStage ?? "—"}`,
    c.actor, c.approvals.join(", ") || "—", c.reason ?? "",
  ]);
  show(
    model.name,
    h("h1", {}, model.name, " ", h("span", { class: "badge" }, "model")),
    h("p", { class: "muted" }, model.description ?? "", model.owner ? ` · owner ${model.owner}` : ""),
    pendingSection(data.pendingPromotions, () => void modelView(name)),
    h("section", { "aria-labelledby": "vv" }, h("h2", { id: "vv" }, "Versions"),
      h("div", { class: "scroll" }, table(["version", "stage", "aliases", "headline metric", "flavor", "trained by", "created", ""], versions))),
    h("section", { "aria-labelledby": "hh" }, h("h2", { id: "hh" }, "History"),
      h("div", { class: "scroll" }, table(["when", "change", "version", "what", "by", "approvals", "reason"], history))),
  );
}

function pendingSection(pending: any[], refresh: () => void): HTMLElement {
  const section = h("section", { "aria-labelledby": "pp", id: "pending" }, h("h2", { id: "pp" }, `Pending approvals (${pending.length})`));
  const flash = sessionStorage.getItem("lineagehub.flash");
  sessionStorage.removeItem("lineagehub.flash");
  if (flash) section.append(h("p", { class: "flash", role: "status" }, flash));
  if (!pending.length) {
    section.append(h("p", { class: "muted" }, "No promotion request is waiting."));
    return section;
  }
  for (const p of pending) {
    const comment = h("input", { type: "text", "aria-label": `Comment or reason for ${p.version.modelName} v${p.version.version}`, placeholder: "comment (a reason is required to reject)" });
    const out = h("p", { role: "status" });
    const act = async (approve: boolean) => {
      if (!approve && !comment.value.trim()) {
        out.replaceChildren(h("span", { class: "error" }, "Give a reason to reject."));
        comment.focus();
        return;
      }
      try {
        if (approve) {
          const r = (await gql(APPROVE, { id: p.requestId, comment: comment.value.trim() || null })).approvePromotion;
          const text = r.__typename === "ModelPromoted" ? `Approved: v${r.version.version} is now ${r.stage}.`
            : r.__typename === "PromotionPending" ? `Approval recorded (${r.approvals.length} of ${r.approvalsNeeded}).`
            : `Refused by policy: ${r.rules.map((x: any) => x.message).join("; ")}`;
          announce(text);
          sessionStorage.setItem("lineagehub.flash", text);
        } else {
          await gql(REJECT, { id: p.requestId, reason: comment.value.trim() });
          announce("Rejected.");
          sessionStorage.setItem("lineagehub.flash", `Rejected the request for v${p.version.version}.`);
        }
        refresh();
      } catch (e) {
        out.replaceChildren(errorBox(e));
      }
    };
    section.append(h("article", { class: "card pending", "data-request": p.requestId, "aria-label": `Request: ${p.version.modelName} v${p.version.version} to ${p.stage}` },
      h("h3", {}, nodeLink(p.version), ` → ${p.stage}`),
      h("p", {}, `requested by ${p.requestedBy} on ${when(p.requestedAt)} · ${p.approvals.length} of ${p.approvalsNeeded} approvals`,
        p.reason ? ` · “${p.reason}”` : ""),
      h("p", { class: "actions" }, comment,
        h("button", { type: "button", class: "approve", onclick: () => void act(true) }, "Approve"),
        h("button", { type: "button", class: "reject", onclick: () => void act(false) }, "Reject")),
      out));
  }
  return section;
}
