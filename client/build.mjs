// Builds @gamefeed/client: `dist/index.js` (the core, minified ESM, also
// served by the Worker as /client.js), `dist/react.js` (the hook; React and
// the core stay imports) and the type declarations. Prints the core's size
// minified and gzipped and fails past its budget.
//   node client/build.mjs            build into client/dist
//   node client/build.mjs --check    build elsewhere; fail if client/dist differs
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

import * as esbuild from "esbuild";

const BUDGET = 5 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "gamefeed-client-")) : join(here, "dist");

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

const size = gzipSync(readFileSync(join(out, "index.js")), { level: 9 }).length;
console.log(`@gamefeed/client core: ${size} bytes minified and gzipped (budget ${BUDGET})`);
if (size > BUDGET) {
  console.error("the core is over its size budget");
  process.exit(1);
}

if (check) {
  const files = (dir) => readdirSync(dir).filter((f) => statSync(join(dir, f)).isFile()).sort();
  const built = files(out);
  const kept = files(join(here, "dist"));
  const stale = built.filter((f) => !kept.includes(f) || !readFileSync(join(out, f)).equals(readFileSync(join(here, "dist", f))));
  const extra = kept.filter((f) => !built.includes(f));
  rmSync(out, { recursive: true, force: true });
  if (stale.length || extra.length) {
    console.error(`client/dist is not what client/src builds (${[...stale, ...extra].join(", ")}): run node client/build.mjs`);
    process.exit(1);
  }
  console.log("client/dist matches client/src");
}
