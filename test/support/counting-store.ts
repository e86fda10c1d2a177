import type { GetOptions, ObjectInfo, ObjectStore, PutOptions } from '../../src/store/index.js';

/** An ObjectStore decorator that counts what reaches the store underneath. */
export class CountingStore implements ObjectStore {
  readonly puts: string[] = [];
  readonly gets: string[] = [];

  constructor(private readonly inner: ObjectStore) {}

  get location(): string {
    return this.inner.location;
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal, options?: PutOptions): Promise<void> {
    await this.inner.put(key, data, signal, options);
    this.puts.push(key);
  }

  flush(signal?: AbortSignal): Promise<void> {
    return this.inner.flush(signal);
  }

  get(key: string, signal?: AbortSignal, options?: GetOptions): Promise<Buffer> {
    this.gets.push(key);
    return this.inner.get(key, signal, options);
  }

  stat(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    return this.inner.stat(key, signal);
  }

  list(prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    return this.inner.list(prefix, signal);
  }

  delete(key: string, signal?: AbortSignal): Promise<void> {
    return this.inner.delete(key, signal);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
