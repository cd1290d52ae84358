// Type-checks the TypeScript examples of the README's "In a page" section
// (every ```ts and ```tsx block) against the built package's declarations,
// so the examples partners copy cannot drift from the package.
//   node client/test/readme-example.mjs
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const readme = readFileSync(join(root, "README.md"), "utf8");
const section = readme.split(/^## /m).find((s) => s.startsWith("In a page"));
if (!section) throw new Error("README.md has no \"In a page\" section");
const blocks = [...section.matchAll(/^```(tsx?)\n([\s\S]*?)^```/gm)];
if (blocks.length < 2) throw new Error(`expected the core and the React examples, found ${blocks.length} blocks`);

// Inside the repository, so `react`'s types resolve from node_modules.
const dir = join(root, "client/test/.readme");
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const files = blocks.map(([, lang, code], i) => {
  const file = `example${i}.${lang}`;
  writeFileSync(join(dir, file), code);
  return file;
});
writeFileSync(
  join(dir, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      target: "es2022",
      module: "esnext",
      moduleResolution: "bundler",
      lib: ["es2022", "dom"],
      jsx: "react-jsx",
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
      paths: {
        "@gamefeed/client": ["../../dist/index.d.ts"],
        "@gamefeed/client/react": ["../../dist/react.d.ts"],
      },
    },
    files,
  }),
);
try {
  execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", join(dir, "tsconfig.json")], { stdio: "inherit" });
  console.log(`the README's ${files.length} TypeScript examples type-check`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
