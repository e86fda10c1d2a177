/**
 * `ferry cutover --plan PLAN` and its companions (status, go, cancel, resume, list): the
 * cutover of whole VMs by the coordinator, persisted in the state database.
 */
import { readFile, realpath } from 'node:fs/promises';
import { FerryError, Logger, ProcessLock, openDatabase, type Database } from '../../core/index.js';
import { Coordinator, CutoverRecords, finalStates, isCommitted, parsePlan, report, type CutoverPlan, type CutoverReport } from '../../cutover/index.js';
import { cutoverWiring } from '../cutover-wiring.js';
import { exitCodes } from '../exit-codes.js';
import { durationOption, parse, positionals, required, stateDbHelp, stateDbPath } from '../options.js';
import { print, stderrSink } from '../terminal.js';

export const planUsage = `Usage: ferry cutover --plan PLAN [--at TIME] [--window W] [--budget B] [--hold] [--verify MODE]
       ferry cutover status [ID]    one cutover (default: the newest), or --all
       ferry cutover go ID          the operator's go for a cutover held by --hold
       ferry cutover cancel ID      roll back a cutover that has not committed yet
       ferry cutover resume ID      carry on after the coordinator was stopped or killed
       ferry cutover --disk ID --control PATH --store URL --replica PATH   one disk (below)

The cutover of whole VMs, by plan (docs/FORMAT.md, "Cutover plan"):

A cutover waits for its time (--at) and, within its window, for every disk to be streaming,
consistent, caught up and predicted to pause within the budget; then it pauses every source
VM, drains, applies and verifies every disk, commits, fences and stops the sources, and
starts the destination VMs in runbook order, checking their health. Before the commit any
failure resumes the sources; after it, the cutover only rolls forward. Every step is kept
in the state database, so 'resume' continues a cutover whose coordinator died.

Options:
  --plan PLAN       the plan file (JSON)
  --at TIME         not before this ISO 8601 time (overrides the plan's schedule.at)
  --window W        give up W after --at if the cutover could not start (default 30m)
  --budget B        downtime budget: the predicted pause must fit (default 2s)
  --hold            wait for 'ferry cutover go ID' once the pre-checks pass
  --verify MODE     'deltas' (default) or 'full' (SHA-256 of every source disk and replica)
${stateDbHelp}
  --json            print the report (or status) as JSON
Exit status: 0 once every destination VM is healthy; 130 rolled back; 7 failed.`;

const dbOption = { db: { type: 'string' }, json: { type: 'boolean' }, all: { type: 'boolean' } } as const;

export async function runPlanCommand(argv: string[], signal: AbortSignal): Promise<number> {
  const sub = ['status', 'go', 'cancel', 'resume', 'list'].includes(argv[0] ?? '') ? argv[0]! : 'run';
  const rest = sub === 'run' ? argv : argv.slice(1);
  if (sub === 'run') return startCutover(rest, signal);
  const { values, positionals: args } = parse(rest, dbOption);
  const db = openDatabase(stateDbPath(values.db));
  try {
    const records = new CutoverRecords(db);
    if (sub === 'list' || (sub === 'status' && values.all)) {
      const all = records.list();
      if (values.json) print(JSON.stringify(all.map((r) => ({ id: r.id, plan: r.plan.name, state: r.state, error: r.error }))));
      else for (const r of all) print(`${r.id}  ${r.state}${r.error ? `  (${r.error})` : ''}`);
      return 0;
    }
    if (sub === 'status') {
      const id = args[0] ?? records.list()[0]?.id;
      if (!id) throw new FerryError('not-found', 'no cutover in the database yet');
      printStatus(records, id, values.json === true);
      return 0;
    }
    const [id] = positionals(args, ['ID']);
    const record = records.get(id!);
    if (sub === 'go') {
      if (finalStates.includes(record.state)) throw new FerryError('invalid-state', `cutover ${id} is over (${record.state})`);
      records.requestGo(id!);
      print(`cutover ${id}: go given (it was ${record.state})`);
      return 0;
    }
    if (sub === 'cancel') {
      if (isCommitted(record.state)) throw new FerryError('invalid-state', `cutover ${id} has committed (${record.state}): it can only roll forward`);
      if (finalStates.includes(record.state)) throw new FerryError('invalid-state', `cutover ${id} is over (${record.state})`);
      records.requestCancel(id!);
      print(`cutover ${id}: cancel requested; its coordinator rolls it back (if none runs: ferry cutover resume ${id})`);
      return 0;
    }
    return await coordinate(db, records, id!, values.json === true, signal);
  } finally {
    db.close();
  }
}

