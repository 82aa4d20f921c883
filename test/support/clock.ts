import type { Clock } from '../../lib/clock.js';

/** A clock the test moves by hand: TTL and rotation logic without sleeping. */
export class FakeClock implements Clock {
  private t: number;
  constructor(start: Date | string = '2026-06-01T12:00:00Z') {
    this.t = new Date(start).getTime();
  }
  now(): Date {
    return new Date(this.t);
  }
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
  set(date: Date | string): void {
    this.t = new Date(date).getTime();
  }
}
