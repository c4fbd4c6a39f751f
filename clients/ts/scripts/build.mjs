// dist/: the ESM modules with their .d.ts (tsc), and dist/browser/loupe-client.js, one
// self-contained ESM file with every dependency bundled (esbuild).
import { execFileSync } from "node:child_process";
import { rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
await rm(join(root, "dist"), { recursive: true, force: true });
execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], {
  cwd: root,
  stdio: "inherit",
});
await build({
  entryPoints: [join(root, "src", "index.ts")],
  outfile: join(root, "dist", "browser", "loupe-client.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  logLevel: "warning",
});
console.log("dist/ and dist/browser/loupe-client.js written");