async function startCutover(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals: args } = parse(argv, {
    ...dbOption,
    plan: { type: 'string' },
    at: { type: 'string' },
    window: { type: 'string' },
    budget: { type: 'string' },
    hold: { type: 'boolean' },
    verify: { type: 'string' },
  });
  if (args.length > 0) throw new FerryError('bad-input', `unexpected arguments: ${JSON.stringify(args)}`);
  const planPath = required(values.plan, '--plan');
  let text: string;
  try {
    text = await readFile(planPath, 'utf8');
  } catch (err) {
    throw new FerryError('not-found', `--plan: cannot read ${planPath}: ${(err as Error).message}`);
  }
  const plan = withOverrides(parsePlan(text, planPath), values);
  const db = openDatabase(stateDbPath(values.db));
  try {
    const records = new CutoverRecords(db);
    const unfinished = records.list({ unfinished: true, planName: plan.name });
    if (unfinished.length > 0) {
      throw new FerryError(
        'conflict',
        `plan ${plan.name} already has a cutover under way: ${unfinished[0]!.id} (${unfinished[0]!.state}); 'ferry cutover resume ${unfinished[0]!.id}' carries it on, 'ferry cutover cancel ${unfinished[0]!.id}' rolls it back`,
      );
    }
    const record = records.create(plan);
    process.stderr.write(`cutover ${record.id} of plan ${plan.name}\n`);
    return await coordinate(db, records, record.id, values.json === true, signal);
  } finally {
    db.close();
  }
}

function withOverrides(plan: CutoverPlan, values: { at?: string; window?: string; budget?: string; hold?: boolean; verify?: string }): CutoverPlan {
  const schedule = { ...plan.schedule };
  if (values.at !== undefined) {
    const at = Date.parse(values.at);
    if (Number.isNaN(at)) throw new FerryError('bad-input', `--at: expected an ISO 8601 time such as 2026-12-06T22:00:00Z, received ${JSON.stringify(values.at)}`);
    schedule.atMs = at;
  }
  schedule.windowMs = durationOption(values.window, '--window', 1000, 30 * 86_400_000) ?? schedule.windowMs;
  schedule.budgetMs = durationOption(values.budget, '--budget', 1, 3_600_000) ?? schedule.budgetMs;
  if (values.hold) schedule.hold = true;
  if (values.verify !== undefined) {
    if (values.verify !== 'full' && values.verify !== 'deltas') throw new FerryError('bad-input', `--verify: expected "full" or "deltas", received ${JSON.stringify(values.verify)}`);
    schedule.verify = values.verify;
  }
  return { ...plan, schedule };
}

/** Runs the coordinator on `id`, one at a time per cutover, printing its events as they happen. */
async function coordinate(db: Database, records: CutoverRecords, id: string, json: boolean, signal: AbortSignal): Promise<number> {
  const lock = await ProcessLock.acquire(`cutover:${await realpath(db.name)}:${id}`, { purpose: 'ferry cutover coordinator', description: `cutover ${id}`, signal });
  let printed = records.events(id).length;
  const printEvents = () => {
    const events = records.events(id);
    for (const e of events.slice(printed)) process.stderr.write(`${new Date(e.atMs).toISOString()}  ${e.state.padEnd(11)}  ${e.message}\n`);
    printed = events.length;
  };
  const ticker = setInterval(printEvents, 250);
  // Fault injection for the tests: FERRY_FAILPOINT=cutover:<state> kills this process right
  // after that state is persisted, as a crash would.
  const failpoint = /^cutover:(.+)$/.exec(process.env.FERRY_FAILPOINT ?? '')?.[1];
  const plan = records.get(id).plan;
  try {
    const coordinator = new Coordinator({
      records,
      wiring: cutoverWiring({ leaseMs: plan.schedule.leaseMs, logger: new Logger(stderrSink, 'warn'), env: process.env }),
      signal,
      onTransition: (record) => {
        printEvents();
        if (record.state === failpoint) process.kill(process.pid, 'SIGKILL');
      },
    });
    const result = await coordinator.run(id);
    printEvents();
    printReport(result, json);
    return result.state === 'healthy' ? 0 : result.state === 'rolled back' ? exitCodes.aborted : exitCodes['invalid-state'];
  } finally {
    clearInterval(ticker);
    await lock.release();
  }
}

function printReport(r: CutoverReport, json: boolean): void {
  if (json) return print(JSON.stringify(r));
  const ms = (v: number | undefined) => (v === undefined ? '-' : `${Math.round(v)} ms`);
  print(`cutover ${r.id} (plan ${r.plan}): ${r.state}${r.error ? ` (${r.error})` : ''}`);
  for (const vm of r.vms) {
    print(`  ${vm.vm}: ${vm.progress}; downtime to running ${ms(vm.downtimeToRunningMs)}, to healthy ${ms(vm.downtimeToHealthyMs)}; final delta ${vm.finalBytes} bytes${vm.error ? `; ${vm.error}` : ''}`);
    for (const d of vm.disks) {
      const verified = d.sha256 ? `full (source = replica, SHA-256 ${d.sha256.slice(0, 16)}…)` : (d.verified ?? '-');
      print(`    disk ${d.disk}: final seq ${d.finalSeq ?? '-'}, verified ${verified}, ${d.fenced ? 'source fenced' : 'source not fenced'}`);
    }
  }
  if (r.maxDowntimeToRunningMs !== undefined) print(`  group: downtime to running ${ms(r.maxDowntimeToRunningMs)}, to healthy ${ms(r.maxDowntimeToHealthyMs)}, final deltas ${r.finalBytes} bytes`);
}

function printStatus(records: CutoverRecords, id: string, json: boolean): void {
  const r = report(records, id);
  const events = records.events(id);
  if (json) return print(JSON.stringify({ ...r, events }));
  printReport(r, false);
  for (const e of events.slice(-15)) print(`  ${new Date(e.atMs).toISOString()}  ${e.state.padEnd(11)}  ${e.message}`);
}

