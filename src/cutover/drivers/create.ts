/**
 * A VM's driver for one side, from its plan: the qemu driver (the source by its QMP socket;
 * the destination launched in its run directory, booting from the disks' replicas in plan
 * order: vda, vdb, ...) or the hooks driver.
 */
import type { Logger } from '../../core/index.js';
import type { VmPlan } from '../plan.js';
import type { VmDriver } from '../vm-driver.js';
import { HooksDriver } from './hooks-driver.js';
import { QemuDriver } from './qemu-driver.js';

export interface CreateVmDriverOptions {
  /** The environment of operator commands (hooks, health commands), besides FERRY_VM and FERRY_ACTION: the CLI passes its own. */
  env?: Record<string, string | undefined>;
}

export function createVmDriver(vm: VmPlan, side: 'source' | 'destination', logger: Logger, options: CreateVmDriverOptions = {}): VmDriver {
  const spec = vm[side];
  if (spec.driver === 'hooks') {
    return new HooksDriver({ name: vm.name, role: side, commands: spec.commands, consolePath: spec.consoleFile, env: options.env });
  }
  const driverOptions = { logger, env: options.env };
  if (side === 'source') {
    return new QemuDriver({ role: 'source', name: vm.name, qmpSocketPath: spec.qmp ?? '' }, driverOptions);
  }
  const launch = spec.launch;
  return new QemuDriver(
    {
      role: 'destination',
      name: vm.name,
      runDir: spec.runDir ?? '',
      kernelPath: launch?.kernel ?? '',
      initrdPath: launch?.initrd,
      append: launch?.append,
      memoryMiB: launch?.memoryMiB,
      cpus: launch?.cpus,
      accel: launch?.accel,
      binary: launch?.binary,
      extraArgs: launch?.extraArgs,
      disks: vm.disks.map((disk) => ({ file: disk.replica })),
    },
    driverOptions,
  );
}
