#!/usr/bin/env node
// plexus-plugin-sdk build [PROJECT] [--out FILE.wasm] [--entry app.js] [--no-http]
// plexus-plugin-sdk describe [PROJECT]
//
// `build` imports the plugin in Node first (so a broken module is one clear
// line), bundles it with the SDK's glue (esbuild; `plexus:*` stays an import),
// and runs componentize-js 0.23.0 for the `plexus-plugin` world. It prints the
// component's path on stdout; progress goes to stderr. Exit 1 on a problem,
// 2 on bad arguments.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isPlugin } from './index.js';

const SDK = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WIT = join(SDK, 'wit', 'plexus-plugin.wit');

const USAGE = `usage: plexus-plugin-sdk build [PROJECT] [--out FILE.wasm] [--entry FILE] [--no-http]
       plexus-plugin-sdk describe [PROJECT]

build     build PROJECT (default .) into a WASM component; prints its path
describe  print the plugin's metadata (JSON), as the host will see it

--out FILE    the component (default PROJECT/target/<package name>.wasm)
--entry FILE  the plugin's module (default package.json's plexus.entry, else app.js)
--no-http     leave out wasi:http (fetch); by default fetch() works where the
              plugin's manifest grants the network`;

class Problem extends Error {}

function fail(message, code = 1) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

/** The project's package.json (or {}), entry module path and name. */
function project(dir, entryFlag) {
  const root = resolve(dir);
  if (!existsSync(root)) throw new Problem(`${root} does not exist`);
  const pkgPath = join(root, 'package.json');
  const pkg = existsSync(pkgPath) ? JSON.parse(readFileSync(pkgPath, 'utf8')) : {};
  const entry = resolve(root, entryFlag ?? pkg.plexus?.entry ?? 'app.js');
  if (!existsSync(entry)) throw new Problem(`${entry} does not exist: the plugin's module (package.json "plexus": {"entry": ...})`);
  return { root, pkg, entry };
}

/** Import the plugin module in Node and check its default export. */
async function loadPlugin({ entry, pkg }) {
  let module;
  try {
    module = await import(pathToFileURL(entry).href);
  } catch (e) {
    throw new Problem(`cannot import ${entry}: ${e.message.split('\n')[0]}`);
  }
  const plugin = module.default;
  if (!isPlugin(plugin)) throw new Problem(`${entry}: the default export is not a plugin (export default definePlugin({...}))`);
  if (pkg.version !== undefined && pkg.version !== plugin.metadata.version) {
    throw new Problem(`${entry}: version ${plugin.metadata.version} differs from package.json's ${pkg.version}; keep them equal`);
  }
  return plugin;
}

async function build(args) {
  const proj = project(args.positionals[1] ?? '.', args.values.entry);
  const plugin = await loadPlugin(proj);
  const name = (proj.pkg.name ?? basename(proj.root)).replace(/^@.*\//, '');
  const out = resolve(args.values.out ?? join(proj.root, 'target', `${name}.wasm`));
  const started = Date.now();
  process.stderr.write(`building plugin \`${plugin.metadata.id}\` ${plugin.metadata.version} (${proj.entry}) with componentize-js 0.23.0 ...\n`);
  const scratch = mkdtempSync(join(tmpdir(), 'plexus-js-'));
  try {
    const main = join(scratch, 'entry.js');
    writeFileSync(
      main,
      [
        `import * as host from 'plexus:plugin/host@0.2.0';`,
        `import plugin from ${JSON.stringify(proj.entry)};`,
        `import { makeGuest } from ${JSON.stringify(join(SDK, 'src', 'glue.js'))};`,
        `export const guest = makeGuest(plugin, host);`,
        '',
      ].join('\n'),
    );
    const bundle = join(scratch, 'bundle.js');
    const esbuild = await import('esbuild');
    await esbuild.build({
      entryPoints: [main],
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      outfile: bundle,
      external: ['plexus:*'],
      logLevel: 'error',
      absWorkingDir: proj.root,
      nodePaths: [join(proj.root, 'node_modules')],
    });
    const { componentize } = await import('@bytecodealliance/componentize-js');
    const disableFeatures = args.values['no-http'] ? ['http', 'fetch-event'] : ['fetch-event'];
    const { component } = await componentize({
      sourcePath: bundle,
      witPath: WIT,
      worldName: 'plexus-plugin',
      disableFeatures,
    });
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, component);
    const mb = (component.byteLength / 1e6).toFixed(1);
    process.stderr.write(`built ${out} (${mb} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    process.stdout.write(`${out}\n`);
  } catch (e) {
    if (e instanceof Problem) throw e;
    throw new Problem(`componentize failed: ${String(e.message ?? e).split('\n').slice(0, 3).join(' ')}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function describe(args) {
  const plugin = await loadPlugin(project(args.positionals[1] ?? '.', args.values.entry));
  const m = plugin.metadata;
  const operations = m.operations.map((op) => ({
    ...op,
    paramsSchema: op.paramsSchema && JSON.parse(op.paramsSchema),
    outputSchema: op.outputSchema && JSON.parse(op.outputSchema),
  }));
  process.stdout.write(`${JSON.stringify({ ...m, operations }, null, 2)}\n`);
}

let args;
try {
  args = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      entry: { type: 'string' },
      'no-http': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (e) {
  fail(`${e.message}\n${USAGE}`, 2);
}
const command = args.positionals[0];
if (args.values.help) {
  process.stdout.write(`${USAGE}\n`);
} else if (command !== 'build' && command !== 'describe') {
  fail(command ? `unknown command \`${command}\`\n${USAGE}` : USAGE, 2);
} else {
  try {
    await (command === 'build' ? build(args) : describe(args));
  } catch (e) {
    fail(e instanceof Problem ? e.message : e.stack ?? String(e));
  }
}
