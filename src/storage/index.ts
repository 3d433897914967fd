export { openDatabase, migrate, isDiskFull, withoutFsync, type Db } from './database.js';
export { DiskReserve } from './reserve.js';
