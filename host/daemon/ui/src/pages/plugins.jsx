// Plugins: each loaded plugin's kind, capabilities and operations, the
// folders that failed to load (and why), the native plugins waiting for a
// restart; one plugin's operations with their schemas, limits and grants.
import { api, enc } from '../api.js';
import { Json, ErrorBox, Link, Title, useData } from '../ui.jsx';

export function Plugins() {
  const [list, error] = useData(() => api('/v1/plugins'), [], 10000);
  const unavailable = Object.entries(list?.unavailable || {});
  return (
    <section>
      <Title>Plugins</Title>
      <ErrorBox error={error} />
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Plugins table">
        <table class="plugins">
          <thead><tr><th scope="col">Plugin</th><th scope="col">Version</th><th scope="col">Kind</th><th scope="col">Status</th><th scope="col">Capabilities</th><th scope="col">Operations</th></tr></thead>
          <tbody>
            {(list?.plugins || []).map((p) => (
              <tr key={p.id}>
                <td><Link to={`/plugins/${enc(p.id)}`} class="mono">{p.id}</Link><div class="muted small">{p.name}</div></td>
                <td>{p.version}</td>
                <td><span class={`badge kind-${p.kind}`}>{p.kind}</span></td>
                <td>{p.status === 'loaded' ? <span class="badge status-completed">loaded</span> : <span class="badge status-failed">{p.status}</span>}</td>
                <td>{p.capabilities.join(', ') || <span class="muted">—</span>}</td>
                <td class="mono small">{p.operations.join(', ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {unavailable.length > 0 && (
        <section>
          <h2>Restart required</h2>
          <p>These native plugins changed or disappeared on disk; the old code stays loaded until the daemon restarts.</p>
          <ul>{unavailable.map(([id, why]) => <li key={id}><span class="mono">{id}</span>: {why}</li>)}</ul>
        </section>
      )}
      <section>
        <h2>Load errors</h2>
        {list && list.errors.length === 0 && <p class="muted">Every plugin folder loaded.</p>}
        <ul class="load-errors">
          {(list?.errors || []).map((e, i) => (
            <li key={i} class="error">
              <strong>{e.plugin || e.path}</strong> <span class="badge status-failed">{e.kind}</span>
              <div>{e.message}</div>
              <div class="muted small mono">{e.path}</div>
            </li>
          ))}
        </ul>
      </section>
    </section>
  );
}

export function PluginPage({ id }) {
  const [p, error] = useData(() => api(`/v1/plugins/${enc(id)}`), [id]);
  const m = p?.metadata;
  return (
    <section>
      <Title sub="Plugin">Plugin <span class="mono">{id}</span></Title>
      <ErrorBox error={error} />
      {p && (
        <>
          <p>{m.name} {m.version}{m.description ? ` — ${m.description}` : ''}</p>
          <dl class="facts">
            <dt>Kind</dt><dd>{p.kind}{p.isolation ? ` (${p.isolation})` : ''}</dd>
            <dt>Status</dt><dd>{p.status}{p.unavailable ? `: ${p.unavailable} (restart required)` : ''}</dd>
            <dt>Contract</dt><dd>{m.contract_version}{p.contract_requirement ? ` (requires ${p.contract_requirement})` : ''}</dd>
            <dt>Capabilities</dt><dd>{(m.capabilities || []).join(', ') || '—'}</dd>
            <dt>Folder</dt><dd class="mono small">{p.path}</dd>
            {m.license && (<><dt>License</dt><dd>{m.license}</dd></>)}
          </dl>
          <h2>Operations</h2>
          {(m.operations || []).map((op) => (
            <details key={op.name} class="operation">
              <summary><span class="mono">{op.name}</span> <span class="muted">{op.description || ''}</span></summary>
              <h3>Parameters</h3>
              {op.params_schema ? <Json value={op.params_schema} /> : <p class="muted">No schema declared.</p>}
              <h3>Output</h3>
              {op.output_schema ? <Json value={op.output_schema} /> : <p class="muted">No schema declared.</p>}
            </details>
          ))}
          <h2>Limits</h2>
          <Json value={p.limits} />
          <h2>Permissions</h2>
          <Json value={p.permissions} />
        </>
      )}
    </section>
  );
}
