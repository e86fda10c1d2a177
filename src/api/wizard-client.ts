/**
 * Client of the migration service's wizard API (`ferry serve`), for the CLI's `ferry
 * migration`, `ferry host` and `ferry store`: JSON over HTTP with a bearer token; errors
 * come back as the FerryError the service raised, its message naming every wrong field.
 */
import { FerryError } from '../core/index.js';
import { errorFromResponse } from './http-errors.js';

export class WizardClient {
  readonly #authorization: string;

  constructor(
    readonly url: string,
    token: string,
  ) {
    this.#authorization = `Bearer ${token}`;
  }

  get<T>(path: string): Promise<T> {
    return this.request('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request('POST', path, body);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const what = `${method} ${path} on ${this.url}`;
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: { authorization: this.#authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new FerryError('io', `no ferry service answers on ${this.url} (${cause}): is 'ferry serve' running, and is --service right?`, { cause: err });
    }
    const text = await res.text();
    let reply: unknown = text;
    try {
      reply = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: errorFromResponse shows the text
    }
    if (!res.ok) throw errorFromResponse(res.status, reply, what);
    return reply as T;
  }
}
