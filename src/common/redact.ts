/** What a secret value is shown as. */
export const HIDDEN = '(hidden)';

/** Keys whose values are secrets: never printed, whatever their type (paths to key files are fine). */
const SECRET_KEY = /password|token$|secret/i;

/**
 * Text with the password of any URL user-info in it masked (`mqtt://user:***@host`), read as text
 * rather than parsed: a URL too broken to parse, quoted in a config error, still carries it, and
 * one without its scheme (`user:pass@host`) too.
 */
export function redactUrl(text: string): string {
  return text.replace(/(^|\/\/|[\s"'=(<[{,])([^/@\s:"']*):[^/\s]*@/g, '$1$2:***@');
}

/**
 * A value safe to print: secret keys hidden, URL passwords masked, at any depth. Used wherever
 * configuration (or part of it) is shown: config errors, the status page.
 */
export function redactSecrets(value: unknown, key = ''): unknown {
  if (SECRET_KEY.test(key) && value !== null && value !== undefined) return HIDDEN;
  if (typeof value === 'string') return redactUrl(value);
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactSecrets(v, k)]));
  return value;
}
