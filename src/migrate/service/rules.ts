/**
 * The rules a migration's settings must follow beyond their shape (which the API's schemas
 * check): names unique, each disk once, a runbook that names the migration's VMs, a window
 * that has not passed, rate windows that end after they start, and, against the service's records, hosts and a store that exist in
 * the right roles and disks that the source host's inventory lists.
 *
 * Problems are collected, not thrown one at a time: an operator fixes them all at once.
 * Each names the field by its path and, where it helps, the value received.
 */
import { FerryError, parseDuration } from '../../core/index.js';
import type { HostRecord, MigrationSettings, RateWindow, ServiceRecords } from './records.js';

/** One problem: where (a path into the document) and what. */
export interface Issue {
  path: ReadonlyArray<string | number>;
  message: string;
}

/** An issue with its path written out from a root: `body.vms[0].disks[1].replica`. */
export interface RenderedIssue {
  path: string;
  message: string;
}

/** `body` + ['vms', 0, 'disks'] -> `body.vms[0].disks`. */
export function formatIssuePath(root: string, path: ReadonlyArray<PropertyKey>): string {
  let out = root;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

export function renderIssues(root: string, issues: readonly Issue[]): RenderedIssue[] {
  return issues.map((issue) => ({ path: formatIssuePath(root, issue.path), message: issue.message }));
}

/** A 'bad-input' error carrying every problem found; its message lists them all. */
export class IssuesError extends FerryError {
  constructor(
    readonly issues: readonly RenderedIssue[],
    summary?: string,
  ) {
    const lines = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
    super('bad-input', summary ? `${summary}: ${lines}` : lines);
  }
}

function quote(value: unknown): string {
  return JSON.stringify(value);
}

/** Problems within the settings themselves, at `nowMs`. */
export function settingsIssues(settings: MigrationSettings, nowMs = Date.now()): Issue[] {
  const issues: Issue[] = [];
  if (settings.transport.mode === 'seed' && !settings.transport.device) {
    issues.push({ path: ['transport', 'device'], message: 'expected the directory of the seed device at the source host, received nothing' });
  }
  const vmAt = new Map<string, number>();
  const diskAt = new Map<string, string>();
  const replicaAt = new Map<string, string>();
  settings.vms.forEach((vm, i) => {
    const first = vmAt.get(vm.name);
    if (first !== undefined) issues.push({ path: ['vms', i, 'name'], message: `VM ${quote(vm.name)} is listed twice (also vms[${first}])` });
    else vmAt.set(vm.name, i);
    vm.disks.forEach((disk, j) => {
      const here = `vms[${i}].disks[${j}]`;
      const seen = diskAt.get(disk.id);
      if (seen !== undefined) issues.push({ path: ['vms', i, 'disks', j, 'id'], message: `disk ${quote(disk.id)} is listed twice (also ${seen})` });
      else diskAt.set(disk.id, here);
      if (disk.replica !== undefined) {
        const other = replicaAt.get(disk.replica);
        if (other !== undefined) issues.push({ path: ['vms', i, 'disks', j, 'replica'], message: `replica ${quote(disk.replica)} is also the replica of ${other}` });
        else replicaAt.set(disk.replica, here);
      }
    });
  });

  if (settings.runbook) {
    const names = settings.vms.map((vm) => vm.name);
    const bootedAt = new Map<string, number>();
    settings.runbook.boot.forEach((step, i) => {
      step.vms.forEach((name, j) => {
        if (!vmAt.has(name)) {
          issues.push({ path: ['runbook', 'boot', i, 'vms', j], message: `expected one of the migration's VMs (${names.join(', ')}), received ${quote(name)}` });
          return;
        }
        const earlier = bootedAt.get(name);
        if (earlier !== undefined) issues.push({ path: ['runbook', 'boot', i, 'vms', j], message: `VM ${quote(name)} is also in boot step ${earlier}` });
        else bootedAt.set(name, i);
      });
    });
    for (const name of names) {
      if (!bootedAt.has(name)) issues.push({ path: ['runbook', 'boot'], message: `VM ${quote(name)} is in no boot step` });
    }
  }

  const { at, window } = settings.cutover;
  if (at !== undefined) {
    const endMs = Date.parse(at) + parseDuration(window, 'window');
    if (Number.isFinite(endMs) && endMs <= nowMs) {
      issues.push({
        path: ['cutover', 'at'],
        message: `expected a time whose window (at + ${window}) has not passed, received ${quote(at)}: the window ended ${new Date(endMs).toISOString()}, before now (${new Date(nowMs).toISOString()})`,
      });
    }
  }

  return issues;
}

/** A window of a weekly schedule of rates ends after it starts (paths relative to the window). */
export function rateWindowIssues(window: RateWindow): Issue[] {
  return window.to <= window.from ? [{ path: ['to'], message: `expected a time after "from" (${window.from}), received ${quote(window.to)}` }] : [];
}

/** The hosts and store a migration names: they exist, in the right roles. */
export function referenceIssues(records: ServiceRecords, refs: { sourceHost: string; destinationHost: string; store: string }): Issue[] {
  const issues: Issue[] = [];
  const source = records.findHost(refs.sourceHost);
  const destination = records.findHost(refs.destinationHost);
  if (!source) issues.push({ path: ['sourceHost'], message: `expected the id of a known host, received ${quote(refs.sourceHost)}` });
  else if (source.role === 'destination') issues.push({ path: ['sourceHost'], message: `host ${quote(source.name)} (${source.id}) has the role "destination"; expected a host whose role is "source" or "both"` });
  if (!destination) issues.push({ path: ['destinationHost'], message: `expected the id of a known host, received ${quote(refs.destinationHost)}` });
  else if (destination.role === 'source') issues.push({ path: ['destinationHost'], message: `host ${quote(destination.name)} (${destination.id}) has the role "source"; expected a host whose role is "destination" or "both"` });
  // One host may be both ends when its role is "both" (one machine: the service's local agent).
  if (!records.findStore(refs.store)) issues.push({ path: ['store'], message: `expected the id of a known store, received ${quote(refs.store)}` });
  return issues;
}

/**
 * The migration's VMs and disks against the source host's inventory, when it has one: each
 * VM is there, each disk is one of that VM's. A disk found elsewhere says where it is.
 */
export function inventoryIssues(records: ServiceRecords, sourceHostId: string, settings: MigrationSettings): Issue[] {
  const source = records.findHost(sourceHostId);
  if (!source?.inventory) return [];
  const issues: Issue[] = [];
  const others = records.listHosts().filter((h) => h.id !== source.id);
  settings.vms.forEach((vm, i) => {
    const listed = source.inventory!.vms.find((v) => v.name === vm.name);
    if (!listed) {
      const elsewhere = others.find((h) => h.inventory?.vms.some((v) => v.name === vm.name));
      issues.push({ path: ['vms', i, 'name'], message: `VM ${quote(vm.name)} is not in the inventory of the source host ${quote(source.name)}${elsewhere ? ` (it is at host ${quote(elsewhere.name)})` : ''}` });
      return;
    }
    vm.disks.forEach((disk, j) => {
      if (listed.disks.some((d) => d.id === disk.id)) return;
      issues.push({ path: ['vms', i, 'disks', j, 'id'], message: `disk ${quote(disk.id)} is not a disk of VM ${quote(vm.name)} at host ${quote(source.name)} (its disks: ${listed.disks.map((d) => d.id).join(', ') || 'none'})${whereIs(disk.id, source, others)}` });
    });
  });
  return issues;
}

function whereIs(diskId: string, source: HostRecord, others: HostRecord[]): string {
  const ownerAt = (host: HostRecord) => host.inventory?.vms.find((v) => v.disks.some((d) => d.id === diskId));
  const local = ownerAt(source);
  if (local) return `; it is a disk of VM ${quote(local.name)}`;
  for (const host of others) {
    const vm = ownerAt(host);
    if (vm) return `; it is a disk of VM ${quote(vm.name)} at host ${quote(host.name)}`;
  }
  return '';
}
