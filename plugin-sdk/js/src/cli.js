#!/usr/bin/env node
// plexus-plugin-sdk build [PROJECT] [--out FILE.wasm] [--entry FILE] [--http]
// plexus-plugin-sdk describe [PROJECT] [--entry FILE]
//
// `build` prints the component's path on stdout; progress goes to stderr.
// Exit 0 on success, 1 on a problem (one line on stderr), 2 on bad arguments.

import { parseArgs } from 'node:util';
import { build, BuildError, describePlugin, loadPlugin, readProject } from './build.js';

const USAGE = `usage: plexus-plugin-sdk build [PROJECT] [--out FILE.wasm] [--entry FILE] [--http]
       plexus-plugin-sdk describe [PROJECT] [--entry FILE]

build     build PROJECT (default .) into a WASM component; prints its path
describe  print the plugin's metadata (JSON), as the host will see it

--out FILE    the component (default PROJECT/target/<package name>.wasm)
--entry FILE  the plugin's module (default package.json's plexus.entry, else app.js)
--http        keep wasi:http so fetch() works (also package.json "plexus": {"http": true});
              only for hosts that provide wasi:http, which refuse nothing else
--no-http     leave wasi:http out even when package.json asks for it (the default)

examples:
  npx plexus-plugin-sdk build . --out target/greeter.wasm
  npx plexus-plugin-sdk describe`;

function fail(message, code = 1) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

let args;
try {
  args = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      entry: { type: 'string' },
      http: { type: 'boolean' },
      'no-http': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (e) {
  fail(`${e.message}\n${USAGE}`, 2);
}

const [command, dir = '.', extra] = args.positionals;
const { out, entry, help } = args.values;
if (help) {
  process.stdout.write(`${USAGE}\n`);
} else if (command !== 'build' && command !== 'describe') {
  fail(command ? `unknown command \`${command}\`\n${USAGE}` : USAGE, 2);
} else if (extra !== undefined) {
  fail(`one PROJECT folder, not \`${extra}\` too\n${USAGE}`, 2);
} else if (args.values.http && args.values['no-http']) {
  fail('--http and --no-http contradict each other', 2);
} else {
  try {
    if (command === 'build') {
      const http = args.values.http ? true : args.values['no-http'] ? false : undefined;
      const built = await build(dir, { out, entry, http });
      process.stdout.write(`${built.out}\n`);
    } else {
      const plugin = await loadPlugin(readProject(dir, { entry }));
      process.stdout.write(`${JSON.stringify(describePlugin(plugin), null, 2)}\n`);
    }
  } catch (e) {
    fail(e instanceof BuildError ? e.message : (e?.stack ?? String(e)));
  }
}
