// Plexus plugin `plexus.report`, in JavaScript: rank rows and render them as a
// Markdown table.
//
// * rank {rows, by, top?, descending?} → {rows, count}: the top rows by a numeric field.
// * markdown {rows, columns, title?, digits?} → {text, lines}: a Markdown table.
//
// Built into a WASM component by `plexus plugin pack` (or `npx plexus-plugin-sdk
// build`); tested in Node by test/app.test.js.

import { capability, definePlugin, PluginError, s } from 'plexus-plugin-sdk';

// How often a long loop reports progress and looks for a cancel.
const EVERY = 500;

const MONTHS = [
  { month: '2012-01', days: 31, precipitation_sum: 173.3, temp_max_mean: 7.05 },
  { month: '2012-02', days: 29, precipitation_sum: 92.3, temp_max_mean: 9.28 },
  { month: '2012-03', days: 31, precipitation_sum: 183, temp_max_mean: 9.25 },
];

const rows = s.array(s.object(), { description: 'rows: objects keyed by column' });

export default definePlugin({
  id: 'plexus.report',
  name: 'Report',
  version: '0.1.0',
  description: 'Rank rows and render them as Markdown (a JavaScript plugin).',
  authors: ['The Plexus developers'],
  license: 'Apache-2.0',
  capabilities: [capability.WORKFLOW_STEP],
  operations: {
    rank: {
      description: 'The top rows by a numeric field (rows without a number there are left out)',
      params: s.object({
        rows,
        by: s.string({ description: 'the numeric field to rank by' }),
        top: s.integer({ minimum: 1, maximum: 100000, default: 5, description: 'how many rows' }),
        descending: s.boolean({ default: true, description: 'largest first' }),
      }),
      output: s.object({ rows, count: s.integer({ description: 'how many rows were picked' }) }),
      examples: [
        {
          description: 'the two wettest months',
          params: { rows: MONTHS, by: 'precipitation_sum', top: 2 },
          output: { rows: [MONTHS[2], MONTHS[0]], count: 2 },
        },
        { description: 'a field name is required', params: { rows: MONTHS }, error: 'invalid-input' },
        { description: 'top is at least 1', params: { rows: MONTHS, by: 'days', top: 0 }, error: 'invalid-input' },
      ],
      run(ctx, { rows, by, top, descending }) {
        const ranked = [];
        rows.forEach((row, i) => {
          if (i % EVERY === 0) {
            ctx.checkCancelled();
            ctx.progress(i / Math.max(rows.length, 1), `ranking row ${i}`);
          }
          if (typeof row[by] === 'number' && Number.isFinite(row[by])) ranked.push(row);
        });
        if (rows.length && !ranked.length) throw PluginError.invalidInput(`no row has a number in \`${by}\``);
        ranked.sort((a, b) => (descending ? b[by] - a[by] : a[by] - b[by]));
        const picked = ranked.slice(0, top);
        ctx.metric('rows', rows.length);
        ctx.progress(1, `ranked ${ranked.length} rows`);
        ctx.log.info(`ranked ${ranked.length} rows by ${by}`);
        return { rows: picked, count: picked.length };
      },
    },
    markdown: {
      description: 'Renders rows as a Markdown table of the given columns',
      params: s.object({
        rows,
        columns: s.array(s.string(), { minItems: 1, description: 'the columns, in order' }),
        title: s.optional(s.string({ description: 'a heading above the table' })),
        digits: s.integer({ minimum: 0, maximum: 12, default: 1, description: 'decimals for numbers' }),
      }),
      output: s.object({ text: s.string(), lines: s.integer({ description: 'lines of text' }) }),
      examples: [
        {
          description: 'two columns, numbers to one decimal',
          params: { rows: MONTHS.slice(0, 2), columns: ['month', 'precipitation_sum'] },
          output: {
            text: '| month | precipitation_sum |\n|---|---|\n| 2012-01 | 173.3 |\n| 2012-02 | 92.3 |\n',
            lines: 4,
          },
        },
        { description: 'columns must not be empty', params: { rows: MONTHS, columns: [] }, error: 'invalid-input' },
      ],
      run(ctx, { rows, columns, title, digits }) {
        const cell = (value) => {
          if (value === undefined || value === null) return '';
          if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(digits);
          return String(value).replaceAll('|', '\\|').replaceAll('\n', ' ');
        };
        const lines = [];
        if (title) lines.push(`## ${title}`, '');
        lines.push(`| ${columns.join(' | ')} |`, `|${columns.map(() => '---').join('|')}|`);
        rows.forEach((row, i) => {
          if (i % EVERY === 0) {
            ctx.checkCancelled();
            ctx.progress(i / Math.max(rows.length, 1), `row ${i}`);
          }
          lines.push(`| ${columns.map((c) => cell(row[c])).join(' | ')} |`);
        });
        ctx.metric('rows', rows.length);
        ctx.progress(1, `${rows.length} rows`);
        return { text: `${lines.join('\n')}\n`, lines: lines.length };
      },
    },
  },
});
