/**
 * zod's validation errors in ferry's words: one issue per wrong field, naming the field by
 * its path and the value received, e.g. `body.vms[0].disks[1].replica: expected string,
 * received 42`. zod's own messages do not show the value, so it is looked up in the input.
 */
import type { z } from '@hono/zod-openapi';
import { badInput } from '../../core/index.js';
import type { Issue } from '../../migrate/index.js';

type ZodIssue = z.core.$ZodIssue;

/** The issues of a failed parse of `input`, with paths relative to it. */
export function zodIssues(error: z.ZodError, input: unknown): Issue[] {
  return error.issues.flatMap((issue) => describe(issue, input));
}

function describe(issue: ZodIssue, input: unknown): Issue[] {
  const path = issue.path.map((k) => (typeof k === 'symbol' ? String(k) : k));
  const value = valueAt(input, path);
  const expecting = (expected: string): Issue[] => [{ path, message: expectedReceived(expected, value) }];
  switch (issue.code) {
    case 'invalid_type':
      return expecting(issue.expected === 'int' ? 'a whole number' : issue.expected);
    case 'invalid_value':
      return expecting(issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`);
    case 'invalid_union': {
      // A discriminated union names its discriminator's allowed values.
      const options = (issue as { options?: unknown[] }).options;
      return expecting(options ? `one of ${options.map((v) => JSON.stringify(v)).join(', ')}` : 'one of the allowed forms');
    }
    case 'too_small':
    case 'too_big':
      return expecting(bound(issue));
    case 'invalid_format':
      // A schema's own message is the expected form; zod's default says little.
      if (!isZodDefault(issue.message)) return expecting(issue.message);
      if (issue.format === 'datetime') return expecting('an ISO 8601 time with a zone, such as 2026-12-06T22:00:00Z');
      if (issue.format === 'regex') return expecting(`a string matching ${issue.pattern ?? 'the pattern'}`);
      return expecting(`a valid ${issue.format}`);
    case 'not_multiple_of':
      return expecting(`a multiple of ${String(issue.divisor)}`);
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path: [...path, key], message: `unknown field, received ${shown(valueAt(value, [key]))}` }));
    default:
      // 'custom' (ferry's refinements write whole messages), invalid_key, invalid_element.
      return [{ path, message: issue.message }];
  }
}

/** The message zod writes when a schema gives none of its own. */
function isZodDefault(message: string): boolean {
  return /^(Invalid|Too (small|big))\b/.test(message);
}

function bound(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  const small = issue.code === 'too_small';
  const limit = Number(small ? (issue as z.core.$ZodIssueTooSmall).minimum : (issue as z.core.$ZodIssueTooBig).maximum);
  switch (issue.origin) {
    case 'string':
      if (small && limit === 1) return 'a non-empty string';
      return `a string of ${small ? 'at least' : 'at most'} ${limit} character${limit === 1 ? '' : 's'}`;
    case 'array':
    case 'set':
      return `${small ? 'at least' : 'at most'} ${limit} item${limit === 1 ? '' : 's'}`;
    default:
      return `a number ${small ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<'} ${limit}`;
  }
}

function expectedReceived(expected: string, value: unknown): string {
  return `expected ${expected}, received ${shown(value)}`;
}

/** A value as ferry's errors show it (core's badInput): strings quoted, `nothing` for a missing one, long ones cut. */
function shown(value: unknown): string {
  const prefix = 'v: expected x, received ';
  return badInput('v', value, 'x').message.slice(prefix.length);
}

function valueAt(input: unknown, path: ReadonlyArray<string | number>): unknown {
  let here = input;
  for (const key of path) {
    if (here === null || typeof here !== 'object') return undefined;
    here = (here as Record<string | number, unknown>)[key];
  }
  return here;
}
