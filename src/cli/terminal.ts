/**
 * Everything the CLI shows a person: a progress bar on a terminal (plain periodic lines
 * when stderr is not a terminal), log lines, results.
 */
import { formatBytes, formatDuration, formatRate, type LogLevel, type LogSink, type Progress } from '../core/index.js';

export function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

export const stderrSink: LogSink = (level: LogLevel, message, fields) => {
  const extra = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  process.stderr.write(`${level}: ${message}${extra ? ` ${extra}` : ''}\n`);
};

/** A progress reporter: a redrawn bar on a TTY, a line every 10 s otherwise, nothing if quiet. */
export function progressReporter(label: string, quiet: boolean): { update: (p: Progress) => void; done: () => void } {
  if (quiet) return { update: () => {}, done: () => {} };
  const tty = process.stderr.isTTY;
  let lastLine = Date.now(); // off a terminal, the first line comes after 10 s: short work stays quiet
  let drawn = false;
  return {
    update(p) {
      const pct = p.bytesTotal > 0 ? (100 * p.bytesDone) / p.bytesTotal : 100;
      const text = `${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}  ${formatRate(p.rateBytesPerSec)}  ETA ${formatDuration(p.etaSec)}`;
      if (tty) {
        const width = 30;
        const filled = Math.round((pct / 100) * width);
        process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct.toFixed(1).padStart(5)}%  ${text}\x1b[K`);
        drawn = true;
      } else if (Date.now() - lastLine >= 10_000) {
        lastLine = Date.now();
        process.stderr.write(`${label}: ${pct.toFixed(1)}%  ${text}\n`);
      }
    },
    done() {
      if (drawn) process.stderr.write('\n');
    },
  };
}
