export { openDatabase, migrate, isDiskFull, type Db } from './database.js';
