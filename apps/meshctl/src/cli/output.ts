import pc from 'picocolors';

/** Where a command writes; swapped in tests only through the process streams. */
export interface Output {
  /** `--json` was given: print data as JSON, nothing else on stdout. */
  readonly json: boolean;
  /** stdout is a terminal (progress lines are rewritten in place). */
  readonly tty: boolean;
  /** A line for people: stdout, or stderr under `--json` (stdout holds only the document). */
  line(text?: string): void;
  /** Prints a JSON text as is (a registry's body) on stdout: the command's document. */
  document(text: string): void;
  /** Prints a value as pretty JSON (one document per command). */
  printJson(value: unknown): void;
  /** A warning on stderr (never mixed into JSON output). */
  warn(text: string): void;
  /**
   * A progress line: rewritten in place on a terminal, plain lines otherwise
   * (a new one when `text` changed, else every 30 s). `suffix` (an elapsed
   * time) is printed but does not count as a change.
   */
  progress(text: string, suffix?: string): void;
  /** Ends a progress line on a terminal. */
  endProgress(): void;
}

export function createOutput(json: boolean): Output {
  const tty = Boolean(process.stdout.isTTY);
  let progressOpen = false;
  let lastPlain = '';
  let lastPlainAt = 0;
  const endProgress = () => {
    if (progressOpen) process.stdout.write('\n');
    progressOpen = false;
  };
  return {
    json,
    tty,
    line(text = '') {
      endProgress();
      (json ? process.stderr : process.stdout).write(`${text}\n`);
    },
    document(text) {
      endProgress();
      process.stdout.write(`${text.trim()}\n`);
    },
    printJson(value) {
      endProgress();
      process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
    warn(text) {
      endProgress();
      process.stderr.write(`${pc.yellow('Warning:')} ${text}\n`);
    },
    progress(text, suffix = '') {
      if (json) return;
      if (tty) {
        process.stdout.write(`\r\x1b[2K${text}${suffix}`);
        progressOpen = true;
        return;
      }
      // Not a terminal: a line when something changed, else one every 30 s.
      const now = Date.now();
      if (text !== lastPlain || now - lastPlainAt >= 30_000) {
        process.stdout.write(`${text}${suffix}\n`);
        lastPlain = text;
        lastPlainAt = now;
      }
    },
    endProgress,
  };
}

/** Strips ANSI colour codes (for width computations). */
const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const visible = (s: string) => s.replace(ansi, '');

/**
 * A plain text table like meshctl 3.7.1's: upper-case headers, a dashed rule,
 * columns padded to their widest cell (colour codes do not count).
 */
export function table(headers: string[], rows: string[][], { rule = true } = {}): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? '').length)));
  const render = (cells: string[]) =>
    cells
      .map((c, i) =>
        i === cells.length - 1 ? c : c + ' '.repeat(Math.max(0, (widths[i] ?? 0) - visible(c).length)),
      )
      .join('  ')
      .trimEnd();
  const lines = [render(headers)];
  if (rule) lines.push('-'.repeat(widths.reduce((a, w) => a + w, 0) + 2 * (widths.length - 1)));
  for (const r of rows) lines.push(render(r));
  return lines.join('\n');
}

/** `12s`, `5m3s`, `2h5m`, `3d4h`: a compact age. */
export function formatAge(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${m % 60 ? `${m % 60}m` : ''}`;
  const d = Math.floor(h / 24);
  return `${d}d${h % 24 ? `${h % 24}h` : ''}`;
}

/** Unix seconds → RFC 3339 UTC without fractions (`-` when absent), as meshctl 3.7.1 prints. */
export function unixToIso(seconds: number | null | undefined): string {
  if (!seconds) return '-';
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export { pc as colors };
