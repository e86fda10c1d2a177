/** ferry's NBD server: serves any BlockDevice to QEMU, qemu-img, nbdkit's tools and the kernel. */
export { NbdServer, type NbdServerOptions, type NbdListenAddress, type NbdBoundAddress } from './server.js';
export { maxPayloadBytes, type NbdExportOptions, type NbdExportSpec } from './export-table.js';
export type { NbdServerStats } from './stats.js';
export { MemoryBudget, defaultMemoryBudgetBytes } from './memory-budget.js';
export type { TransmissionLimits } from './transmission.js';
export type { HandshakeLimits } from './handshake.js';
export { nbdErrorFor, nbdErrorName } from './errors.js';
