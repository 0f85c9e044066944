import type { DashboardSnapshot, ThroughputPoint } from '@mesh/protocol';

const width = 560;
const height = 120;

/** A small SVG line chart; no library, nothing inline the CSP would refuse. */
function Chart(props: {
  title: string;
  points: ThroughputPoint[];
  pick: (p: ThroughputPoint) => number | null;
  unit: string;
}) {
  const values = props.points.map(props.pick);
  const known = values.filter((v): v is number => v !== null);
  const max = Math.max(1, ...known);
  const t0 = props.points[0]?.t ?? 0;
  const span = Math.max(1, (props.points.at(-1)?.t ?? 0) - t0);
  let path = '';
  props.points.forEach((p, i) => {
    const v = values[i];
    if (v === null || v === undefined) return;
    const x = ((p.t - t0) / span) * width;
    const y = height - (v / max) * (height - 8) - 4;
    path += `${path ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const current = known.at(-1);
  return (
    <figure class="chart">
      <figcaption>
        {props.title}: <b>{current === undefined ? '—' : current.toFixed(1)}</b> {props.unit}{' '}
        <span class="hint">(max {max.toFixed(1)})</span>
      </figcaption>
      <svg
        viewBox={`0 0 ${width} ${height}`}
        width={width}
        height={height}
        role="img"
        aria-label={props.title}
      >
        <line x1="0" y1={height - 4} x2={width} y2={height - 4} class="axis" />
        <path d={path} class="series" />
      </svg>
    </figure>
  );
}

/** Claims and completions per second and queue depth since the page's feed started (up to 5 minutes). */
export function ThroughputPage(props: { snap: DashboardSnapshot }) {
  const points = props.snap.throughput;
  const minutes = points.length > 1 ? ((points.at(-1)?.t ?? 0) - (points[0]?.t ?? 0)) / 60_000 : 0;
  return (
    <div>
      <p class="hint">
        The last {minutes.toFixed(1)} minutes, one point a second (fleet-wide: every live replica's counters).
      </p>
      <Chart title="Claims" points={points} pick={(p) => p.claims} unit="/s" />
      <Chart title="Completions" points={points} pick={(p) => p.completions} unit="/s" />
      <Chart title="Queue depth" points={points} pick={(p) => p.queue} unit="jobs" />
      <h3>Queue by capability</h3>
      <table class="grid">
        <thead>
          <tr>
            <th>Capability</th>
            <th>Waiting</th>
            <th>Oldest waits</th>
          </tr>
        </thead>
        <tbody>
          {props.snap.queue.map((q) => (
            <tr key={q.capability}>
              <td>{q.capability}</td>
              <td class="num">{q.depth}</td>
              <td class="num">{q.oldest_age_seconds.toFixed(1)} s</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
