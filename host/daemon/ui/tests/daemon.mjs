// A real `plexus daemon` for the browser tests: its own data folder, the
// example plugins copied in, an ephemeral loopback port; and the API with
// its bearer token, for the tests' own setup (never through the page).
import { spawn } from 'node:child_process';
import { mkdtempSync, cpSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const target = process.env.CARGO_TARGET_DIR || join(repo, 'target');
export const plexusBin = process.env.PLEXUS_BIN || join(target, 'debug/plexus');
const builtPlugins = process.env.PLEXUS_TEST_PLUGINS || join(repo, 'target/test-plugins');
/** The secrets key of the test daemons (64 hex digits). */
const SECRETS_KEY = '0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0';

export class Daemon {
  /** Start a daemon with the plugin folders `plugins` (names under target/test-plugins) and `extra` arguments. */
  static async start(plugins, extra = []) {
    for (const p of [plexusBin, ...plugins.map((p) => join(builtPlugins, p))]) {
      if (!existsSync(p)) throw new Error(`${p} is missing: build plexus and the plugins first (scripts/test.sh does)`);
    }
    const data = mkdtempSync(join(tmpdir(), 'plexus-ui-'));
    for (const p of plugins) cpSync(join(builtPlugins, p), join(data, 'plugins', p), { recursive: true });
    const args = [
      'daemon', '--listen', '127.0.0.1:0', '--grace-period', '5s',
      '--state-db', join(data, 'state.db'), '--token-file', join(data, 'token'),
      '--plugins-dir', join(data, 'plugins'), '--cache-dir', join(data, 'cache'),
      ...extra,
    ];
    const logFile = join(data, 'daemon.log');
    const { openSync } = await import('node:fs');
    const child = spawn(plexusBin, args, {
      cwd: repo,
      env: { ...process.env, PLEXUS_DATA_DIR: data, PLEXUS_SECRETS_KEY: SECRETS_KEY, RUST_LOG: 'info' },
      stdio: ['ignore', 'pipe', openSync(logFile, 'w')],
    });
    const line = await new Promise((ok, fail) => {
      const lines = createInterface({ input: child.stdout });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        fail(new Error(`plexus daemon did not announce its address in 60 s: ${readFileSync(logFile, 'utf8')}`));
      }, 60000);
      lines.once('line', (l) => { clearTimeout(timer); ok(l); });
      child.once('exit', (code) => { clearTimeout(timer); fail(new Error(`plexus daemon exited (${code}): ${readFileSync(logFile, 'utf8')}`)); });
    });
    const announced = JSON.parse(line);
    const token = readFileSync(announced.token_file || join(data, 'token'), 'utf8').trim();
    return new Daemon(child, `http://${announced.listening}`, announced.ui, token, data, logFile);
  }

  constructor(child, url, ui, token, data, logFile) {
    Object.assign(this, { child, url, ui, token, data, logFile });
  }

  /** `method` `path` with the bearer token; the JSON answer (throws on non-2xx). */
  async call(method, path, body) {
    const res = await fetch(this.url + path, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** Register the workflow in `file` (relative to the repository) or given as YAML text. */
  register(fileOrSource) {
    const source = fileOrSource.includes('\n') ? fileOrSource : readFileSync(join(repo, fileOrSource), 'utf8');
    return this.call('POST', '/v1/workflows', { source });
  }

  /** Wait until execution `id` ended; its record. */
  async waitFor(id, ms = 60000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const e = await this.call('GET', `/v1/executions/${encodeURIComponent(id)}`);
      if (['completed', 'failed', 'cancelled', 'rollback_failed', 'rolled_back'].includes(e.status)) return e;
      if (Date.now() > deadline) throw new Error(`execution ${id} is still ${e.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stop the daemon (SIGTERM; SIGKILL after 20 s) and remove its folder. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      const late = setTimeout(() => this.child.kill('SIGKILL'), 20000);
      await exited;
      clearTimeout(late);
    }
    rmSync(this.data, { recursive: true, force: true });
  }
}
