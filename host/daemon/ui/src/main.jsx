// The Plexus web UI: a login form, then the executions, workflows,
// schedules, plugins and health pages, routed by the URL's hash
// (#/executions/<id>, …). Data comes from the daemon's API with the
// session cookie; nothing is stored in the browser.
import { render } from 'preact';
import { useState, useEffect } from 'preact/hooks';
import { api, login, logout, onUnauthorized, writeKey, ApiError } from './api.js';
import { ConfirmHost, ErrorBox, Link } from './ui.jsx';
import { Executions } from './pages/executions.jsx';
import { ExecutionPage } from './pages/execution.jsx';
import { Workflows, WorkflowPage } from './pages/workflows.jsx';
import { Schedules, SchedulePage } from './pages/schedules.jsx';
import { Plugins, PluginPage } from './pages/plugins.jsx';
import { HealthPage } from './pages/health.jsx';

/** `%`-decoding that keeps a malformed part as it is (a hand-typed URL must not break the page). */
function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** The hash route: `#/a/b?x=1` → {parts: ['a', 'b'], params: URLSearchParams('x=1')}. */
function parseHash(hash) {
  const raw = hash.replace(/^#\/?/, '');
  const [path, q = ''] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decode), params: new URLSearchParams(q) };
}

function useRoute() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return parseHash(hash);
}

function Login({ onIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const field = e.currentTarget.elements.token;
    setBusy(true);
    try {
      await login(field.value.trim());
      field.value = '';
      setError(null);
      onIn();
    } catch (err) {
      field.value = '';
      setError(err.status === 401 ? new ApiError(401, 'Unauthorized', 'That is not the daemon’s token.') : err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login" id="main">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Plexus</h1>
        <p>Paste the daemon’s token: the content of its token file (<code>plexus daemon</code> prints where it is).</p>
        <label for="token">Token</label>
        <input id="token" name="token" type="password" autocomplete="off" spellcheck={false} required autofocus />
        <button type="submit" class="primary" disabled={busy}>Log in</button>
        <ErrorBox error={error} />
        <p class="muted small">The token is exchanged for a session cookie; the page does not keep it.</p>
      </form>
    </main>
  );
}

const NAV = [
  ['executions', 'Executions'],
  ['workflows', 'Workflows'],
  ['schedules', 'Schedules'],
  ['plugins', 'Plugins'],
  ['health', 'Health'],
];

function Page({ route }) {
  const [section = 'executions', id] = route.parts;
  switch (section) {
    case 'executions':
      return id ? <ExecutionPage id={id} /> : <Executions params={route.params} />;
    case 'workflows':
      return id ? <WorkflowPage id={id} params={route.params} /> : <Workflows />;
    case 'schedules':
      return id ? <SchedulePage id={id} /> : <Schedules />;
    case 'plugins':
      return id ? <PluginPage id={id} /> : <Plugins />;
    case 'health':
      return <HealthPage />;
    default:
      return <p>No page <code>{section}</code>. <Link to="/executions">Executions</Link></p>;
  }
}

function App() {
  const [authed, setAuthed] = useState(null);
  const route = useRoute();
  useEffect(() => onUnauthorized(setAuthed), []);
  useEffect(() => {
    // A session without its write key (logged in from another address) can only read: log in again.
    if (!writeKey()) {
      setAuthed(false);
      return;
    }
    api('/v1/nodes').then(() => setAuthed(true), (e) => setAuthed(e.status === 401 ? false : true));
  }, []);
  if (authed === null) return <p class="loading">Loading…</p>;
  if (!authed) return <Login onIn={() => setAuthed(true)} />;
  const section = route.parts[0] || 'executions';
  const out = async () => {
    try {
      await logout();
    } finally {
      setAuthed(false);
    }
  };
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>Skip to content</a>
      <header class="top">
        <span class="brand">Plexus</span>
        <nav aria-label="Sections">
          {NAV.map(([key, label]) => (
            <Link key={key} to={`/${key}`} aria-current={section === key ? 'page' : undefined}>{label}</Link>
          ))}
        </nav>
        <button type="button" class="logout" onClick={out}>Log out</button>
      </header>
      <main id="main" tabIndex={-1}>
        <Page route={route} />
      </main>
      <ConfirmHost />
    </>
  );
}

render(<App />, document.getElementById('app'));
