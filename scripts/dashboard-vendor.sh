#!/usr/bin/env bash
# Copy the dashboard's front-end files from the npm registry into dashboard/static/vendor/.
# `npm ci` installs exactly what dashboard/vendor/package-lock.json pins; the dist files and
# their licenses are then committed, so running the dashboard needs no Node and no CDN.
set -euo pipefail
cd "$(dirname "$0")/../dashboard/vendor"
npm ci --no-audit --no-fund
out=../static/vendor
rm -rf "$out" && mkdir -p "$out"
nm=node_modules
cp "$nm/htmx.org/dist/htmx.min.js" "$out/htmx.min.js"
cp "$nm/htmx.org/LICENSE" "$out/htmx.LICENSE"
cp "$nm/@alpinejs/csp/dist/cdn.min.js" "$out/alpine-csp.min.js"
# @alpinejs/csp ships no LICENSE file; its package.json says MIT (Copyright Caleb Porzio).
node -e 'const p=require("./node_modules/@alpinejs/csp/package.json"); console.log(`${p.name} ${p.version}\nLicense: ${p.license}\nCopyright (c) Caleb Porzio and contributors\nSee https://github.com/alpinejs/alpine/blob/main/LICENSE.md`)' > "$out/alpine-csp.LICENSE"
cp "$nm/uplot/dist/uPlot.iife.min.js" "$out/uPlot.iife.min.js"
cp "$nm/uplot/dist/uPlot.min.css" "$out/uPlot.min.css"
cp "$nm/uplot/LICENSE" "$out/uplot.LICENSE"
node -e 'const l=require("./package-lock.json"); for (const [k,v] of Object.entries(l.packages)) if (k) console.log(`${k.replace("node_modules/","")} ${v.version} ${v.integrity}`)' > "$out/VERSIONS"
echo ">> vendored into dashboard/static/vendor:"; ls "$out"
