// The public face of src/seed: seed devices for physical shipping (docs/FORMAT.md, "Seed devices").
export {
  decodeSeedManifest,
  encodeSeedManifest,
  seedChunkHashes,
  seedManifestFile,
  seedProgressFile,
  seedVersion,
  volumeLabelName,
  volumeName,
  type SeedDiskEntry,
  type SeedEncryption,
  type SeedManifest,
  type SeedVolumeEntry,
  type VolumeLabel,
} from './device-manifest.js';
export { ChunkCipher, type SeedKey } from './seed-crypto.js';
export { VolumeSeries, tarEntryBytes } from './volume-writer.js';
export { readVolume, type ReadVolumeOptions, type ReadVolumeResult } from './volume-reader.js';
export { openSeedDevice, type SeedDevice, type VolumeCheck } from './device.js';
export { defaultVolumeSizeBytes, exportSeed, type ExportSeedOptions, type ExportSeedResult, type ExportSeedStats, type SeedDisk } from './export.js';
export { verifySeed, type CorruptChunk, type VerifySeedOptions, type VerifySeedReport } from './verify.js';
export { importSeed, repairSeed, type ImportSeedOptions, type ImportSeedReport, type RepairSeedOptions, type RepairSeedReport, type SeedManifestWritten } from './import.js';
