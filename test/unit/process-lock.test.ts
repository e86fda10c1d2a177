import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FerryError, ProcessLock, type ProcessLockOptions } from '../../src/core/index.js';

const locks: ProcessLock[] = [];
afterEach(async () => {
  await Promise.all(locks.splice(0).map((lock) => lock.release()));
});

function newKey(): string {
  return `test:${randomUUID()}`;
}

/** The lock's documented socket name, for peers that are not a ProcessLock. */
function socketName(key: string): string {
  return `\0ferry-lock/${createHash('sha256').update(key).digest('hex')}`;
}

async function acquire(key: string, options: Partial<ProcessLockOptions> = {}): Promise<ProcessLock> {
  const lock = await ProcessLock.acquire(key, { purpose: 'test holder', description: 'replica /tmp/test.img', ...options });
  locks.push(lock);
  return lock;
}

async function failure(promise: Promise<unknown>): Promise<FerryError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FerryError);
  return err as FerryError;
}

/** A yieldable holder that records its callbacks. */
async function yieldableHolder(key: string) {
  const events: string[] = [];
  let retaken = () => {};
  const whenRetaken = new Promise<void>((resolve) => (retaken = resolve));
  const lock = await acquire(key, {
    purpose: 'ferry replica apply --follow',
    onYield: async () => {
      events.push('yield');
    },
    onRetaken: () => {
      events.push('retaken');
      retaken();
    },
  });
  return { lock, events, whenRetaken };
}

