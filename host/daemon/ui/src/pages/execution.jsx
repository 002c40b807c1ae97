// One execution: its DAG with each step's live status and progress, the
// selected step's attempts, timings, output and error, the log as it
// streams (GET /v1/events), and cancel / retry / signal with confirmation.
import { useState, useEffect, useRef, useMemo } from 'preact/hooks';
import { api, enc } from '../api.js';
import { Dag } from '../dag.jsx';
import { Status, Time, Json, ErrorBox, Link, Title, formatDuration, formatTime, confirmAction } from '../ui.jsx';

const ENDED = new Set(['completed', 'failed', 'cancelled', 'rollback_failed', 'rolled_back']);
/** What the page says of its event stream. */
const LIVE = {
  connecting: 'connecting…',
  live: '● live',
  ended: 'ended',
  closed: 'live updates stopped: reload the page',
};
/** The most log lines the page keeps (the oldest go first). */
const MAX_LOG = 2000;

/**
 * The execution, reloaded on each event of its stream (GET /v1/events), and
 * every 2 s while it runs (progress reports are not transitions) or every
 * 10 s once it ended (a retry from elsewhere). The stream is closed while the
 * tab is hidden (a browser opens 6 connections to a server at most) and
 * opened again after the last event seen when it shows.
 */
function useExecution(id) {
  const [execution, setExecution] = useState(null);
  const [error, setError] = useState(null);
  const [log, setLog] = useState([]);
  const [live, setLive] = useState('connecting');
  const [generation, setGeneration] = useState(0);
  const pending = useRef(null);
  const asked = useRef(0);
  const applied = useRef(0);
  const ended = useRef(false);

  const reload = async () => {
    const mine = ++asked.current;
    try {
      const e = await api(`/v1/executions/${enc(id)}`);
      // An answer older than one already shown is dropped; a slow one still counts.
      if (mine > applied.current) {
        applied.current = mine;
        // Ended, then running again (retried elsewhere): stream its new events.
        const again = ended.current && !ENDED.has(e.status);
        ended.current = ENDED.has(e.status);
        setExecution(e);
        setError(null);
        if (again) setGeneration((g) => g + 1);
      }
    } catch (e) {
      if (mine > applied.current) setError(e);
    }
  };
  const soon = () => {
    if (!pending.current) pending.current = setTimeout(() => { pending.current = null; reload(); }, 120);
  };

  useEffect(() => {
    setExecution(null);
    setLog([]);
    ended.current = false;
    let stream = null;
    let lastSeq = 0;
    let over = false;
    const open = () => {
      if (stream || over) return;
      stream = new EventSource(`/v1/events?execution=${enc(id)}${lastSeq ? `&after=${lastSeq}` : ''}`);
      stream.onopen = () => setLive('live');
      stream.addEventListener('transition', (m) => {
        const event = JSON.parse(m.data);
        lastSeq = Math.max(lastSeq, event.seq);
        setLog((l) => (l.length >= MAX_LOG ? [...l.slice(l.length - MAX_LOG + 1), event] : [...l, event]));
        soon();
      });
      stream.addEventListener('end', () => {
        over = true;
        setLive('ended');
        close();
        reload();
      });
      stream.onerror = () => {
        // CLOSED: refused for good (too many streams, logged out); else the browser reconnects.
        setLive(stream?.readyState === EventSource.CLOSED ? 'closed' : 'connecting');
      };
    };
    const close = () => {
      stream?.close();
      stream = null;
    };
    const visibility = () => {
      if (document.visibilityState === 'visible') {
        open();
        reload();
      } else {
        close();
      }
    };
    reload();
    if (document.visibilityState === 'visible') open();
    document.addEventListener('visibilitychange', visibility);
    let ticks = 0;
    const timer = setInterval(() => {
      ticks += 1;
      if (document.visibilityState === 'visible' && (!ended.current || ticks % 5 === 0)) reload();
    }, 2000);
    return () => {
      over = true;
      close();
      document.removeEventListener('visibilitychange', visibility);
      clearInterval(timer);
      clearTimeout(pending.current);
      pending.current = null;
    };
  }, [id, generation]);
  return { execution, error, log, live, reload, restart: () => setGeneration((g) => g + 1) };
}

