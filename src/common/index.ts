export { UserError, RequestError, isUserError, errorText } from './errors.js';
export { createLogger, setLogLevel, setLogSink, setLogFormat, type LogFormat, type Logger, type LogLevel, type LogSink } from './log.js';
export { HIDDEN, redactSecrets, redactUrl } from './redact.js';
export { makeStateDir, modeBeyond, restrictUmask, STATE_DIR_MODE, STATE_FILE_MODE, tightenMode } from './state-dir.js';
export { addCount, checkLabel, LABEL_MAX_LENGTH, LABEL_RULE } from './labels.js';
export { isMissingFile, openRegularFile, readRegularFile, readRegularFileSync, type FileLimits } from './files.js';
export { isRawImage, type RawImage } from './raw-image.js';
