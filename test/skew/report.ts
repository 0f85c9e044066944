import { scenarios } from './cell.ts';

/** What one scenario did in one cell. */
export interface Outcome {
  ok: boolean;
  /** The semantics seen (or, when it failed, why). */
  semantics: string;
}

interface Axis {
  key: string;
  label: string;
}

/**
 * The skew matrix as measured: filled in by the test as scenarios finish,
 * rendered as a markdown table (rows registry, columns client).
 */
export class SkewMatrix {
  private readonly outcomes = new Map<string, Outcome>();
  private readonly versions = new Map<string, string>();

  constructor(
    private readonly registries: Axis[],
    private readonly clients: Axis[],
  ) {}

  record(registry: string, client: string, scenario: string, outcome: Outcome): void {
    this.outcomes.set(`${registry}|${client}|${scenario}`, outcome);
  }

  /** The version a registry reported in `/health`, or a client's `sdkVersion`. */
  version(key: string, version: string): void {
    this.versions.set(key, version);
  }

  /** True when every scenario of every cell ran and passed. */
  get complete(): boolean {
    return this.registries.every((r) =>
      this.clients.every((c) => scenarios.every((s) => this.outcomes.get(`${r.key}|${c.key}|${s.key}`)?.ok)),
    );
  }

  markdown(): string {
    const cell = (r: Axis, c: Axis) =>
      scenarios
        .map((s) => {
          const o = this.outcomes.get(`${r.key}|${c.key}|${s.key}`);
          const text = o ? `${o.ok ? '✓' : '✗'} **${s.key}**: ${o.semantics}` : `– **${s.key}**: not run`;
          return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
        })
        .join('<br>');
    const label = (a: Axis) => {
      const v = this.versions.get(a.key);
      return v ? `${a.label}<br>\`${v}\`` : a.label;
    };
    return alignedTable([
      ['registry \\ client', ...this.clients.map(label)],
      ...this.registries.map((r) => [label(r), ...this.clients.map((c) => cell(r, c))]),
    ]);
  }
}

/** A markdown table padded the way Biome formats one (so the generated file passes `pnpm lint`). */
function alignedTable(rows: string[][]): string {
  const width = (text: string) => [...text].length;
  const header = rows[0] ?? [];
  const widths = header.map((_, i) => Math.max(3, ...rows.map((r) => width(r[i] ?? ''))));
  const line = (r: string[]) =>
    `| ${widths.map((w, i) => (r[i] ?? '') + ' '.repeat(w - width(r[i] ?? ''))).join(' | ')} |`;
  return [
    line(header),
    `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`,
    ...rows.slice(1).map(line),
  ].join('\n');
}
