// A workflow's DAG drawn as SVG, laid out by dagre: one box per step with
// its live status (colour and word) and, while it runs, its progress; an
// arrow per dependency. Each box is a button (Tab, Enter or Space selects it).
import { Graph, layout } from '@dagrejs/dagre';
import { useMemo } from 'preact/hooks';

const NODE_W = 168;
const NODE_H = 58;

/** The dependencies of a step of a workflow's definition (QtForge's `dependencies`). */
function dependencies(step) {
  return Array.isArray(step.dependencies) ? step.dependencies : [];
}

/** Lay out `steps` (each `{id, dependencies}`), top to bottom when `vertical`. */
export function layoutDag(steps, vertical) {
  const g = new Graph();
  g.setGraph({ rankdir: vertical ? 'TB' : 'LR', nodesep: 20, ranksep: 44, marginx: 6, marginy: 6 });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(steps.map((s) => s.id));
  for (const s of steps) g.setNode(s.id, { width: NODE_W, height: NODE_H });
  for (const s of steps) for (const d of dependencies(s)) if (ids.has(d)) g.setEdge(d, s.id);
  layout(g);
  const nodes = g.nodes().map((id) => ({ id, ...g.node(id) }));
  const edges = g.edges().map((e) => ({ from: e.v, to: e.w, points: g.edge(e).points }));
  const { width, height } = g.graph();
  return { nodes, edges, width: Math.max(width || 0, NODE_W), height: Math.max(height || 0, NODE_H) };
}

function short(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/**
 * `steps`: the definition's steps; `records`: step id → the execution's
 * StepRecord (absent: no status, e.g. a workflow's graph); `selected`: a
 * step id; `onSelect(id)`.
 */
export function Dag({ steps, records = {}, selected, onSelect, label }) {
  const vertical = typeof window !== 'undefined' && window.matchMedia('(max-width: 700px)').matches;
  const key = steps.map((s) => `${s.id}<${dependencies(s).join(',')}`).join(';');
  const graph = useMemo(() => layoutDag(steps, vertical), [key, vertical]);
  const keydown = (id) => (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      onSelect?.(id);
    }
  };
  return (
    <div class="dag-wrap">
      <svg
        class="dag"
        role="group"
        aria-label={label || 'Workflow graph'}
        viewBox={`0 0 ${graph.width} ${graph.height}`}
        width={graph.width}
        height={graph.height}
        style={{ maxWidth: '100%', height: 'auto' }}
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M0 0 L10 5 L0 10 z" class="arrow" />
          </marker>
        </defs>
        {graph.edges.map((e) => (
          <polyline
            key={`${e.from}->${e.to}`}
            class="edge"
            points={e.points.map((p) => `${p.x},${p.y}`).join(' ')}
            marker-end="url(#arrow)"
          />
        ))}
        {graph.nodes.map((n) => {
          const record = records[n.id];
          const status = record?.status;
          const progress = record?.progress;
          const fraction = typeof progress?.fraction === 'number' ? Math.max(0, Math.min(1, progress.fraction)) : null;
          const x = n.x - NODE_W / 2;
          const y = n.y - NODE_H / 2;
          const statusText = `${status ? status.replace('_', ' ') : ''}${record?.attempts > 1 ? ` · attempt ${record.attempts}` : ''}`;
          // The accessible name is the visible text (WCAG 2.5.3).
          const name = statusText ? `${n.id} ${statusText}` : n.id;
          return (
            <g
              key={n.id}
              class={`node ${status ? `status-${status}` : 'status-none'}${selected === n.id ? ' selected' : ''}`}
              transform={`translate(${x},${y})`}
              tabindex={onSelect ? 0 : undefined}
              role={onSelect ? 'button' : 'img'}
              aria-label={name}
              aria-pressed={onSelect ? String(selected === n.id) : undefined}
              data-step={n.id}
              data-status={status || ''}
              onClick={onSelect ? () => onSelect(n.id) : undefined}
              onKeyDown={onSelect ? keydown(n.id) : undefined}
            >
              <title>{name}</title>
              <rect width={NODE_W} height={NODE_H} rx="8" />
              <text>
                <tspan x="10" y="22" class="node-id">{short(n.id, 20)}</tspan>{' '}
                <tspan x="10" y="42" class="node-status">{statusText}</tspan>
              </text>
              {fraction !== null && status === 'running' && (
                <g>
                  <rect x="10" y="48" width={NODE_W - 20} height="4" class="bar-bg" />
                  <rect x="10" y="48" width={(NODE_W - 20) * fraction} height="4" class="bar" />
                </g>
              )}
            </g>
          );
        })}
      </svg>
    </div>
  );
}
