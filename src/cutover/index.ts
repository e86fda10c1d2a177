/** Cutover: the disk-level cutover and its ports, and the hypervisor drivers. */
export { cutoverDisk, type CutoverReplica, type CutoverSource, type DiskCutoverOptions, type DiskCutoverParts, type DiskCutoverResult } from './disk-cutover.js';
export * from './qemu/index.js';
