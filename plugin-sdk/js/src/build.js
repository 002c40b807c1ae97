// The build: a plugin project → one bundled module → a WASM component of the
// `plexus-plugin` world.
//
// 1. Import the plugin module in Node and check its default export (a broken
//    module is one clear line, not a componentize-js trace).
// 2. Bundle a generated entry module (it imports `plexus:plugin/host@0.4.0`,
//    the author's default export and the SDK's glue, and exports `guest`) with
//    esbuild: componentize-js takes one module, and `plexus:*` stays an import.
// 3. Run componentize-js 0.23.0 on the bundle with the packaged WIT.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isPlugin } from './index.js';

/** The SDK's folder (it holds `wit/plexus-plugin.wit`). */
export const SDK_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The WIT the component is built against (the top-level `wit/`, linked or copied). */
export const WIT_PATH = join(SDK_DIR, 'wit', 'plexus-plugin.wit');
/** The WIT world components implement. */
export const WORLD = 'plexus-plugin';
/** The only import a bundle may keep (the generated entry's). */
export const HOST_IMPORT = 'plexus:plugin/host@0.4.0';

/** A build problem, told to the user as one line. */
export class BuildError extends Error {}

/**
 * A plugin project: its folder, package.json and entry module.
 *
 * @param {string} dir the project folder
 * @param {{entry?: string}} [options] `entry` overrides package.json's `plexus.entry` (default `app.js`)
 * @returns {{root: string, pkg: object, entry: string}}
 * @throws {BuildError} when the folder, package.json or the entry module is missing or broken
 */
export function readProject(dir, { entry } = {}) {
  const root = resolve(dir);
  if (!existsSync(root)) throw new BuildError(`${root} does not exist`);
  const pkgPath = join(root, 'package.json');
  let pkg = {};
  if (existsSync(pkgPath)) {
    try {
      pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));
    } catch (e) {
      throw new BuildError(`${pkgPath} is not JSON: ${e.message}`);
    }
  }
  const main = resolve(root, entry ?? pkg.plexus?.entry ?? 'app.js');
  if (!existsSync(main)) {
    throw new BuildError(`${main} does not exist: the plugin's module (--entry, or package.json "plexus": {"entry": ...})`);
  }
  return { root, pkg, entry: main };
}

/**
 * Import the project's entry module in Node and return its default export.
 *
 * @param {{pkg: object, entry: string}} project from {@link readProject}
 * @returns {Promise<object>} the plugin
 * @throws {BuildError} when it cannot be imported, is not a plugin, or its version differs from package.json's
 */
export async function loadPlugin({ entry, pkg }) {
  let module;
  try {
    module = await import(pathToFileURL(entry).href);
  } catch (e) {
    throw new BuildError(`cannot import ${entry}: ${String(e.message ?? e).split('\n')[0]}`);
  }
  const plugin = module.default;
  if (!isPlugin(plugin)) {
    throw new BuildError(`${entry}: the default export is not a plugin (export default definePlugin({...}))`);
  }
  if (pkg.version !== undefined && pkg.version !== plugin.metadata.version) {
    throw new BuildError(`${entry}: version ${plugin.metadata.version} differs from package.json's ${pkg.version}; keep them equal`);
  }
  return plugin;
}

/** Import one of the SDK's own dependencies, or say how to install them. */
async function dependency(name) {
  try {
    return await import(name);
  } catch (e) {
    if (e?.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(name)) {
      throw new BuildError(`the SDK's dependency ${name} is not installed: run \`npm install\` in ${SDK_DIR}`);
    }
    throw e;
  }
}

/**
 * componentize-js 0.23.0's splicer imports `@bytecodealliance/preview2-shim`
 * without declaring it; 0.26 of the shim no longer lets it read the WIT
 * ("failed to get path metadata"), so the SDK pins 0.25 beside it. Check the
 * one Node resolves from componentize-js.
 */
function checkShim() {
  const here = join(SDK_DIR, 'node_modules', '@bytecodealliance', 'componentize-js');
  let from;
  try {
    from = dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/componentize-js')));
  } catch {
    from = here;
  }
  for (let dir = from; ; dir = dirname(dir)) {
    if (basename(dir) !== 'node_modules') {
      const pkg = join(dir, 'node_modules', '@bytecodealliance', 'preview2-shim', 'package.json');
      if (existsSync(pkg)) {
        const { version } = JSON.parse(readFileSync(pkg, 'utf8'));
        if (!version.startsWith('0.25.')) {
          throw new BuildError(
            `componentize-js needs @bytecodealliance/preview2-shim 0.25.x beside it, found ${version} (${dirname(pkg)}): ` +
              `install the SDK from its package-lock.json (npm install in ${SDK_DIR})`,
          );
        }
        return;
      }
    }
    if (dirname(dir) === dir) {
      throw new BuildError(`@bytecodealliance/preview2-shim is not installed: run \`npm install\` in ${SDK_DIR}`);
    }
  }
}

