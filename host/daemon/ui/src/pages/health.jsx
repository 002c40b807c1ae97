// Health: the daemon's state, its nodes, worker slots, queue depth and the
// state writes that failed (GET /v1/overview), refreshed every 3 s.
import { api, query } from '../api.js';
import { Status, Time, ErrorBox, Title, useData, Link } from '../ui.jsx';

export function HealthPage() {
  const [o, error] = useData(() => api('/v1/overview'), [], 3000);
  const h = o?.health;
  return (
    <section>
      <Title>Health</Title>
      <ErrorBox error={error} />
      {o && (
        <>
          <div class="cards">
            <div class="card"><h2>Status</h2><p class="big"><span class={`badge health-${h.status}`}>{h.status.replace('_', ' ')}</span></p><p class="muted small">version {h.version} · node {h.node}</p></div>
            <div class="card"><h2>Workers</h2><p class="big">{o.workers.busy} / {o.workers.limit}</p><p class="muted small">busy · {o.workers.waiting} waiting for a slot</p></div>
            <div class="card"><h2>Queue</h2><p class="big">{o.queued}</p><p class="muted small">executions pending</p></div>
            <div class="card"><h2>Journal errors</h2><p class={`big${o.journal_errors > 0 ? ' bad' : ''}`}>{o.journal_errors}</p><p class="muted small">failed state writes since start</p></div>
            <div class="card"><h2>Plugins</h2><p class="big">{h.plugins}</p><p class="muted small">{h.plugin_load_errors} folders failed to load · <Link to="/plugins">plugins</Link></p></div>
          </div>
          {Object.keys(h.degraded).length > 0 && (
            <section>
              <h2>Degraded</h2>
              <ul>{Object.entries(h.degraded).map(([k, why]) => <li key={k} class="error"><strong>{k}</strong>: {why}</li>)}</ul>
            </section>
          )}
          <h2>Executions by status</h2>
          <ul class="counts">
            {Object.entries(o.executions).map(([status, n]) => (
              <li key={status}><Link to={`/executions${query({ status })}`}><Status status={status} /> {n}</Link></li>
            ))}
            {Object.keys(o.executions).length === 0 && <li class="muted">None yet.</li>}
          </ul>
          <h2>Nodes</h2>
          <div class="table-wrap" tabIndex={0} role="region" aria-label="Nodes table">
            <table>
              <thead><tr><th scope="col">Node</th><th scope="col">State</th><th scope="col">Address</th><th scope="col">Workers</th><th scope="col">Running</th><th scope="col">Started</th><th scope="col">Heartbeat</th></tr></thead>
              <tbody>
                {o.nodes.nodes.map((n) => (
                  <tr key={n.id}>
                    <td class="mono">{n.id}{n.id === o.nodes.this && <span class="muted"> (this one)</span>}</td>
                    <td><span class={`badge node-${n.state}`}>{n.state}</span></td>
                    <td class="mono">{n.address || '—'}</td>
                    <td>{n.workers}</td>
                    <td>{n.running}</td>
                    <td><Time ms={n.started_at_ms} /></td>
                    <td><Time ms={n.heartbeat_ms} /></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
