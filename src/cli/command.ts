/** What every `ferry` subcommand provides. */
export interface Command {
  name: string;
  usage: string;
  /** Runs the command; returns the exit code (errors are thrown as FerryError). */
  run(argv: string[], signal: AbortSignal): Promise<number>;
}
