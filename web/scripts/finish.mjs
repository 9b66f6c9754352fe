// After `vite build`: put the licences of the libraries inside explorer.js beside it, and
// record a digest of the sources the build was made from (build.json), which
// tests/test_explorer.py recomputes to catch a source change committed without a rebuild.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";

const web = new URL("..", import.meta.url).pathname;
const out = join(web, "..", "hub", "interfaces", "static", "explorer");
const bundled = ["cytoscape", "uplot"];

const licences = bundled.map((name) => {
  const meta = JSON.parse(readFileSync(join(web, "node_modules", name, "package.json"), "utf8"));
  const text = readFileSync(join(web, "node_modules", name, "LICENSE"), "utf8").trim();
  return `${name}@${meta.version} (${meta.license})\n\n${text}\n`;
});
writeFileSync(join(out, "LICENSES.txt"), licences.join("\n" + "-".repeat(72) + "\n\n"));

/** The files the build reads, in a fixed order (the same list as SOURCES in the test). */
function sources() {
  const files = ["index.html", "package-lock.json", "tsconfig.json", "vite.config.ts", "scripts/finish.mjs"];
  const walk = (dir) => {
    for (const name of readdirSync(join(web, dir))) {
      const path = join(dir, name);
      if (statSync(join(web, path)).isDirectory()) walk(path);
      else files.push(path.split(sep).join("/"));
    }
  };
  walk("src");
  return files.sort();
}

const digest = createHash("sha256");
for (const file of sources()) {
  const content = readFileSync(join(web, file));
  digest.update(`${file}\0${createHash("sha256").update(content).digest("hex")}\n`);
}
writeFileSync(join(out, "build.json"), JSON.stringify({ sources: digest.digest("hex") }, null, 2) + "\n");
console.log(`explorer built into ${relative(process.cwd(), out)}`);
