export { ControlServer, isLoopback, type Authorize, type ControlServerOptions, type HttpAnswer, type HttpRequest, type HttpRoute } from './http.js';
export { ensureToken, readToken, tokenMatches } from './token.js';
export { ControlApi, REPLY_SCHEMA, command, failure, labeledBy, replyStatus, type Command, type Reply, type Via } from './api.js';
export { controlCommands, type ControlTarget } from './commands.js';
export { MqttCommands } from './mqtt.js';
