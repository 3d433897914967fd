/** Markup that is already safe: what html`` returns, and what it inserts as is. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const escapes: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escape(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => escapes[c]!);
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

function render(part: Part): string {
  if (part === null || part === undefined || part === false) return '';
  if (part instanceof Html) return part.text;
  if (Array.isArray(part)) return part.map(render).join('');
  return escape(part);
}

/** A template whose every inserted value is escaped, unless it is Html already: no page can forget to. */
export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  return new Html(strings.reduce((out, s, i) => out + s + (i < values.length ? render(values[i]!) : ''), ''));
}

/** JSON for a `<script type="application/json">` block: `<` is escaped so no value can close the block. */
export function jsonBlock(id: string, value: unknown): Html {
  return new Html(`<script type="application/json" id="${escape(id)}">${JSON.stringify(value).replace(/</g, '\\u003c')}</script>`);
}
