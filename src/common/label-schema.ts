import { z } from 'zod';
import { LABEL_PATTERN, LABEL_RULE } from './labels.js';

/*
 * Apart from common/index.ts so that what imports only the kNN path (a fresh process opening its
 * references) does not load zod: about a tenth of a second of start-up on this class of CPU.
 */

/** A label as given, trimmed; surrounding spaces are a slip, never part of the name. */
export const labelSchema = z.string().trim().regex(LABEL_PATTERN, LABEL_RULE);
