import { UserError } from './errors.js';

/*
 * A label names a kind of item (good, scratch, dent). It becomes a folder name (enroll, eval), a
 * metric label, a Sparkplug metric name and a key in counts, so it is kept to what is safe in all
 * of them: letters and digits of any script, then also space, dot, dash or underscore, at most
 * LABEL_MAX_LENGTH characters, trimmed. No `/`, no leading dot (so no `..`) or dash, no control characters.
 */
export const LABEL_MAX_LENGTH = 64;
export const LABEL_RULE = `1 to ${LABEL_MAX_LENGTH} letters, digits, spaces, dots, dashes or underscores, starting with a letter, digit or underscore`;
export const LABEL_PATTERN = new RegExp(`^[\\p{L}\\p{N}_][\\p{L}\\p{M}\\p{N} ._-]{0,${LABEL_MAX_LENGTH - 1}}$`, 'u');

/** The trimmed label, or a UserError saying where it came from, what a label may hold and (`fix`) what to do. */
export function checkLabel(raw: string, where: string, fix = 'use another label'): string {
  const label = raw.trim();
  if (!LABEL_PATTERN.test(label)) {
    throw new UserError(`${where}: ${JSON.stringify(raw.length > 80 ? `${raw.slice(0, 80)}...` : raw)} is not a usable label`, `${fix}: a label is ${LABEL_RULE}`);
  }
  return label;
}

/**
 * Adds `n` to a label's count. Counts live in Maps: in a plain object the labels `__proto__` and
 * `constructor` would hit the prototype. Object.fromEntries turns a Map into JSON safely (own properties).
 */
export function addCount(counts: Map<string, number>, label: string, n = 1): void {
  counts.set(label, (counts.get(label) ?? 0) + n);
}
