export { FleetSync, type FleetSettings, type FleetSyncStatus } from './fleet.js';
export { fleetIds, SyncLedger } from './ledger.js';
export { decodeFleetMessage, encodeDeleted, encodeShared, FLEET_SCHEMA, type FleetMessage, type Provenance, type Refusal, type SharedReference } from './message.js';
export { fleetFilter, fleetId, fleetTopic, parseFleetTopic, type FleetAddress } from './topics.js';
