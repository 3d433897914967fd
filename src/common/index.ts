export { UserError, RequestError, isUserError, errorText } from './errors.js';
export { createLogger, setLogLevel, setLogSink, setLogFormat, type LogFormat, type Logger, type LogLevel, type LogSink } from './log.js';
export { isMissingFile, openRegularFile, readRegularFile, readRegularFileSync, type FileLimits } from './files.js';
