// A few DOM helpers: elements are built with textContent (never innerHTML from data), so no
// value from the hub can become markup.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

let generation = 0;

/** A new page is being shown (main.ts calls it on every route change). */
export function newRoute(): void {
  generation++;
}

/** Taken when a view starts: false once the user has moved on, so a slow answer for an old
 *  page does not replace the page now on screen. */
export function stillCurrent(): () => boolean {
  const mine = generation;
  return () => mine === generation;
}

export function main(): HTMLElement {
  return document.getElementById("main") as HTMLElement;
}

/** Replace the main area's content and move focus there (for keyboard and screen readers). */
export function show(title: string, ...content: Child[]): HTMLElement {
  const el = main();
  el.replaceChildren(...(content.filter(Boolean) as (Node | string)[]).map((c) => (typeof c === "number" ? String(c) : c)));
  document.title = `${title} · LineageHub explorer`;
  el.focus({ preventScroll: true });
  return el;
}

export function announce(message: string): void {
  const status = document.getElementById("status");
  if (status) status.textContent = message;
}

export function errorBox(e: unknown): HTMLElement {
  const err = e as { message?: string; code?: string };
  return h("p", { class: "error", role: "alert" }, err.code ? `${err.code}: ` : "", err.message ?? String(e));
}

/** A short, readable label for any node. */
export function label(node: { id: string; kind?: string | null; properties?: any }): string {
  const p = node.properties ?? {};
  if (p.model !== undefined && p.version !== undefined) return `${p.model} v${p.version}`;
  if (p.namespace && p.name) return `${p.namespace}/${p.name}${p.digest ? "@" + String(p.digest).slice(7, 15) : ""}`;
  if (p.name) return String(p.name);
  if (p.rule) return `alert ${p.rule}`;
  if (p.sha) return `${String(p.sha).slice(0, 10)}${p.branch ? ` (${p.branch})` : ""}`;
  if (p.python) return `python ${p.python} · ${String(p.packages_digest ?? "").slice(7, 15)}`;
  if (p.digest && p.kind) return `${p.kind} ${String(p.digest).slice(7, 15)}`;
  if (p.environment) return `${p.environment} deployment`;
  return node.id;
}

export function kindName(kind?: string | null): string {
  return (kind ?? "node").toLowerCase().replace(/_/g, " ");
}

export function nodeLink(node: { id: string; kind?: string | null; properties?: any }): HTMLAnchorElement {
  return h("a", { href: `#/node/${encodeURIComponent(node.id)}`, class: `kind-${(node.kind ?? "").toLowerCase()}` }, label(node));
}

export function fmt(value: unknown): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(5)));
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function when(value?: string | null): string {
  if (!value) return "—";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

export function table(headers: string[], rows: (Child | Child[])[][], caption?: string): HTMLTableElement {
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))),
  );
}