/**
 * Bundle the project's plugin with the SDK's glue into one ES module whose
 * only import is `plexus:plugin/host@0.4.0`.
 *
 * @param {{root: string, entry: string}} project from {@link readProject}
 * @param {string} outfile where to write the bundle
 * @returns {Promise<void>}
 * @throws {BuildError} when esbuild fails or the bundle would import anything else
 */
export async function bundle(project, outfile) {
  const esbuild = await dependency('esbuild');
  const scratch = mkdtempSync(join(tmpdir(), 'plexus-js-entry-'));
  try {
    const main = join(scratch, 'entry.js');
    writeFileSync(
      main,
      [
        `import * as host from ${JSON.stringify(HOST_IMPORT)};`,
        `import plugin from ${JSON.stringify(project.entry)};`,
        `import { makeGuest } from ${JSON.stringify(join(SDK_DIR, 'src', 'glue.js'))};`,
        `export const guest = makeGuest(plugin, host);`,
        '',
      ].join('\n'),
    );
    let result;
    try {
      result = await esbuild.build({
        entryPoints: [main],
        bundle: true,
        format: 'esm',
        // StarlingMonkey is a web-worker-like engine: no Node built-ins.
        platform: 'neutral',
        mainFields: ['module', 'main'],
        outfile,
        external: ['plexus:*'],
        logLevel: 'silent',
        metafile: true,
        absWorkingDir: project.root,
        nodePaths: [join(project.root, 'node_modules')],
      });
    } catch (e) {
      const first = e.errors?.[0];
      const where = first?.location ? `${first.location.file}:${first.location.line}: ` : '';
      throw new BuildError(`bundling failed: ${where}${first?.text ?? String(e.message).split('\n')[0]}`);
    }
    const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.external).map((i) => i.path));
    const other = imports.filter((path) => path !== HOST_IMPORT);
    if (other.length) {
      throw new BuildError(
        `the plugin imports ${other.join(', ')}: a component can import only ${HOST_IMPORT} (the SDK does; the plugin's module should not)`,
      );
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Build a project into a WASM component.
 *
 * @param {string} dir the project folder
 * @param {{out?: string, entry?: string, http?: boolean, log?: (line: string) => void}} [options]
 *   `out` the component's path (default `<dir>/target/<package name>.wasm`);
 *   `http` keep wasi:http so `fetch()` works (default package.json's `plexus.http`, else false:
 *   a host without wasi:http refuses such a component);
 *   `log` where progress lines go (default stderr)
 * @returns {Promise<{out: string, bytes: number, seconds: number, plugin: object}>}
 * @throws {BuildError} naming what is missing or wrong
 */
export async function build(dir, { out, entry, http, log = (line) => process.stderr.write(`${line}\n`) } = {}) {
  const project = readProject(dir, { entry });
  const plugin = await loadPlugin(project);
  const keepHttp = http ?? project.pkg.plexus?.http === true;
  const name = (project.pkg.name ?? basename(project.root)).replace(/^@.*\//, '');
  const target = resolve(out ?? join(project.root, 'target', `${name}.wasm`));
  const started = Date.now();
  const { componentize } = await dependency('@bytecodealliance/componentize-js');
  checkShim();
  if (!existsSync(WIT_PATH)) throw new BuildError(`${WIT_PATH} is missing: the SDK is incomplete (reinstall it)`);
  log(
    `building plugin \`${plugin.metadata.id}\` ${plugin.metadata.version} (${project.entry}) with componentize-js 0.23.0` +
      `${keepHttp ? ', wasi:http kept' : ''} ...`,
  );
  const scratch = mkdtempSync(join(tmpdir(), 'plexus-js-'));
  try {
    const bundled = join(scratch, 'bundle.js');
    await bundle(project, bundled);
    let component;
    try {
      ({ component } = await componentize({
        sourcePath: bundled,
        witPath: WIT_PATH,
        worldName: WORLD,
        disableFeatures: keepHttp ? ['fetch-event'] : ['http', 'fetch-event'],
      }));
    } catch (e) {
      throw new BuildError(`componentize-js failed: ${String(e.message ?? e).split('\n').filter(Boolean).slice(0, 3).join(' ')}`);
    }
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, component);
    const seconds = (Date.now() - started) / 1000;
    log(`built ${target} (${(component.byteLength / 1e6).toFixed(1)} MB) in ${seconds.toFixed(1)} s`);
    return { out: target, bytes: component.byteLength, seconds, plugin };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * The metadata the host will see, with the schemas as objects.
 *
 * @param {object} plugin from definePlugin
 * @returns {object}
 */
export function describePlugin(plugin) {
  const m = plugin.metadata;
  return {
    ...m,
    operations: m.operations.map((op) => ({
      ...op,
      paramsSchema: op.paramsSchema === undefined ? undefined : JSON.parse(op.paramsSchema),
      outputSchema: op.outputSchema === undefined ? undefined : JSON.parse(op.outputSchema),
    })),
  };
}
