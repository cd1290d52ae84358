// Builds the operators' console: `dist/console.js` and `dist/console.css`
// (uPlot and the page's own code, minified by esbuild), served by the Worker
// at /console.js and /console.css beside /console (index.html). Type-checks
// the sources, prints the page's weight gzipped and fails past its budget.
//   node console/build.mjs            build into console/dist
//   node console/build.mjs --check    build elsewhere; fail if console/dist differs
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

import { budget, compare, outDir } from "../scripts/dist.mjs";

const BUDGET = 40 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");
const out = outDir(join(here, "dist"), check, "console");

await esbuild.build({
  entryPoints: { console: join(here, "src/main.ts") },
  outdir: out,
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
});
// The pure helpers alone, for the unit tests.
await esbuild.build({
  entryPoints: [join(here, "src/format.ts")],
  outfile: join(out, "format.js"),
  bundle: true,
  format: "esm",
  target: "es2020",
  logLevel: "warning",
});
execFileSync(join(here, "../node_modules/.bin/tsc"), ["-p", join(here, "tsconfig.json")], { stdio: "inherit" });

budget("console page (html, js, css)", [join(here, "index.html"), join(out, "console.js"), join(out, "console.css")], BUDGET);
if (check) compare(out, join(here, "dist"), "console/dist", "node console/build.mjs");
