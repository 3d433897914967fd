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

export type LogFormat = 'json' | 'text';

let threshold: LogLevel = 'info';
let sink: LogSink = { write: (line) => process.stderr.write(line) };
// journald and log shippers want JSON; a person at a terminal wants a readable line.
let format: LogFormat = process.stderr.isTTY ? 'text' : 'json';

export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

export function setLogFormat(next: LogFormat): void {
  format = next;
}

/** Redirect log lines (tests capture them; the CLI in --json mode keeps stdout clean). */
export function setLogSink(next: LogSink): void {
  sink = next;
}

export function createLogger(component = 'linewatch'): Logger {
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (order[level] < order[threshold]) return;
    const time = new Date().toISOString();
    if (format === 'json') {
      sink.write(JSON.stringify({ time, level, component, msg, ...fields }, jsonSafe) + '\n');
      return;
    }
    const extra = fields
      ? Object.entries(fields)
          .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value, jsonSafe)}`)
          .join(' ')
      : '';
    sink.write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${component}: ${msg}${extra ? ' ' + extra : ''}\n`);
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
