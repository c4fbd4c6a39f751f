import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vite";

// Served by the gateway at /console/ under `script-src 'self'; style-src 'self'`: no inline
// script or style, so CSS goes to files and the module preload polyfill (inline) is off.
export default defineConfig({
  base: "/console/",
  plugins: [svelte({ compilerOptions: { css: "external" } })],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    cssCodeSplit: false,
  },
});
