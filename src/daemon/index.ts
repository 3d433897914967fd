export { Daemon, databasePath, deviceName, tokenPath, type DaemonOptions } from './daemon.js';
export type { DaemonStatus, MqttStatus } from './status.js';
export { runService } from './service.js';
export { withOfflineControl } from './offline.js';
