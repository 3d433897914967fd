import { UserError } from '../common/index.js';

/** A config problem: the message lists every bad key, its value and what is expected. */
export class ConfigError extends UserError {}