describe('ProcessLock', () => {
  it('is held once acquired and free again once released; release is idempotent', async () => {
    const key = newKey();
    const lock = await acquire(key);
    expect(lock.held).toBe(true);
    await expect(lock.whenHeld()).resolves.toBeUndefined();
    await Promise.all([lock.release(), lock.release()]);
    await lock.release();
    expect(lock.held).toBe(false);
    await expect(lock.whenHeld()).rejects.toMatchObject({ code: 'invalid-state' });
    const again = await acquire(key);
    expect(again.held).toBe(true);
  });

  it('refuses a second holder with a conflict naming the holder, even within one process', async () => {
    const key = newKey();
    await acquire(key, { purpose: 'ferry replica apply --follow' });
    const err = await failure(acquire(key, { purpose: 'ferry cutover' }));
    expect(err.code).toBe('conflict');
    expect(err.message).toContain('replica /tmp/test.img is in use by');
    expect(err.message).toContain(`pid ${process.pid}`);
    expect(err.message).toContain('(ferry replica apply --follow)');
    expect(err.message).toMatch(/since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/);
    expect(await failure(acquire(key))).toMatchObject({ code: 'conflict' }); // still held
  });

  it('does not conflict across different keys', async () => {
    await acquire(newKey());
    await expect(acquire(newKey())).resolves.toBeInstanceOf(ProcessLock);
  });

  it('hands a yieldable lock over on takeOver and retakes it once the new holder releases', async () => {
    const key = newKey();
    const follower = await yieldableHolder(key);

    const cutover = await acquire(key, { purpose: 'ferry cutover', takeOver: true });
    expect(follower.events).toEqual(['yield']);
    expect(cutover.held).toBe(true);
    expect(follower.lock.held).toBe(false);
    let followerHeld = false;
    const waiting = follower.lock.whenHeld().then(() => (followerHeld = true));

    // While the cutover holds it, others see the cutover as the holder.
    const err = await failure(acquire(key, { purpose: 'third' }));
    expect(err.code).toBe('conflict');
    expect(err.message).toContain('(ferry cutover)');
    expect(followerHeld).toBe(false);

    await cutover.release();
    await follower.whenRetaken;
    await waiting;
    expect(follower.events).toEqual(['yield', 'retaken']);
    expect(follower.lock.held).toBe(true);
    expect((await failure(acquire(key, { purpose: 'third' }))).message).toContain('(ferry replica apply --follow)');
  });

  it('can hand over again after retaking', async () => {
    const key = newKey();
    const follower = await yieldableHolder(key);
    const first = await acquire(key, { takeOver: true });
    await first.release();
    await follower.whenRetaken;
    const second = await acquire(key, { takeOver: true });
    expect(second.held).toBe(true);
    expect(follower.events).toEqual(['yield', 'retaken', 'yield']);
    expect(follower.lock.held).toBe(false);
  });

  it('without takeOver, a yieldable holder is a conflict like any other', async () => {
    const key = newKey();
    const follower = await yieldableHolder(key);
    expect(await failure(acquire(key))).toMatchObject({ code: 'conflict' });
    expect(follower.events).toEqual([]);
    expect(follower.lock.held).toBe(true);
  });

  it('fails with a conflict giving the reason when the holder does not hand over', async () => {
    const key = newKey();
    const holder = await acquire(key, { purpose: 'ferry cutover' });
    const err = await failure(acquire(key, { takeOver: true }));
    expect(err.code).toBe('conflict');
    expect(err.message).toContain(`pid ${process.pid} (ferry cutover)`);
    expect(err.message).toContain('refused to hand over: ferry cutover does not hand over');
    expect(holder.held).toBe(true);
  });

  it('refuses the hand-over and stays held when onYield fails', async () => {
    const key = newKey();
    const holder = await acquire(key, {
      onYield: () => Promise.reject(new Error('applier\nstuck')),
    });
    const err = await failure(acquire(key, { takeOver: true }));
    expect(err.code).toBe('conflict');
    expect(err.message).toContain('refused to hand over: stopping its work failed: applier stuck');
    expect(holder.held).toBe(true);
  });

  it('resumes the yielder (onRetaken) when the requester gives up while the yielder stops', async () => {
    const key = newKey();
    const controller = new AbortController();
    let retaken = false;
    const holder = await acquire(key, {
      onYield: async () => controller.abort(),
      onRetaken: () => (retaken = true),
    });
    const err = await failure(acquire(key, { takeOver: true, signal: controller.signal }));
    expect(err.code).toBe('aborted');
    await holder.whenHeld();
    expect(retaken).toBe(true);
    expect(holder.held).toBe(true);
  });

  it('whenHeld rejects when its signal aborts, and when a yielded lock is released', async () => {
    const key = newKey();
    const follower = await yieldableHolder(key);
    const cutover = await acquire(key, { takeOver: true });
    const controller = new AbortController();
    const aborted = follower.lock.whenHeld(controller.signal);
    const released = follower.lock.whenHeld();
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'aborted' });
    await expect(follower.lock.whenHeld(AbortSignal.abort())).rejects.toMatchObject({ code: 'aborted' });

    await follower.lock.release();
    await expect(released).rejects.toMatchObject({ code: 'invalid-state' });
    await cutover.release();
    // The released follower does not come back: the name is free.
    const next = await acquire(key);
    expect(next.held).toBe(true);
    expect(follower.events).toEqual(['yield']);
  });

  it('survives clients that send garbage, overlong lines or just disconnect', async () => {
    const key = newKey();
    const holder = await acquire(key);
    for (const payload of ['nonsense\n', 'x'.repeat(5000), '']) {
      const socket = connect(socketName(key));
      socket.on('error', () => {});
      await once(socket, 'data'); // the holder introduces itself first
      socket.end(payload);
      await once(socket, 'close');
    }
    const rude = connect(socketName(key));
    rude.on('error', () => {});
    await once(rude, 'connect');
    rude.destroy();
    expect(holder.held).toBe(true);
    expect(await failure(acquire(key))).toMatchObject({ code: 'conflict' });
  });

  it('fails with a conflict when the holder does not answer (hung)', async () => {
    const key = newKey();
    const accepted: Socket[] = [];
    const hung = createServer((socket) => accepted.push(socket)); // accepts, never writes
    hung.listen(socketName(key));
    await once(hung, 'listening');
    try {
      const err = await failure(acquire(key, { answerTimeoutMs: 100 }));
      expect(err.code).toBe('conflict');
      expect(err.message).toContain('may be hung');
    } finally {
      hung.close();
      for (const socket of accepted) socket.destroy();
    }
  });

  it('fails with a conflict when something else holds the name', async () => {
    const key = newKey();
    const other = createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    other.listen(socketName(key));
    await once(other, 'listening');
    try {
      const err = await failure(acquire(key));
      expect(err.code).toBe('conflict');
      expect(err.message).toContain("does not speak ferry's lock protocol");
    } finally {
      other.close();
    }
  });

  it('is free the moment a process holding its name is SIGKILLed', async () => {
    const key = newKey();
    // The child binds the lock's name as a ProcessLock would and answers with its holder line.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createServer } from 'node:net';
         const info = JSON.stringify({ pid: process.pid, purpose: 'child holder', sinceMs: Date.now(), yieldable: false });
         createServer((s) => s.end(info + '\\n')).listen('\\0' + process.argv[1], () => console.log('ready'));`,
        socketName(key).slice(1), // argv cannot carry the leading NUL
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await once(child.stdout, 'data');
      const err = await failure(acquire(key));
      expect(err.code).toBe('conflict');
      expect(err.message).toContain(`pid ${child.pid} (child holder)`);

      child.kill('SIGKILL');
      await once(child, 'exit');
      const lock = await acquire(key);
      expect(lock.held).toBe(true);
    } finally {
      child.kill('SIGKILL');
    }
  });

  describe('across processes (the real module, transpiled, in a child)', () => {
    let dir = '';
    const children: ChildProcess[] = [];
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'ferry-lock-'));
      await transpileInto(dir, fileURLToPath(new URL('../../src/core/process-lock.ts', import.meta.url)));
      await writeFile(join(dir, 'child.mjs'), childScript);
    });
    afterAll(async () => {
      for (const child of children) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    });

    /** Starts a child that acquires the lock; its stdout lines are its events. */
    function startChild(key: string, mode: 'follower' | 'takeover') {
      const child = spawn(process.execPath, [join(dir, 'child.mjs'), key, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      const lines = createInterface({ input: child.stdout });
      const seen: string[] = [];
      const waiters: { line: string; resolve: () => void }[] = [];
      lines.on('line', (line) => {
        seen.push(line);
        for (const w of waiters.filter((w) => w.line === line)) w.resolve();
      });
      const exited = once(child, 'exit');
      return {
        child,
        seen,
        exited,
        /** Resolves once the child has printed `line` (at once if it already has). */
        saw: (line: string) =>
          Promise.race([
            new Promise<void>((resolve) => (seen.includes(line) ? resolve() : waiters.push({ line, resolve }))),
            exited.then(() => {
              if (!seen.includes(line)) throw new Error(`child exited without printing ${line}; it printed ${JSON.stringify(seen)}`);
            }),
          ]),
      };
    }

    it('takes over from a follower in another process, which retakes the lock after release and frees it when killed', async () => {
      const key = newKey();
      const follower = startChild(key, 'follower');
      await follower.saw('held');
      const err = await failure(acquire(key));
      expect(err.code).toBe('conflict');
      expect(err.message).toContain(`pid ${follower.child.pid} (child follower)`);

      const cutover = await acquire(key, { takeOver: true });
      await follower.saw('yield'); // its stdout may lag behind the socket
      expect(cutover.held).toBe(true);
      await cutover.release();
      await follower.saw('retaken');
      expect((await failure(acquire(key))).message).toContain(`pid ${follower.child.pid}`);

      follower.child.kill('SIGKILL');
      await follower.exited;
      await expect(acquire(key)).resolves.toBeInstanceOf(ProcessLock);
    });

    it('retakes the lock when the process it yielded to is SIGKILLed', async () => {
      const key = newKey();
      const follower = await yieldableHolder(key);
      const cutover = startChild(key, 'takeover');
      await cutover.saw('held');
      expect(follower.events).toEqual(['yield']);
      expect(follower.lock.held).toBe(false);
      expect((await failure(acquire(key))).message).toContain(`pid ${cutover.child.pid} (child takeover)`);

      cutover.child.kill('SIGKILL');
      await follower.whenRetaken;
      expect(follower.lock.held).toBe(true);
    });
  });
});

/** Transpiles a module of src/core and the modules it imports (relative './x.js' imports only) into dir. */
async function transpileInto(dir: string, file: string): Promise<void> {
  const source = await readFile(file, 'utf8');
  const output = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
  await writeFile(join(dir, basename(file).replace(/\.ts$/, '.js')), output.outputText);
  for (const [, name] of source.matchAll(/from '\.\/([\w-]+)\.js'/g)) {
    await transpileInto(dir, join(dirname(file), `${name}.ts`));
  }
}

/** argv: key, mode. 'follower' holds a yieldable lock; 'takeover' takes the lock over. Prints its events. */
const childScript = `
import { ProcessLock } from './process-lock.js';
const [key, mode] = process.argv.slice(2);
const lock = await ProcessLock.acquire(key, {
  purpose: 'child ' + mode,
  description: 'replica /tmp/test.img',
  takeOver: mode === 'takeover',
  onYield: mode === 'follower' ? async () => console.log('yield') : undefined,
  onRetaken: () => console.log('retaken'),
});
console.log('held');
setInterval(() => {}, 1000); // stay alive until killed
void lock;
`;
