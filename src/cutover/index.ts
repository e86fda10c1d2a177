/** Cutover: coordinator, scheduling windows, runbooks, and the hypervisor drivers. */
export * from './qemu/index.js';
