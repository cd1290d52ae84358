// What the browser packages' builds share (client/build.mjs,
// console/build.mjs): the gzipped size of a file against its budget, and
// the check that a committed dist/ is exactly what its sources build.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

/** Where a build writes: `dist` itself, or with `--check` a temporary folder. */
export function outDir(dist, check, name) {
  return check ? mkdtempSync(join(tmpdir(), `gamefeed-${name}-`)) : dist;
}

/** Bytes of `files` (paths) minified and gzipped; exits 1 past `budget`. */
export function budget(label, files, limit) {
  const size = files.reduce((sum, f) => sum + gzipSync(readFileSync(f), { level: 9 }).length, 0);
  console.log(`${label}: ${size} bytes minified and gzipped (budget ${limit})`);
  if (size > limit) {
    console.error(`${label} is over its size budget`);
    process.exit(1);
  }
  return size;
}

/** With `--check`: fails when `dist` differs from what was built into `out`. */
export function compare(out, dist, what, rebuild) {
  const files = (dir) => readdirSync(dir).filter((f) => statSync(join(dir, f)).isFile()).sort();
  const built = files(out);
  const kept = files(dist);
  const stale = built.filter((f) => !kept.includes(f) || !readFileSync(join(out, f)).equals(readFileSync(join(dist, f))));
  const extra = kept.filter((f) => !built.includes(f));
  rmSync(out, { recursive: true, force: true });
  if (stale.length || extra.length) {
    console.error(`${what} is not what its sources build (${[...stale, ...extra].join(", ")}): run ${rebuild}`);
    process.exit(1);
  }
  console.log(`${what} matches its sources`);
}
