// Executions: newest first, filtered by status, workflow and schedule,
// searched by id, a page at a time; the first page refreshes itself.
import { useState } from 'preact/hooks';
import { api, query } from '../api.js';
import { Status, Time, formatDuration, ErrorBox, Link, Title, useData } from '../ui.jsx';

export const STATUSES = ['pending', 'running', 'rolling_back', 'completed', 'failed', 'cancelled', 'rollback_failed', 'rolled_back'];
const PAGE = 25;

function go(params) {
  location.hash = `#/executions${query(params)}`;
}

export function Executions({ params }) {
  const filters = {
    status: params.get('status') || '',
    workflow: params.get('workflow') || '',
    schedule: params.get('schedule') || '',
  };
  const before = params.get('before') || '';
  // The pages seen before this one, to go back (kept in the URL).
  const trail = (params.get('trail') || '').split(',').filter(Boolean);
  const [list, error] = useData(
    () => api(`/v1/executions${query({ ...filters, limit: PAGE, before })}`),
    [filters.status, filters.workflow, filters.schedule, before],
    before ? 0 : 3000,
  );
  const [workflows] = useData(() => api('/v1/workflows'), []);
  const [schedules] = useData(() => api('/v1/schedules'), []);
  const [search, setSearch] = useState('');
  const set = (key) => (e) => go({ ...filters, [key]: e.currentTarget.value });
  const rows = list?.executions || [];
  const now = Date.now();
  return (
    <section>
      <Title>Executions</Title>
      <form
        class="search"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          if (search.trim()) location.hash = `#/executions/${encodeURIComponent(search.trim())}`;
        }}
      >
        <label for="search-id">Execution id</label>
        <input id="search-id" value={search} onInput={(e) => setSearch(e.currentTarget.value)} placeholder="01a2…" />
        <button type="submit">Open</button>
      </form>
      <div class="filters">
        <label>
          Status
          <select value={filters.status} onChange={set('status')} name="status">
            <option value="">any</option>
            {STATUSES.map((s) => <option key={s} value={s}>{s.replace('_', ' ')}</option>)}
          </select>
        </label>
        <label>
          Workflow
          <select value={filters.workflow} onChange={set('workflow')} name="workflow">
            <option value="">any</option>
            {(workflows?.workflows || []).map((w) => <option key={w.id} value={w.id}>{w.id}</option>)}
          </select>
        </label>
        <label>
          Schedule
          <select value={filters.schedule} onChange={set('schedule')} name="schedule">
            <option value="">any</option>
            {(schedules?.schedules || []).map((s) => <option key={s.id} value={s.id}>{s.id}</option>)}
          </select>
        </label>
      </div>
      <ErrorBox error={error} />
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Executions table">
        <table class="executions">
          <thead>
            <tr><th scope="col">Execution</th><th scope="col">Workflow</th><th scope="col">Status</th><th scope="col">Started</th><th scope="col">Duration</th><th scope="col">Schedule</th></tr>
          </thead>
          <tbody>
            {rows.map((e) => (
              <tr key={e.execution_id} data-status={e.status}>
                <td><Link to={`/executions/${encodeURIComponent(e.execution_id)}`} class="mono">{e.execution_id}</Link></td>
                <td>{e.workflow_id} <span class="muted">v{e.workflow_version}</span></td>
                <td><Status status={e.status} /></td>
                <td><Time ms={e.created_at_ms} /></td>
                <td>{formatDuration((e.ended_at_ms ?? now) - e.created_at_ms)}</td>
                <td>{e.schedule_id ? <Link to={`/schedules/${encodeURIComponent(e.schedule_id)}`}>{e.schedule_id}</Link> : <span class="muted">—</span>}</td>
              </tr>
            ))}
            {list && rows.length === 0 && (
              <tr><td colSpan={6} class="muted">No executions{before ? ' older than these' : ''}.</td></tr>
            )}
          </tbody>
        </table>
      </div>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={!before} onClick={() => go({ ...filters, before: trail.at(-1) || '', trail: trail.slice(0, -1).join(',') })}>
          ← Newer
        </button>
        <button
          type="button"
          disabled={rows.length < PAGE}
          onClick={() => go({ ...filters, before: rows.at(-1).execution_id, trail: before ? [...trail, before].join(',') : trail.join(',') })}
        >
          Older →
        </button>
      </nav>
    </section>
  );
}
