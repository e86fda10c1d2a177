import { formatBytes, formatRate } from '../../core/index.js';
import { FilterControlClient } from '../../api/index.js';
import { fenceMessage } from '../../delta/index.js';
import type { FilterDiskStatus } from '../../migrate/index.js';
import type { Command } from '../command.js';
import { parse, required } from '../options.js';
import { print } from '../terminal.js';

export const statusCommand: Command = {
  name: 'status',
  usage: `Usage: ferry status --control PATH [--disk ID] [--json]

Asks a running 'ferry filter' (over its control socket) for each disk's figures: its
replication, whether it is fenced after a cutover or quiesced by one, tracking mode, whether the replica can be consistent, lag (journal records and seconds not yet in
the store), backlog (unshipped journal plus dirty blocks), foreground/background/drain
rates, the write delay backpressure adds, the predicted cutover pause, NBD traffic and the
base copy's progress.

Options:
  --control PATH       the filter's control socket
  --disk ID            only this disk
  --json               print the raw status as JSON (non-finite numbers are null)`,
  async run(argv, signal) {
    const { values } = parse(argv, { control: { type: 'string' }, disk: { type: 'string' } });
    const client = new FilterControlClient(required(values.control, '--control'));
    const list = values.disk !== undefined ? { disks: [await client.disk(values.disk, { signal })], rateBytesPerSec: undefined } : await client.listDisks({ signal });
    if (values.json) {
      print(JSON.stringify(list));
      return 0;
    }
    if (list.rateBytesPerSec !== undefined) print(`link rate: ${list.rateBytesPerSec ? formatRate(list.rateBytesPerSec) : 'unlimited'}`);
    for (const disk of list.disks) print(describe(disk));
    return 0;
  },
};

function describe(d: FilterDiskStatus): string {
  const f = d.figures;
  const pause = f.predictedPauseMs === null || !Number.isFinite(f.predictedPauseMs) ? 'unknown' : `${Math.round(f.predictedPauseMs)} ms`;
  const lines = [
    `${d.id}  ${d.fence ? 'FENCED' : f.mode}${f.consistent || d.fence ? '' : ' (inconsistent: resync owed)'}${d.quiesced ? '  QUIESCED' : ''}  ${formatBytes(d.sizeBytes)}  ${d.uri}`,
    `  replication ${d.tracker.replication}`,
    `  lag ${f.lagSeq} seq, ${f.lagSeconds.toFixed(1)} s  backlog ${formatBytes(f.backlogBytes)}  seq ${f.sourceSeq} (shipped ${f.replicaSeq})`,
    `  rates: foreground ${formatRate(f.foregroundRateBytesPerSec)}, background ${formatRate(f.backgroundRateBytesPerSec)}, drain ${formatRate(f.drainRateBytesPerSec)}`,
    `  write delay ${f.writeDelayMs.toFixed(1)} ms  predicted pause ${pause}`,
    `  nbd: ${d.nbd.connectionsActive} connections, ${d.nbd.writes} writes (${formatBytes(d.nbd.bytesWritten)}), ${d.nbd.reads} reads, ${d.nbd.errors} errors`,
  ];
  if (d.fence) lines.push(`  ${fenceMessage(d.fence)}`);
  if (d.quiesce) lines.push(`  quiesced by ${d.quiesce.owner} since ${d.quiesce.since}; lease until ${d.quiesce.expiresAt}`);
  if (d.shipper.lastError) lines.push(`  shipping failing: ${d.shipper.lastError}`);
  const copy = d.baseCopy;
  if (copy) {
    const pct = copy.bytesTotal > 0 ? ((100 * copy.bytesDone) / copy.bytesTotal).toFixed(1) : '100';
    lines.push(
      copy.state === 'done'
        ? `  base copy: done, manifest ${copy.manifestId} (epoch ${copy.epoch})`
        : copy.state === 'failed'
          ? `  base copy: FAILED (${copy.error?.code}): ${copy.error?.message}`
          : `  base copy: ${pct}% at ${formatRate(copy.rateBytesPerSec)}`,
    );
  }
  return lines.join('\n');
}
