/**
 * A seed of live disks: the wiring between the source side of replication and src/seed
 * (which knows nothing of trackers or shippers).
 *
 *   parkForSeed(rep)        the disk is parked: the tracker switches to its dirty bitmap
 *                           and no resync runs, BEFORE the first byte is read
 *                           (docs/DESIGN.md invariant 1); the epoch is the tracker's seq then.
 *   exportLiveSeed(...)     parks every disk and exports them (src/seed exportSeed).
 *   resumeAfterSeed(rep)    once the destination has imported the seed: unparked.
 *                           The shipper restarts the journal at S >= epoch and ships the
 *                           blocks dirtied since the epoch as a resync at S, then streams;
 *                           a replica built from the seed's manifest (epoch E) replays
 *                           resync S, then the journal from S.
 *
 * While the seed travels (days) the disk stays in bitmap mode: no journal grows, only the
 * bitmap, and nothing but the dirty blocks crosses the network afterwards.
 */
import { FerryError, throwIfAborted } from '../core/index.js';
import { exportSeed, type ExportSeedOptions, type ExportSeedResult, type SeedDisk } from '../seed/index.js';
import type { SourceReplication } from './disk-replication.js';

/**
 * Parks one disk for a seed and returns it as a seed disk with its epoch.
 *
 * Safe states: the tracker is consistent (no resync under way or owed), or the disk is
 * already parked (a re-run to resume an interrupted export).
 * A resync under way is refused: its later pieces would carry blocks written after the
 * seed's epoch under an older S, which a replica that starts at the epoch skips.
 */
export async function parkForSeed(rep: SourceReplication, signal?: AbortSignal): Promise<SeedDisk> {
  const { tracker } = rep;
  const id = rep.options.diskId;
  throwIfAborted(signal);
  const parked = rep.parked && tracker.mode === 'bitmap';
  if (!parked && !tracker.consistent) {
    throw new FerryError(
      'invalid-state',
      `disk ${id}: a resync is under way or owed (the tracker is ${tracker.mode}, inconsistent); a seed can start once the disk is consistent`,
    );
  }
  await rep.park('seed export', signal);
  return { id, device: rep.source, epoch: tracker.currentSeq, replication: tracker.replication, name: id };
}

/** After the seed is imported at the destination: resync the dirty blocks, then stream. */
export function resumeAfterSeed(rep: SourceReplication): void {
  rep.unpark();
}

export interface LiveSeedOptions extends Omit<ExportSeedOptions, 'disks'> {
  replications: SourceReplication[];
}

/**
 * Exports a seed of disks that are in use. Re-run after an interruption, it continues the
 * export (the disks stay parked, and the seed keeps its first epochs).
 */
export async function exportLiveSeed(options: LiveSeedOptions): Promise<ExportSeedResult> {
  const { replications, ...rest } = options;
  const disks: SeedDisk[] = [];
  for (const rep of replications) disks.push(await parkForSeed(rep, options.signal));
  return exportSeed({ ...rest, disks });
}
