export {
  MqttSession,
  sessionDefaults,
  reconnectDelay,
  matches,
  isConnectionClosed,
  type Birth,
  type Connection,
  type MessageHandler,
  type SessionMessage,
  type SessionOptions,
  type SessionStatus,
} from './session.js';
export { defaultClientId, defaultTopicRoot, topicRoot, type DeviceNames } from './topics.js';
