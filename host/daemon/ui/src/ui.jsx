// Small pieces every page uses: status badges, times, durations, JSON,
// errors, the confirmation dialog and data loading.
import { useState, useEffect, useRef, useCallback } from 'preact/hooks';

/** A status as a coloured label (the word is always written: colour is not the only cue). */
export function Status({ status }) {
  const s = status || 'unknown';
  return <span class={`badge status-${s}`}>{s.replace('_', ' ')}</span>;
}

/** ms since the Unix epoch as a local date and time. */
export function Time({ ms }) {
  if (ms === null || ms === undefined) return <span class="muted">—</span>;
  const d = new Date(ms);
  return <time dateTime={d.toISOString()} title={d.toISOString()}>{formatTime(d)}</time>;
}

export function formatTime(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in ms, readable: 850 ms, 3.2 s, 4 min 5 s, 2 h 3 min. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A value as indented JSON, cut at `max` characters. */
export function Json({ value, max = 20000 }) {
  let text = JSON.stringify(value, null, 2);
  if (text === undefined) text = 'null';
  const cut = text.length > max;
  return (
    <pre class="json" tabIndex={0}>
      {cut ? text.slice(0, max) : text}
      {cut && <span class="muted">{`\n… ${text.length - max} more characters`}</span>}
    </pre>
  );
}

/** An error from the daemon (or the network). */
export function ErrorBox({ error }) {
  if (!error) return null;
  return (
    <div class="error" role="alert">
      <strong>{error.code || 'Error'}</strong>: {error.message}
      {error.details?.length > 0 && (
        <ul>
          {error.details.map((d, i) => (
            <li key={i}>{typeof d === 'string' ? d : JSON.stringify(d)}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

/**
 * Loads `load()` now, again when `deps` change, and every `everyMs` ms when
 * given (while the tab is visible). Returns [data, error, reload].
 */
export function useData(load, deps, everyMs) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const asked = useRef(0);
  const applied = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++asked.current;
    try {
      const value = await load();
      // An answer older than one already shown is dropped; a slow one still counts.
      if (mine > applied.current) {
        applied.current = mine;
        setData(value);
        setError(null);
      }
    } catch (e) {
      if (mine > applied.current) setError(e);
    }
  }, deps);
  useEffect(() => {
    setData(null);
    reload();
    if (!everyMs) return undefined;
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') reload();
    }, everyMs);
    return () => clearInterval(timer);
  }, [reload, everyMs]);
  return [data, error, reload];
}

let openConfirm = null;

/**
 * Ask the person to confirm: resolves true when they press the confirm
 * button, false when they cancel (Escape, the cancel button).
 */
export function confirmAction({ title, body, confirm = 'Confirm', cancel = 'Cancel', danger = false }) {
  return new Promise((resolve) => openConfirm({ title, body, confirm, cancel, danger, resolve }));
}

/** The one confirmation dialog of the page (a modal <dialog>: it keeps the focus until answered). */
export function ConfirmHost() {
  const [ask, setAsk] = useState(null);
  const dialog = useRef(null);
  openConfirm = (a) =>
    setAsk((open) => {
      // One question at a time: a new one answers the one still open with "no".
      open?.resolve(false);
      return a;
    });
  useEffect(() => {
    if (ask && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [ask]);
  const answer = (yes) => {
    dialog.current?.close();
    ask?.resolve(yes);
    setAsk(null);
  };
  return (
    <dialog ref={dialog} class="confirm" aria-labelledby="confirm-title" onCancel={(e) => { e.preventDefault(); answer(false); }}>
      {ask && (
        <form method="dialog" onSubmit={(e) => { e.preventDefault(); answer(true); }}>
          <h2 id="confirm-title">{ask.title}</h2>
          {ask.body && <p>{ask.body}</p>}
          <div class="actions">
            {/* A dangerous action is not the default: the focus starts on the way out. */}
            <button type="button" onClick={() => answer(false)} autofocus={ask.danger}>{ask.cancel}</button>
            <button type="submit" class={ask.danger ? 'danger' : 'primary'} autofocus={!ask.danger}>{ask.confirm}</button>
          </div>
        </form>
      )}
    </dialog>
  );
}

/** A link inside the page (hash routing). */
export function Link({ to, children, ...rest }) {
  return <a href={`#${to}`} {...rest}>{children}</a>;
}

/** A page's title, also the document's. */
export function Title({ children, sub }) {
  useEffect(() => {
    document.title = `${typeof children === 'string' ? children : sub || 'Plexus'} · Plexus`;
  }, [children, sub]);
  return <h1>{children}</h1>;
}
