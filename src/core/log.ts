/**
 * Structured logging with a pluggable sink. Library code logs through a Logger it is given;
 * only the CLI decides where lines go (src/cli prints them to stderr).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;
export type LogSink = (level: LogLevel, message: string, fields: LogFields) => void;

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export class Logger {
  constructor(
    private readonly sink: LogSink,
    private readonly minLevel: LogLevel = 'info',
    private readonly context: LogFields = {},
  ) {}

  /** A logger that drops everything: the default for library code. */
  static silent(): Logger {
    return new Logger(() => {}, 'error');
  }

  child(context: LogFields): Logger {
    return new Logger(this.sink, this.minLevel, { ...this.context, ...context });
  }

  debug(message: string, fields?: LogFields): void { this.log('debug', message, fields); }
  info(message: string, fields?: LogFields): void { this.log('info', message, fields); }
  warn(message: string, fields?: LogFields): void { this.log('warn', message, fields); }
  error(message: string, fields?: LogFields): void { this.log('error', message, fields); }

  private log(level: LogLevel, message: string, fields?: LogFields): void {
    if (order[level] < order[this.minLevel]) return;
    this.sink(level, message, { ...this.context, ...fields });
  }
}
