// Workflows: the current version of each; one workflow's versions, source,
// graph, and a form that starts it with inputs.
import { useState } from 'preact/hooks';
import { api, enc, query } from '../api.js';
import { Dag } from '../dag.jsx';
import { Time, ErrorBox, Link, Title, useData } from '../ui.jsx';

export function Workflows() {
  const [list, error] = useData(() => api('/v1/workflows'), [], 10000);
  return (
    <section>
      <Title>Workflows</Title>
      <ErrorBox error={error} />
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Workflows table">
        <table>
          <thead><tr><th scope="col">Workflow</th><th scope="col">Version</th><th scope="col">Format</th><th scope="col">Registered</th><th scope="col">Executions</th></tr></thead>
          <tbody>
            {(list?.workflows || []).map((w) => (
              <tr key={w.id}>
                <td><Link to={`/workflows/${enc(w.id)}`} class="mono">{w.id}</Link></td>
                <td>v{w.version}</td>
                <td>{w.format}</td>
                <td><Time ms={w.created_at_ms} /></td>
                <td><Link to={`/executions${query({ workflow: w.id })}`}>executions</Link></td>
              </tr>
            ))}
            {list && list.workflows.length === 0 && <tr><td colSpan={5} class="muted">No workflows are registered (plexus workflow register FILE).</td></tr>}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** An input's value from its form field: JSON for non-strings, the text for strings. */
function inputValue(spec, text) {
  if ((spec?.type || 'string') === 'string') return text;
  return JSON.parse(text);
}

function StartForm({ id, version, definition }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const inputs = Object.entries(definition?.inputs || {});
  const submit = async (e) => {
    e.preventDefault();
    const form = e.currentTarget.elements;
    const values = {};
    try {
      for (const [name, spec] of inputs) {
        const text = form[`input-${name}`].value;
        if (text === '' && spec.default !== undefined) continue;
        if (text === '' && !spec.required) continue;
        try {
          values[name] = inputValue(spec, text);
        } catch (err) {
          throw { code: 'InvalidConfiguration', message: `input ${name}: not JSON (${err.message})` };
        }
      }
      setBusy(true);
      const started = await api('/v1/executions', { method: 'POST', body: { workflow: id, version, inputs: values } });
      location.hash = `#/executions/${enc(started.execution_id)}`;
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="start" onSubmit={submit} aria-labelledby="start-title">
      <h2 id="start-title">Start an execution</h2>
      {inputs.length === 0 && <p class="muted">This workflow declares no inputs.</p>}
      {inputs.map(([name, spec]) => (
        <div class="field" key={name}>
          <label for={`input-${name}`}>
            {name} <span class="muted">({spec.type || 'string'}{spec.required ? ', required' : ''})</span>
          </label>
          <input
            id={`input-${name}`}
            name={`input-${name}`}
            placeholder={spec.default !== undefined ? (typeof spec.default === 'string' ? spec.default : JSON.stringify(spec.default)) : ''}
            required={spec.required && spec.default === undefined}
          />
          {spec.description && <span class="muted small">{spec.description}</span>}
        </div>
      ))}
      <ErrorBox error={error} />
      <button type="submit" class="primary" disabled={busy}>Start v{version}</button>
    </form>
  );
}

export function WorkflowPage({ id, params }) {
  const wanted = params.get('version') || '';
  const [history, historyError] = useData(() => api(`/v1/workflows/${enc(id)}/versions`), [id]);
  const [workflow, error] = useData(() => api(`/v1/workflows/${enc(id)}${query({ version: wanted })}`), [id, wanted]);
  const definition = workflow?.definition;
  return (
    <section>
      <Title sub="Workflow">Workflow <span class="mono">{id}</span></Title>
      <ErrorBox error={error || historyError} />
      {definition?.name && <p>{definition.name}</p>}
      {definition?.description && <p class="muted">{definition.description}</p>}
      <div class="execution-grid">
        <div>
          <h2>Graph {workflow && <span class="muted">v{workflow.version}</span>}</h2>
          {definition && <Dag steps={definition.steps || []} label={`Steps of workflow ${id}`} />}
          {workflow && <StartForm id={id} version={workflow.version} definition={definition} />}
        </div>
        <div>
          <h2>Versions</h2>
          <ul class="versions">
            {(history?.versions || []).map((v) => (
              <li key={v.version}>
                <Link to={`/workflows/${enc(id)}?version=${v.version}`} aria-current={workflow?.version === v.version ? 'true' : undefined}>v{v.version}</Link>
                {history.current === v.version && <span class="badge">current</span>} <Time ms={v.created_at_ms} />
              </li>
            ))}
          </ul>
        </div>
      </div>
      {workflow && (
        <section>
          <h2>Source <span class="muted">({workflow.format})</span></h2>
          <pre class="source" tabIndex={0}>{workflow.source}</pre>
        </section>
      )}
    </section>
  );
}
