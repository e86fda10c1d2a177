/**
 * The hypervisor port: what a cutover needs from whatever runs a VM on one side. Drivers:
 * `qemu` (QEMU over QMP, drivers/qemu-driver.ts) and `hooks` (an operator's commands for
 * each action, drivers/hooks-driver.ts: virsh, qm, or anything else).
 *
 * Every call is idempotent where the action allows it (pausing a paused VM, stopping a
 * stopped one), because a coordinator restarted after a crash repeats the action it was in.
 */

/** What the hypervisor says of a VM. 'absent': not running at all (never started, or exited). */
export type VmRunState = 'running' | 'paused' | 'absent' | 'unknown';

export interface VmStatus {
  state: VmRunState;
  /** The hypervisor's own words (QMP status, a command's output), for reports and errors. */
  detail: string;
}

export interface HealthCheck {
  /**
   * A regular expression the guest's serial console must show: its console file, with
   * the output since the VM started (qemu: QEMU starts the file afresh at each launch;
   * hooks: the file the operator names, which their start command should start afresh).
   */
  console?: string;
  /** A command (argv) that must exit 0; run with FERRY_VM set. */
  command?: string[];
  /** How long the checks may take, ms. */
  timeoutMs: number;
}

export interface VmDriver {
  /** A human name for messages: "qemu vm1 (destination)". */
  readonly description: string;
  status(signal?: AbortSignal): Promise<VmStatus>;
  /**
   * Checks, before anything is paused, that this side can do its part: a source VM runs
   * and answers; a destination VM does not run yet and can be started (its hypervisor,
   * its kernel or commands, its disks are there). Rejects naming what is missing.
   */
  check(signal?: AbortSignal): Promise<void>;
  /** Starts the VM (destination). Resolves once the hypervisor runs it, not once it booted. */
  start(signal?: AbortSignal): Promise<void>;
  /** Pauses the VM; resolves once its in-flight IO is drained (QMP `stop` does this). */
  pause(signal?: AbortSignal): Promise<void>;
  resume(signal?: AbortSignal): Promise<void>;
  /** Stops the VM for good (the source after the commit). */
  stop(signal?: AbortSignal): Promise<void>;
  /** Waits until the checks pass; rejects naming the check that failed or timed out. */
  health(check: HealthCheck, signal?: AbortSignal): Promise<void>;
}
