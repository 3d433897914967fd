/**
 * An error the user can cause and fix (bad config, bad image, wrong model, broker down...).
 * The CLI prints `message` and `hint` without a stack trace; anything else is a bug and keeps its stack.
 */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(
    message: string,
    /** What the user should do about it. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}

/** Short text of any thrown value, for logs and status. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A refused request to the control API: a UserError with a stable `code` for programs, the HTTP
 * `status` it maps to, and optional `details` (a gate's figures, say).
 */
export class RequestError extends UserError {
  constructor(
    readonly code: string,
    message: string,
    hint?: string,
    readonly status = 400,
    readonly details?: unknown,
  ) {
    super(message, hint);
  }
}
