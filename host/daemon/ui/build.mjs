// Builds the web UI into dist/ (embedded into the daemon by host/daemon/build.rs):
// src/main.jsx bundled and minified by esbuild into dist/app.js, with
// src/index.html and src/style.css copied. A file is written only when its
// content changed, so an unchanged UI does not make cargo rebuild the daemon.
import { build } from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
mkdirSync(dist, { recursive: true });

const result = await build({
  entryPoints: [join(root, 'src/main.jsx')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  write: false,
  outfile: join(dist, 'app.js'),
  logLevel: 'warning',
});

const wanted = new Map();
for (const file of result.outputFiles) wanted.set(file.path, Buffer.from(file.contents));
for (const name of ['index.html', 'style.css', 'favicon.svg']) {
  wanted.set(join(dist, name), readFileSync(join(root, 'src', name)));
}

let written = 0;
for (const [path, bytes] of wanted) {
  if (existsSync(path) && readFileSync(path).equals(bytes)) continue;
  writeFileSync(path, bytes);
  written += 1;
}
// Files of an earlier build that this one does not make.
for (const name of readdirSync(dist)) {
  const path = join(dist, name);
  if (name !== '.gitignore' && !wanted.has(path)) {
    rmSync(path, { recursive: true, force: true });
    written += 1;
  }
}
const bytes = [...wanted.values()].reduce((n, b) => n + b.length, 0);
console.log(`ui: ${wanted.size} files, ${bytes} bytes in ${dist} (${written} changed)`);
