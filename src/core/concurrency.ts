/**
 * Bounded concurrency over a sequence of work: one task per item, at most `concurrency`
 * under way, items taken only as slots free up (so an item that holds memory, a chunk
 * buffer, is not taken before it can start).
 */
import PQueue from 'p-queue';
import { FerryError, throwIfAborted } from './errors.js';

/**
 * Runs `task` for each item in order, at most `concurrency` at once. The first failure (or
 * an abort) stops it: no further item is taken or started, the tasks under way finish, and
 * the error is thrown; nothing is left running when it returns or throws.
 */
export async function forEachConcurrently<T>(
  items: Iterable<T> | AsyncIterable<T>,
  concurrency: number,
  task: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const queue = new PQueue({ concurrency });
  // Recorded inside the task, before the queue hears it ended: a rejection with any value counts.
  let failure: { error: unknown } | undefined;
  const stop = () => {
    if (failure) throw failure.error;
    throwIfAborted(signal);
  };
  try {
    for await (const item of takeWhenFree(items, queue, concurrency, stop, signal)) {
      void queue.add(async () => {
        try {
          await task(item);
        } catch (error) {
          failure ??= { error };
        }
      });
    }
  } finally {
    await queue.onIdle();
  }
  if (failure) throw failure.error;
}

/** The items, each taken from `items` only once a slot is free and nothing has stopped the work. */
async function* takeWhenFree<T>(items: Iterable<T> | AsyncIterable<T>, queue: PQueue, concurrency: number, stop: () => void, signal?: AbortSignal): AsyncGenerator<T> {
  const iterator = Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]();
  try {
    for (;;) {
      while (queue.pending + queue.size >= concurrency) {
        stop();
        await taskEnded(queue, signal);
      }
      stop();
      const next = await iterator.next();
      if (next.done) return;
      stop();
      yield next.value;
    }
  } finally {
    await iterator.return?.();
  }
}

/** Resolves when a task of `queue` ends; rejects when `signal` fires first. */
function taskEnded(queue: PQueue, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      queue.off('next', onNext);
      reject(new FerryError('aborted', 'aborted', { cause: signal?.reason }));
    };
    const onNext = () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    queue.once('next', onNext);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
