/**
 * Sizes, rates and durations in human units at the edges (`64K`, `4M`, `1G`, `50M/s`, `30s`),
 * plain numbers of bytes and milliseconds inside. Suffixes are binary (K = 1024) for sizes, as disk tools use them; a rate's
 * suffix is decimal (M/s = 10^6 bytes per second), as links are sold.
 */
import { badInput } from './errors.js';

const binary: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };
const decimal: Record<string, number> = { '': 1, B: 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

const sizePattern = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$/i;

/** Parses `512`, `64K`, `4M`, `1.5G`, `2TiB` into bytes. */
export function parseSize(text: string, field = 'size'): number {
  const match = sizePattern.exec(text);
  if (!match) throw badInput(field, text, 'a size such as 512, 64K, 4M or 1G');
  const bytes = Number(match[1]) * binary[match[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(bytes)) throw badInput(field, text, 'a whole number of bytes');
  return bytes;
}

const ratePattern = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(B|bit)?\s*(?:\/s|ps)?\s*$/i;

/**
 * Parses a rate into bytes per second: `50M/s` and `50MB/s` are 50*10^6 bytes/s, `100Mbit/s`
 * is 12.5*10^6 bytes/s, `0` or `unlimited` means no limit (returns 0).
 */
export function parseRate(text: string, field = 'rate'): number {
  if (/^\s*(unlimited|off|none)\s*$/i.test(text)) return 0;
  const match = ratePattern.exec(text);
  if (!match) throw badInput(field, text, 'a rate such as 50M/s, 10MB/s, 100Mbit/s or unlimited');
  let bytes = Number(match[1]) * decimal[match[2]!.toUpperCase()]!;
  if (match[3]?.toLowerCase() === 'bit') bytes /= 8;
  return Math.round(bytes);
}

const durationPattern = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/i;
const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `500ms`, `30s`, `5m`, `1h` into milliseconds. */
export function parseDuration(text: string, field = 'duration'): number {
  const match = durationPattern.exec(text);
  if (!match) throw badInput(field, text, 'a duration such as 500ms, 30s, 5m or 1h');
  return Math.round(Number(match[1]) * durationUnits[match[2]!.toLowerCase()]!);
}

/** 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/** 52428800 -> "52.4 MB/s" (decimal, as rates are given). */
export function formatRate(bytesPerSec: number): string {
  const units = ['B/s', 'kB/s', 'MB/s', 'GB/s'];
  let value = bytesPerSec;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** 3725 -> "1h02m05s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m${String(rest).padStart(2, '0')}s`;
  if (m > 0) return `${m}m${String(rest).padStart(2, '0')}s`;
  return `${rest}s`;
}
