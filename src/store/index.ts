export type { ObjectStore, ObjectInfo, PutOptions, GetOptions } from './object-store.js';
export { isValidKey } from './object-store.js';
export { FileStore } from './file-store.js';
export { S3Store, defaultS3TimeoutMs, type S3StoreOptions } from './s3-store.js';
export { RetryingStore, defaultRetryForMs, type RetryPolicy } from './retrying-store.js';
export { openStore, type S3Settings } from './open-store.js';
export { Repository, checkDiskId, chunkKey, manifestKey, replicationPrefix, defaultChunkSizeBytes, repositoryVersion, type CutoverMark, type RepositoryConfig } from './repository.js';
export { chunkCount, decodeManifest, encodeManifest, manifestVersion, type Manifest } from './manifest.js';
