/**
 * Replication identity (invariant 9). A replication is one capture of one disk: from the
 * moment a change tracker is created, through base copy or seed and streaming, to its
 * cutover. Journal seqs count within a replication only, so everything that carries seqs
 * (deltas, manifests with an epoch, tracker and replica state) also carries the id of the
 * replication they count in; an applier replays nothing of another replication.
 *
 * An id is 16 random bytes, written as 32 lower-case hex digits.
 */
import { randomBytes } from 'node:crypto';
import { badInput } from './errors.js';

const pattern = /^[0-9a-f]{32}$/;

export function newReplicationId(): string {
  return randomBytes(16).toString('hex');
}

export function isReplicationId(value: unknown): value is string {
  return typeof value === 'string' && pattern.test(value);
}

export function checkReplicationId(value: unknown, field = 'replication'): string {
  if (!isReplicationId(value)) throw badInput(field, value, '32 lower-case hex digits');
  return value;
}
