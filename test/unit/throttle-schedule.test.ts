/** A migration's weekly schedule of rates: which rate the service sets at the source agent, when. */
import { expect, it } from 'vitest';
import { rateAt, type ThrottleSettings } from '../../src/migrate/index.js';

const throttle: ThrottleSettings = {
  rate: '50M/s',
  schedule: [
    { days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '09:00', to: '17:00', rate: '10M/s' },
    { days: ['sat', 'sun'], from: '00:00', to: '24:00', rate: '800Mbit/s' },
    { days: ['mon'], from: '08:00', to: '10:00', rate: 'unlimited' }, // after the first that covers: never wins at 09:xx
  ],
};

it('takes the first window that covers the moment (UTC), and the base rate outside every window', () => {
  expect(rateAt(throttle, new Date('2026-12-07T09:30:00Z'))).toBe(10e6); // Monday, office hours: the first window wins
  expect(rateAt(throttle, new Date('2026-12-07T08:30:00Z'))).toBe(0); // Monday 08:30: only the third covers it (unlimited)
  expect(rateAt(throttle, new Date('2026-12-07T17:00:00Z'))).toBe(50e6); // 'to' is not inside
  expect(rateAt(throttle, new Date('2026-12-05T23:59:00Z'))).toBe(100e6); // Saturday, to 24:00: 800 Mbit/s in bytes
  expect(rateAt({ rate: 'unlimited', schedule: [] }, new Date('2026-12-07T12:00:00Z'))).toBe(0);
});
