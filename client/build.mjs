// Builds @gamefeed/client: `dist/index.js` (the core, minified ESM, also
// served by the Worker as /client.js), `dist/react.js` (the hook; React and
// the core stay imports) and the type declarations. Prints the core's size
// minified and gzipped and fails past its budget.
//   node client/build.mjs            build into client/dist
//   node client/build.mjs --check    build elsewhere; fail if client/dist differs
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

import { budget, compare, outDir } from "../scripts/dist.mjs";

const BUDGET = 5 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");
const out = outDir(join(here, "dist"), check, "client");

const common = { bundle: true, format: "esm", target: "es2020", minify: true, legalComments: "none", logLevel: "warning" };
await esbuild.build({ ...common, entryPoints: [join(here, "src/index.ts")], outfile: join(out, "index.js") });
const core = { name: "core", setup: (b) => b.onResolve({ filter: /^\.\/index\.js$/ }, () => ({ path: "./index.js", external: true })) };
await esbuild.build({
  ...common,
  entryPoints: [join(here, "src/react.ts")],
  outfile: join(out, "react.js"),
  external: ["react"],
  plugins: [core],
});
execFileSync(join(here, "../node_modules/.bin/tsc"), ["-p", join(here, "tsconfig.json"), "--outDir", out], { stdio: "inherit" });

budget("@gamefeed/client core", [join(out, "index.js")], BUDGET);
if (check) compare(out, join(here, "dist"), "client/dist", "node client/build.mjs");
