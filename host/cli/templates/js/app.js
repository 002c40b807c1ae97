// {{name}}: a Plexus plugin in JavaScript.
//
// Test it with `npm test`, build it with `plexus plugin pack` (a WASM component
// carrying a JavaScript engine), then try it:
// plexus call --artifact <artifact> greet --params '{"name": "Ada"}'

import { capability, definePlugin, PluginError } from 'plexus-plugin-sdk';

// Keep `version` equal to package.json's: the build checks.
export default definePlugin({
  id: '{{id}}',
  name: '{{name}}',
  version: '0.1.0',
  description: 'A Plexus plugin',
  license: 'Apache-2.0',
  capabilities: [capability.WORKFLOW_STEP],
  operations: {
    greet: {
      description: 'Greets `name`',
      params: {
        type: 'object',
        properties: { name: { type: 'string', description: 'who to greet' } },
        required: ['name'],
        additionalProperties: false,
      },
      examples: [
        { description: 'greets Ada', params: { name: 'Ada' }, output: { greeting: 'Hello, Ada!' } },
        { description: 'refuses an empty name', params: { name: '' }, error: 'invalid-input' },
      ],
      run(ctx, { name }) {
        if (!name) throw PluginError.invalidInput('`name` is empty');
        ctx.log.info(`greeting ${name}`);
        return { greeting: `Hello, ${name}!` };
      },
    },
  },
});
