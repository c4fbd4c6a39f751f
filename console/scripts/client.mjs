// Builds @loupe/client (../clients/ts) before the console: `npm ci` when its node_modules does
// not hold what its lockfile names (the same stamp the Python tests use), then `npm run build`.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const client = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "clients", "ts");
const npm = process.env.npm_execpath
  ? [process.execPath, process.env.npm_execpath]
  : [process.platform === "win32" ? "npm.cmd" : "npm"];

function run(...args) {
  execFileSync(npm[0], [...npm.slice(1), ...args], { cwd: client, stdio: "inherit" });
}

const lock = createHash("sha256").update(readFileSync(join(client, "package-lock.json"))).digest("hex");
const stamp = join(client, "node_modules", ".loupe-lock-sha256");
if (!existsSync(stamp) || readFileSync(stamp, "utf8") !== lock) {
  run("ci", "--no-audit", "--no-fund");
  writeFileSync(stamp, lock);
}
run("run", "build");
