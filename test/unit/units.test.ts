import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, isFerryError, parseRate, parseSize } from '../../src/core/index.js';

describe('parseSize', () => {
  it.each([
    ['512', 512],
    ['64K', 65536],
    ['4M', 4 * 2 ** 20],
    ['1G', 2 ** 30],
    ['1.5G', 1.5 * 2 ** 30],
    ['2TiB', 2 * 2 ** 40],
    ['8 MB', 8 * 2 ** 20],
  ])('%s is %d bytes', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(['', 'big', '-1M', '4Q', '1.00001'])('refuses %j naming the field and the value', (text) => {
    const err = (() => {
      try {
        parseSize(text, '--chunk-size');
      } catch (e) {
        return e;
      }
    })();
    expect(isFerryError(err, 'bad-input')).toBe(true);
    expect(String(err)).toContain('--chunk-size');
    expect(String(err)).toContain(JSON.stringify(text));
  });
});

describe('parseRate', () => {
  it.each([
    ['50M/s', 50e6],
    ['50MB/s', 50e6],
    ['100Mbit/s', 12.5e6],
    ['1Gbit/s', 125e6],
    ['10K', 10e3],
    ['unlimited', 0],
    ['0', 0],
  ])('%s is %d bytes/s', (text, rate) => expect(parseRate(text)).toBe(rate));

  it('refuses garbage naming the field', () => {
    expect(() => parseRate('fast', '--rate')).toThrow(/--rate.*"fast"/);
  });
});

describe('formatting', () => {
  it('formats bytes and durations for people', () => {
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(3 * 2 ** 30)).toBe('3.00 GiB');
    expect(formatDuration(3725)).toBe('1h02m05s');
    expect(formatDuration(Infinity)).toBe('--');
  });
});
