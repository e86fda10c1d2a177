/**
 * The fields of a control API request's JSON body, checked as every route checks them: a
 * wrong one is a 'bad-input' naming the field and the value received.
 */
import type { Context } from 'hono';
import { badInput } from '../core/index.js';

/** The request's JSON body as an object; an empty body is {}. */
export async function jsonBody(c: Context): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badInput('body', text.length > 60 ? `${text.slice(0, 57)}...` : text, 'a JSON object');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badInput('body', value, 'a JSON object');
  return value as Record<string, unknown>;
}

/** `owner`: the cutover that holds a disk or a replica, as it names itself. */
export function owner(body: Record<string, unknown>, holds: string): string {
  const value = body.owner;
  if (typeof value !== 'string' || value.length === 0 || value.length > 200 || [...value].some((ch) => ch < ' ')) {
    throw badInput('owner', value, `a name of 1 to 200 printable characters for the cutover that holds the ${holds}`);
  }
  return value;
}

export function optionalInt(body: Record<string, unknown>, field: string, min: number, max: number): number | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw badInput(field, value, `a whole number from ${min} to ${max}`);
  return value;
}
