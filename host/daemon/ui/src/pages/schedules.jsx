// Schedules: their next fire times and state, pause / resume / run now;
// one schedule's fire history with the executions it started.
import { useState } from 'preact/hooks';
import { api, enc, query } from '../api.js';
import { Status, Time, ErrorBox, Link, Title, useData, confirmAction } from '../ui.jsx';

function when(iso) {
  return iso ? <Time ms={Date.parse(iso)} /> : <span class="muted">—</span>;
}

/** Pause, resume and run-now buttons for schedule `s`; `done()` after a change. */
function Controls({ s, done }) {
  const [error, setError] = useState(null);
  const call = async (path, confirm) => {
    if (confirm && !(await confirmAction(confirm))) return;
    try {
      setError(null);
      const answer = await api(`/v1/schedules/${enc(s.id)}/${path}`, { method: 'POST' });
      done(answer);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <div class="controls">
      {s.enabled ? (
        <button type="button" onClick={() => call('pause')} aria-label={`Pause schedule ${s.id}`}>Pause</button>
      ) : (
        <button type="button" onClick={() => call('resume')} aria-label={`Resume schedule ${s.id}`}>Resume</button>
      )}
      <button
        type="button"
        onClick={() => call('run', { title: `Run schedule ${s.id} now?`, body: `It starts ${s.workflow ? `workflow ${s.workflow}` : `${s.plugin}.${s.operation}`} once, now, besides its fire times.`, confirm: 'Run now' })}
        aria-label={`Run now… schedule ${s.id}`}
      >
        Run now…
      </button>
      <ErrorBox error={error} />
    </div>
  );
}

function target(s) {
  return s.workflow ? <Link to={`/workflows/${enc(s.workflow)}`}>{s.workflow}</Link> : <span class="mono">{s.plugin}.{s.operation}</span>;
}

export function Schedules() {
  const [list, error, reload] = useData(() => api('/v1/schedules'), [], 5000);
  return (
    <section>
      <Title>Schedules</Title>
      <ErrorBox error={error} />
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Schedules table">
        <table class="schedules">
          <thead><tr><th scope="col">Schedule</th><th scope="col">When</th><th scope="col">Runs</th><th scope="col">State</th><th scope="col">Next fire</th><th scope="col">Last fire</th><th scope="col">Actions</th></tr></thead>
          <tbody>
            {(list?.schedules || []).map((s) => (
              <tr key={s.id} data-schedule={s.id}>
                <td><Link to={`/schedules/${enc(s.id)}`} class="mono">{s.id}</Link></td>
                <td class="mono">{s.when}{s.timezone ? ` (${s.timezone})` : ''}</td>
                <td>{target(s)}</td>
                <td data-field="state">{s.enabled ? <span class="badge status-running">active</span> : <span class="badge status-paused">paused</span>}{s.running > 0 && <span class="muted"> {s.running} running</span>}</td>
                <td>{when(s.next_fire)}</td>
                <td>{when(s.last_fire)}</td>
                <td><Controls s={s} done={reload} /></td>
              </tr>
            ))}
            {list && list.schedules.length === 0 && <tr><td colSpan={7} class="muted">No schedules (plexus schedule add, or [[schedules]] in the daemon's configuration).</td></tr>}
          </tbody>
        </table>
      </div>
    </section>
  );
}

export function SchedulePage({ id }) {
  const [s, error, reload] = useData(() => api(`/v1/schedules/${enc(id)}`), [id], 5000);
  return (
    <section>
      <Title sub="Schedule">Schedule <span class="mono">{id}</span></Title>
      <ErrorBox error={error} />
      {s && (
        <>
          <dl class="facts">
            <dt>When</dt><dd class="mono">{s.when}{s.timezone ? ` (${s.timezone})` : ''}</dd>
            <dt>Runs</dt><dd>{target(s)}</dd>
            <dt>State</dt><dd data-field="state">{s.enabled ? 'active' : 'paused'}</dd>
            <dt>Next fires</dt>
            <dd>
              {(s.upcoming || []).length === 0 ? <span class="muted">none{s.enabled ? '' : ' (paused)'}</span> : (
                <ol class="upcoming">{s.upcoming.map((t) => <li key={t}>{when(t)}</li>)}</ol>
              )}
            </dd>
            <dt>Last fire</dt><dd>{when(s.last_fire)}</dd>
            <dt>Running now</dt><dd>{s.running}{s.queued ? ' (one more queued)' : ''}</dd>
            <dt>Overlap</dt><dd>{s.overlap || 'skip'}</dd>
            <dt>Catch-up</dt><dd>{s.catch_up || 'run_once'}</dd>
          </dl>
          <Controls s={s} done={reload} />
          <p><Link to={`/executions${query({ schedule: id })}`}>Its executions</Link></p>
          <h2>Fire history</h2>
          <div class="table-wrap" tabIndex={0} role="region" aria-label="Fire history table">
            <table>
              <thead><tr><th scope="col">Fire time</th><th scope="col">Handled</th><th scope="col">Outcome</th><th scope="col">Execution</th><th scope="col">Message</th></tr></thead>
              <tbody>
                {(s.history || []).map((f, i) => (
                  <tr key={i}>
                    <td><Time ms={f.fire_time_ms} /></td>
                    <td><Time ms={f.fired_at_ms} /></td>
                    <td><Status status={f.outcome} /></td>
                    <td>{f.execution_id ? <Link to={`/executions/${enc(f.execution_id)}`} class="mono">{f.execution_id}</Link> : '—'}</td>
                    <td>{f.message || ''}</td>
                  </tr>
                ))}
                {(s.history || []).length === 0 && <tr><td colSpan={5} class="muted">It has not fired yet.</td></tr>}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
