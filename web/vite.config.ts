// Builds the explorer into the Python package (hub/interfaces/static/explorer/), with fixed
// file names: the server serves exactly index.html, explorer.js and explorer.css from there.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/explorer/",
  build: {
    outDir: "../hub/interfaces/static/explorer",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: false,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
    rollupOptions: {
      output: {
        entryFileNames: "explorer.js",
        chunkFileNames: "explorer-[name].js",
        assetFileNames: "explorer[extname]",
      },
    },
  },
});
