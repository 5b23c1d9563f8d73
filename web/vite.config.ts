/**
 * The dashboard's build: one ES module bundle and a stylesheet under
 * dist/assets (content-hashed, so the API server can cache them forever)
 * and dist/index.html, which every API process serves at `/`. The SDK's
 * web entry is bundled from source (its package exports point at a build).
 */
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  resolve: {
    alias: [{ find: /^@stockroom\/sdk\/web$/, replacement: fileURLToPath(new URL("../sdk/src/web.ts", import.meta.url)) }],
  },
  oxc: { jsx: { runtime: "automatic" } },
  build: {
    target: "es2022",
    outDir: "dist",
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});
