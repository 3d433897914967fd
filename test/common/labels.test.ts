import { describe, expect, it } from 'vitest';
import { checkLabel, UserError } from '../../dist/common/index.js';
import { labelSchema } from '../../dist/common/label-schema.js';

function refusal(raw: string): UserError {
  try {
    checkLabel(raw, 'the subfolder /data/x', 'rename the folder');
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return err as UserError;
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
}

describe('labels', () => {
  it("accepts Object's own property names and any script, and trims surrounding spaces", () => {
    for (const label of ['constructor', '__proto__', 'hasOwnProperty', 'good', 'Kratzer 2', 'rayure-légère', '傷', 'x'.repeat(64)]) {
      expect(checkLabel(label, 'test')).toBe(label);
      expect(labelSchema.parse(label)).toBe(label);
    }
    expect(checkLabel('  scratch \t', 'test')).toBe('scratch');
    expect(labelSchema.parse('scratch ')).toBe('scratch');
  });

  it('refuses paths, dots, control characters and long names, saying where and what a label may hold', () => {
    const err = refusal('../etc');
    expect(err.message).toBe('the subfolder /data/x: "../etc" is not a usable label');
    expect(err.hint).toBe('rename the folder: a label is 1 to 64 letters, digits, spaces, dots, dashes or underscores, starting with a letter, digit or underscore');
    for (const bad of ['a/b', '..', '.hidden', '-x', '', '   ', 'tab\there', 'nul\u0000', 'x'.repeat(65), 'a:b']) {
      expect(refusal(bad).message).toContain('is not a usable label');
      expect(labelSchema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
    // A huge label is cut in the message.
    expect(refusal('y'.repeat(10_000)).message.length).toBeLessThan(200);
  });

  it('keeps a __proto__ count as an own property through Object.fromEntries and JSON', () => {
    const counts = new Map([['__proto__', 2], ['constructor', 3], ['hasOwnProperty', 4]]);
    const object = Object.fromEntries(counts);
    expect(Object.keys(object)).toEqual(['__proto__', 'constructor', 'hasOwnProperty']);
    expect(Object.getPrototypeOf(object)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(object))).toEqual(object);
    expect(Object.entries(JSON.parse(JSON.stringify(object)))).toEqual([['__proto__', 2], ['constructor', 3], ['hasOwnProperty', 4]]);
  });
});
