export * from './errors.js';
export * from './units.js';
export * from './bytes.js';
export { writeDataAfter, writeDataBytes, type BlockDevice, type WriteData, type WriteOptions } from './block-device.js';
export { FileDevice, fsyncDirectory, pathExists, sectorBytes, type OpenFileDeviceOptions } from './file-device.js';
export { Logger, type LogLevel, type LogFields, type LogSink } from './log.js';
export { ChunkHasher, VolumeHasher } from './hash-worker.js';
export { ProgressMeter, everyMs, type Progress } from './progress.js';
export { InlineIo, type InlineIoOptions } from './inline-io.js';
