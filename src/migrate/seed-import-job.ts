/**
 * A seed import run by a destination agent in the background (the migration service's seed
 * transport): the device that came by courier is imported into the store, every chunk
 * verified, and the disks' manifests are written once every chunk is there. One at a time;
 * its status says how far it is and, at the end, the manifests or what was corrupt or
 * missing.
 */
import { FerryError, Logger, asFerryError } from '../core/index.js';
import { importSeed, type SeedKey, type SeedManifestWritten } from '../seed/index.js';
import { openStore, Repository, type S3Settings } from '../store/index.js';

export interface SeedImportStatus {
  state: 'running' | 'done' | 'failed';
  startedAt: string;
  deviceDir: string;
  store: string;
  bytesDone: number;
  bytesTotal: number;
  rateBytesPerSec: number;
  seedId?: string;
  /** Every chunk is in the store and the manifests are written. */
  complete?: boolean;
  manifests?: SeedManifestWritten[];
  corrupt?: number;
  missing?: number;
  /** Volumes changed after the export. */
  tampered?: string[];
  error?: { code: string; message: string };
}

export class SeedImportJob {
  private job: { status: SeedImportStatus; abort: AbortController; done: Promise<void> } | undefined;

  constructor(private readonly options: { s3?: S3Settings; logger?: Logger } = {}) {}

  start(request: { deviceDir: string; store: string; key?: SeedKey }): SeedImportStatus {
    if (this.job?.status.state === 'running') throw new FerryError('conflict', `a seed import of ${this.job.status.deviceDir} is already running`);
    const logger = this.options.logger ?? Logger.silent();
    const store = openStore(request.store, this.options.s3);
    const abort = new AbortController();
    const status: SeedImportStatus = { state: 'running', startedAt: new Date().toISOString(), deviceDir: request.deviceDir, store: request.store, bytesDone: 0, bytesTotal: 0, rateBytesPerSec: 0 };
    logger.info('seed import started', { device: request.deviceDir, store: request.store });
    const done = (async () => {
      try {
        const report = await importSeed({
          deviceDir: request.deviceDir,
          repo: await Repository.openOrInit(store),
          key: request.key,
          signal: abort.signal,
          onProgress: (p) => Object.assign(status, { bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, rateBytesPerSec: p.rateBytesPerSec }),
        });
        Object.assign(status, { state: 'done', seedId: report.seedId, complete: report.complete, manifests: report.manifests, corrupt: report.corrupt.length, missing: report.missing.length, tampered: report.tampered });
        logger.info('seed import done', { seed: report.seedId, complete: report.complete, corrupt: report.corrupt.length, missing: report.missing.length });
      } catch (err) {
        const error = asFerryError(err);
        Object.assign(status, { state: 'failed', error: { code: error.code, message: error.message } });
        logger.error('seed import failed', { device: request.deviceDir, error: error.message });
      } finally {
        await store.close();
      }
    })();
    this.job = { status, abort, done };
    return { ...status };
  }

  status(): SeedImportStatus {
    if (!this.job) throw new FerryError('not-found', 'no seed import was started');
    return { ...this.job.status };
  }

  async close(): Promise<void> {
    this.job?.abort.abort(new Error('the agent stops'));
    await this.job?.done;
  }
}
