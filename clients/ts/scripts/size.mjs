// The browser bundle's size: minified, and minified + gzip (what a page downloads).
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const bundle = await readFile(join(root, "dist", "browser", "loupe-client.js"));
const gzip = gzipSync(bundle, { level: 9 });
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log(`dist/browser/loupe-client.js: ${kb(bundle.length)} minified, ${kb(gzip.length)} minified + gzip`);