/** The definition of the execution's workflow version (for the graph). */
function useDefinition(execution) {
  const [definition, setDefinition] = useState(null);
  const key = execution ? `${execution.workflow_id}@${execution.workflow_version}` : '';
  useEffect(() => {
    if (!execution) return;
    api(`/v1/workflows/${enc(execution.workflow_id)}?version=${execution.workflow_version}`).then(
      (w) => setDefinition(w.definition),
      () => setDefinition(null),
    );
  }, [key]);
  return definition;
}

/** Each attempt of step `id` read from the log: its start, end, outcome and message. */
function attemptsOf(log, id) {
  const attempts = new Map();
  for (const e of log) {
    if (e.step_id !== id || e.kind !== 'step' || !e.attempt) continue;
    const a = attempts.get(e.attempt) || { attempt: e.attempt };
    if (e.status === 'running') a.started ??= e.at_ms;
    else if (e.status !== 'pending') Object.assign(a, { ended: e.at_ms, status: e.status, message: e.message });
    attempts.set(e.attempt, a);
  }
  return [...attempts.values()];
}

function StepDetails({ execution, record, step, log }) {
  if (!record) return <p class="muted">Select a step in the graph or the list to see its attempts, output and error.</p>;
  const isWorkflow = step && step.workflow;
  return (
    <section class="step-details" aria-labelledby="step-title">
      <h3 id="step-title">Step <span class="mono">{record.id}</span> <Status status={record.status} /></h3>
      <dl class="facts">
        <dt>Operation</dt><dd class="mono">{record.plugin_id}.{record.operation}</dd>
        <dt>Attempts</dt><dd data-field="attempts">{record.attempts}</dd>
        <dt>Started</dt><dd><Time ms={record.started_at_ms} /></dd>
        <dt>Ended</dt><dd><Time ms={record.ended_at_ms} /></dd>
        <dt>Duration</dt><dd>{formatDuration(record.duration_ms)}</dd>
        {record.progress && (<><dt>Progress</dt><dd>{Math.round(record.progress.fraction * 100)} % {record.progress.message}</dd></>)}
        {record.reason && (<><dt>Reason</dt><dd>{record.reason}</dd></>)}
        {record.usage && (<><dt>Usage</dt><dd>{record.usage.cpu_ms !== undefined ? `CPU ${formatDuration(record.usage.cpu_ms)}` : ''}{record.usage.peak_memory_bytes ? ` · peak ${Math.round(record.usage.peak_memory_bytes / 1024 / 1024)} MiB` : ''}</dd></>)}
        {isWorkflow && (<><dt>Sub-workflow</dt><dd><Link to={`/executions/${enc(`${execution.execution_id}~${record.id}`)}`}>its execution</Link></dd></>)}
      </dl>
      {attemptsOf(log, record.id).length > 0 && (
        <>
          <h4>Attempts</h4>
          <table class="attempts">
            <thead><tr><th scope="col">#</th><th scope="col">Started</th><th scope="col">Took</th><th scope="col">Outcome</th></tr></thead>
            <tbody>
              {attemptsOf(log, record.id).map((a) => (
                <tr key={a.attempt} data-attempt={a.attempt}>
                  <td>{a.attempt}</td>
                  <td><Time ms={a.started} /></td>
                  <td>{a.started !== undefined && a.ended !== undefined ? formatDuration(a.ended - a.started) : '—'}</td>
                  <td>{a.status ? <Status status={a.status} /> : <span class="muted">running</span>}{a.message && <span class="muted"> {a.message}</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {record.error && (
        <div class="step-error" role="alert">
          <h4>Error{record.error.kind ? ` (${record.error.kind})` : ''}</h4>
          <p class="error-message">{record.error.message}</p>
          <p class="muted small">{record.error.retryable ? 'retryable' : 'not retryable'}</p>
        </div>
      )}
      {record.metrics && Object.keys(record.metrics).length > 0 && (<><h4>Metrics</h4><Json value={record.metrics} /></>)}
      {record.artifacts && Object.keys(record.artifacts).length > 0 && (
        <>
          <h4>Artifacts</h4>
          <ul>
            {Object.entries(record.artifacts).map(([name, a]) => (
              <li key={name}>
                <a href={`/v1/executions/${enc(execution.execution_id)}/artifacts/${enc(a.artifact)}`} download={a.name || name}>{name}</a>
                <span class="muted"> {a.bytes} bytes</span>
              </li>
            ))}
          </ul>
        </>
      )}
      {record.output !== null && record.output !== undefined && (<><h4>Output</h4><Json value={record.output} /></>)}
    </section>
  );
}

function SignalDialog({ id, onDone }) {
  const dialog = useRef(null);
  const [error, setError] = useState(null);
  useEffect(() => dialog.current?.showModal(), []);
  const submit = async (e) => {
    e.preventDefault();
    const form = e.currentTarget.elements;
    let payload = null;
    try {
      payload = form.payload.value.trim() ? JSON.parse(form.payload.value) : null;
    } catch (err) {
      setError({ code: 'InvalidConfiguration', message: `payload: not JSON (${err.message})` });
      return;
    }
    try {
      await api(`/v1/executions/${enc(id)}/signals/${enc(form.name.value.trim())}`, { method: 'POST', body: { payload, by: 'web UI' } });
      dialog.current?.close();
      onDone(true);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <dialog ref={dialog} class="confirm" aria-labelledby="signal-title" onCancel={() => onDone(false)}>
      <form onSubmit={submit}>
        <h2 id="signal-title">Send a signal</h2>
        <p>Its wait steps of that name take the payload as their output.</p>
        <label for="signal-name">Name</label>
        <input id="signal-name" name="name" required autofocus />
        <label for="signal-payload">Payload (JSON)</label>
        <textarea id="signal-payload" name="payload" rows={4} placeholder='{"approved": true}' />
        <ErrorBox error={error} />
        <div class="actions">
          <button type="button" onClick={() => { dialog.current?.close(); onDone(false); }}>Cancel</button>
          <button type="submit" class="primary">Send signal</button>
        </div>
      </form>
    </dialog>
  );
}

export function ExecutionPage({ id }) {
  const { execution, error, log, live, reload, restart } = useExecution(id);
  const definition = useDefinition(execution);
  const [selected, setSelected] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [signalling, setSignalling] = useState(false);
  const records = useMemo(() => Object.fromEntries((execution?.steps || []).map((r) => [r.id, r])), [execution]);
  const steps = definition?.steps || (execution?.steps || []).map((r) => ({ id: r.id, dependencies: [] }));
  const stepDefs = useMemo(() => Object.fromEntries(steps.map((s) => [s.id, s])), [steps]);

  if (!execution) {
    return (
      <section>
        <Title sub="Execution">Execution <span class="mono">{id}</span></Title>
        {error ? <ErrorBox error={error} /> : <p class="loading">Loading…</p>}
      </section>
    );
  }
  const ended = ENDED.has(execution.status);
  const act = async (what, confirm, call) => {
    if (!(await confirmAction(confirm))) return;
    try {
      setActionError(null);
      await call();
      if (what === 'retry') restart();
      reload();
    } catch (e) {
      setActionError(e);
    }
  };
  const duration = (execution.ended_at_ms ?? Date.now()) - (execution.started_at_ms ?? execution.created_at_ms);
  return (
    <section class="execution">
      <Title sub="Execution">Execution <span class="mono">{execution.execution_id}</span></Title>
      <div class="summary">
        <Status status={execution.status} />
        <span>
          <Link to={`/workflows/${enc(execution.workflow_id)}`}>{execution.workflow_id}</Link>
          <span class="muted"> v{execution.workflow_version}</span>
        </span>
        <span>{execution.completed_steps}/{execution.total_steps} steps</span>
        <progress max="1" value={execution.progress} aria-label="Progress">{Math.round(execution.progress * 100)} %</progress>
        <span>started <Time ms={execution.started_at_ms ?? execution.created_at_ms} /></span>
        <span>{formatDuration(duration)}</span>
        {execution.schedule_id && <span>schedule <Link to={`/schedules/${enc(execution.schedule_id)}`}>{execution.schedule_id}</Link></span>}
        {execution.parent && <span>child of <Link to={`/executions/${enc(execution.parent)}`}>{execution.parent}</Link></span>}
        {execution.node && <span class="muted">node {execution.node}</span>}
        <span class={`live live-${live}`} role="status">{LIVE[live]}</span>
      </div>
      {execution.error && <div class="error" role="alert"><strong>Failed</strong>: {execution.error}</div>}
      {execution.held && <div class="error" role="alert">Held: a state write failed; no step starts until it is recorded again.</div>}
      <div class="actions">
        <button
          type="button"
          class="danger"
          disabled={ended}
          onClick={() => act('cancel', { title: 'Cancel this execution?', body: 'Running steps stop; completed steps are compensated (rolled back).', confirm: 'Cancel execution', cancel: 'Keep it running', danger: true }, () => api(`/v1/executions/${enc(id)}/cancel`, { method: 'POST' }))}
        >
          Cancel…
        </button>
        <button
          type="button"
          disabled={!ended || execution.status === 'completed'}
          onClick={() => act('retry', { title: 'Retry this execution?', body: 'It runs again from the steps that did not complete.', confirm: 'Retry' }, () => api(`/v1/executions/${enc(id)}/retry`, { method: 'POST' }))}
        >
          Retry…
        </button>
        <button type="button" disabled={ended} onClick={() => setSignalling(true)}>Signal…</button>
      </div>
      {signalling && <SignalDialog id={id} onDone={(sent) => { setSignalling(false); if (sent) reload(); }} />}
      <ErrorBox error={actionError || error} />
      <div class="execution-grid">
        <div class="graph-panel">
          <h2>Graph</h2>
          <Dag steps={steps} records={records} selected={selected} onSelect={setSelected} label={`Steps of execution ${execution.execution_id}`} />
          <table class="steps">
            <caption class="visually-hidden">Steps</caption>
            <thead><tr><th scope="col">Step</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Duration</th></tr></thead>
            <tbody>
              {execution.steps.map((r) => (
                <tr key={r.id} class={selected === r.id ? 'selected' : ''}>
                  <td><button type="button" class="linkish mono" onClick={() => setSelected(r.id)} aria-pressed={String(selected === r.id)}>{r.id}</button></td>
                  <td><Status status={r.status} /></td>
                  <td>{r.attempts}</td>
                  <td>{formatDuration(r.duration_ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div class="details-panel">
          <h2>Step</h2>
          <StepDetails execution={execution} record={records[selected]} step={stepDefs[selected]} log={log} />
        </div>
      </div>
      {execution.compensations?.length > 0 && (
        <section>
          <h2>Compensations</h2>
          <table>
            <thead><tr><th scope="col">Step</th><th scope="col">Operation</th><th scope="col">Status</th><th scope="col">Error</th></tr></thead>
            <tbody>
              {execution.compensations.map((c, i) => (
                <tr key={i}><td class="mono">{c.step}</td><td class="mono">{c.plugin_id}.{c.operation}</td><td><Status status={c.status} /></td><td>{c.error?.message || ''}</td></tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      {Object.keys(execution.outputs || {}).length > 0 && (<section><h2>Outputs</h2><Json value={execution.outputs} /></section>)}
      <section>
        <h2>Log</h2>
        <ol class="log" aria-label="Log" tabIndex={0}>
          {log.map((e) => (
            <li key={e.seq} data-kind={e.kind}>
              <span class="muted">{formatTime(new Date(e.at_ms))}</span>{' '}
              {e.step_id ? <span class="mono">{e.step_id}</span> : <span>execution</span>}
              {e.attempt ? <span class="muted"> #{e.attempt}</span> : ''}
              {' '}{e.kind === 'compensation' ? 'compensation ' : ''}<Status status={e.status} />
              {e.message && <span class="log-message"> {e.message}</span>}
            </li>
          ))}
        </ol>
      </section>
    </section>
  );
}
