/**
 * Structured logging: one JSON object per line on stderr (journald keeps each line as one entry).
 * Levels follow syslog names so `journalctl -p` filtering reads naturally.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export interface LogSink {
  write(line: string): void;
}

let threshold: LogLevel = (process.env['LINEWATCH_LOG_LEVEL'] as LogLevel | undefined) ?? 'info';
let sink: LogSink = { write: (line) => process.stderr.write(line) };

export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

/** Redirect log lines (tests capture them; the CLI in --json mode keeps stdout clean). */
export function setLogSink(next: LogSink): void {
  sink = next;
}

export function createLogger(component = 'linewatch'): Logger {
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (order[level] < order[threshold]) return;
    const entry = { time: new Date().toISOString(), level, component, msg, ...fields };
    sink.write(JSON.stringify(entry, jsonSafe) + '\n');
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (name) => createLogger(`${component}.${name}`),
  };
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { message: value.message, name: value.name };
  if (typeof value === 'bigint') return value.toString();
  return value;
}
