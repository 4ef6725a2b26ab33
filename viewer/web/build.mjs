// Bundles src/main.ts with esbuild into dist/ (index.html + assets/main.js), atomically: the
// new build is written beside dist/ and swapped in, so a running server never serves half.
import { build } from "esbuild";
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const tmp = join(root, `dist.tmp-${process.pid}`);
const old = join(root, `dist.old-${process.pid}`);

rmSync(tmp, { recursive: true, force: true });
mkdirSync(join(tmp, "assets"), { recursive: true });
try {
  await build({
    entryPoints: [join(root, "src", "main.ts")],
    bundle: true,
    format: "esm",
    target: ["chrome110", "firefox115", "safari16"],
    outfile: join(tmp, "assets", "main.js"),
    minify: true,
    sourcemap: true,
    logLevel: "warning",
  });
  cpSync(join(root, "index.html"), join(tmp, "index.html"));
} catch (err) {
  rmSync(tmp, { recursive: true, force: true });
  console.error("viewer build failed:", err?.message ?? err);
  process.exit(1);
}
if (existsSync(dist)) renameSync(dist, old);
renameSync(tmp, dist);
rmSync(old, { recursive: true, force: true });
console.log(`viewer built: ${dist}`);
