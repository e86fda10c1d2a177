/**
 * Bounded concurrency over a sequence of work: one task per item, at most `concurrency`
 * under way, items taken only as slots free up (so an item that holds memory, a chunk
 * buffer, is not taken before it can start).
 */
import PQueue from 'p-queue';
import { throwIfAborted } from './errors.js';

/**
 * Runs `task` for each item in order, at most `concurrency` at once. The first failure (or
 * an abort) stops it: no further task starts, the tasks under way finish, and the error is
 * thrown; nothing is left running when it returns or throws.
 */
export async function forEachConcurrently<T>(
  items: Iterable<T> | AsyncIterable<T>,
  concurrency: number,
  task: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const queue = new PQueue({ concurrency });
  let failure: unknown;
  try {
    for await (const item of items) {
      if (failure !== undefined) break;
      throwIfAborted(signal);
      queue.add(() => task(item)).catch((err: unknown) => (failure ??= err));
      await queue.onSizeLessThan(1); // the next item is taken when a slot is free
    }
  } finally {
    await queue.onIdle();
  }
  if (failure !== undefined) throw failure;
}
