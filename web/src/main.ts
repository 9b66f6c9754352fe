// The explorer's shell: hash routes, sign-in, theme. Every view reads the hub through
// GraphQL only (api.ts).
import "./style.css";
import { ApiError, gql, setToken, token } from "./api";
import { announce, errorBox, h, newRoute, show, stillCurrent } from "./dom";
import { lineageView } from "./views/lineage";
import { modelsView, modelView } from "./views/models";
import { nodeView } from "./views/node";
import { compareView, runsView } from "./views/runs";
import { searchView } from "./views/search";

type Route = { name: string; render: (args: string[], query: URLSearchParams) => Promise<void> };

const routes: [RegExp, Route][] = [
  [/^\/?$/, { name: "search", render: (_a, q) => searchView(q.get("q") ?? "") }],
  [/^\/node\/(.+)$/, { name: "", render: ([id]) => nodeView(id) }],
  [/^\/lineage\/(.+)$/, { name: "", render: ([id], q) => lineageView(id, q) }],
  [/^\/runs$/, { name: "runs", render: (_a, q) => runsView(q) }],
  [/^\/compare\/(.+)$/, { name: "runs", render: ([ids]) => compareView(ids.split(",")) }],
  [/^\/models$/, { name: "models", render: () => modelsView() }],
  [/^\/models\/(.+)$/, { name: "models", render: ([name]) => modelView(name) }],
];

async function route(): Promise<void> {
  announce("");
  newRoute();
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?", 2);
  const query = new URLSearchParams(search);
  for (const [pattern, r] of routes) {
    const m = pattern.exec(path);
    if (!m) continue;
    for (const a of document.querySelectorAll<HTMLAnchorElement>("nav a[data-nav]")) {
      if (a.dataset.nav === r.name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const current = stillCurrent();
    try {
      let args: string[];
      try {
        args = m.slice(1).map(decodeURIComponent);
      } catch {
        show("Not found", h("h1", {}, "No such page"), h("p", {}, "The address is not a valid link (a broken % escape)."), h("p", {}, h("a", { href: "#/" }, "Back to search")));
        return;
      }
      await r.render(args, query);
    } catch (e) {
      if (current !== undefined && !current()) return; // an old page's failure
      if (e instanceof ApiError && e.code === "UNAUTHENTICATED") return; // asked already
      else {
        console.error(e);
        show("Error", h("h1", {}, "Something went wrong"), errorBox(e));
      }
    }
    return;
  }
  show("Not found", h("h1", {}, "No such page"), h("p", {}, h("a", { href: "#/" }, "Back to search")));
}

function signIn(reason: string): void {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "lh_…",
    "aria-describedby": "token-help",
  });
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", { class: "muted" }, reason),
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "muted" },
      "Ask an admin for one (lineagehub token create --user NAME). It stays in this tab only.",
    ),
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    input.value = "";
    void whoami();
    void route();
  });
  show("Sign in", form);
  input.focus();
}

async function whoami(): Promise<void> {
  const who = document.getElementById("who")!;
  const out = document.getElementById("signout")!;
  out.hidden = !token();
  try {
    const data = await gql<{ __typename: string }>("{ __typename }");
    who.textContent = data && token() ? "signed in" : "";
  } catch {
    who.textContent = "";
  }
}

function theme(): void {
  const saved = localStorage.getItem("lineagehub.theme");
  const dark = saved ? saved === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  const button = document.getElementById("theme")!;
  button.textContent = dark ? "Light theme" : "Dark theme";
  button.setAttribute("aria-pressed", String(dark));
}

document.getElementById("theme")!.addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme !== "dark";
  localStorage.setItem("lineagehub.theme", dark ? "dark" : "light");
  theme();
  window.dispatchEvent(new Event("themechange")); // the graph restyles itself
  // charts take their colours when drawn: draw the pages that have them again
  if (/^#\/(compare|node)\//.test(location.hash)) void route();
});
document.getElementById("signout")!.addEventListener("click", () => {
  setToken(null);
  void whoami();
  signIn("Signed out.");
});
document.addEventListener("keydown", (ev) => {
  // "/" jumps to search from anywhere but a text field
  const target = ev.target as HTMLElement;
  if (ev.key === "/" && !["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) {
    ev.preventDefault();
    const box = document.getElementById("q") as HTMLInputElement | null;
    if (box) box.focus();
    else location.hash = "#/";
  }
});
window.addEventListener("hashchange", () => void route());
// any call without a valid token (a view's, a button's in it): the sign-in form
window.addEventListener("unauthenticated", (ev) => {
  if (!document.getElementById("token")) signIn(String((ev as CustomEvent).detail ?? "Sign in."));
});
theme();
void whoami();
void route();
