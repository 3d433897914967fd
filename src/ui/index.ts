export { Accounts, roles, type Role } from './accounts.js';
export { LiveView, type LiveFrame } from './live.js';
export { WebUi, type UiParts } from './server.js';
