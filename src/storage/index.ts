export { openDatabase, migrate, isDiskFull, type Db } from './database.js';
export { DiskReserve } from './reserve.js';
