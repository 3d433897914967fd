import { migrate, type Db } from '../storage/index.js';

const steps = [
  // One row: the bdSeq of the last MQTT CONNECT, so the next one (after a restart too) is one more.
  `CREATE TABLE sparkplug_node (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     bd_seq INTEGER NOT NULL
   )`,
];

/**
 * The birth/death sequence number (bdSeq) in the state database. Sparkplug 3.0 §5 "Edge Node
 * Session Establishment" (tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq):
 * every CONNECT's will carries the previous CONNECT's bdSeq plus one, 255 wrapping to 0; a host
 * tells a stale NDEATH from the current one by it, so it must not restart at 0 with the daemon.
 */
export class BdSeqStore {
  private readonly read;
  private readonly write;

  constructor(db: Db) {
    migrate(db, 'sparkplug', steps);
    this.read = db.prepare('SELECT bd_seq FROM sparkplug_node WHERE id = 1').pluck();
    this.write = db.prepare('INSERT INTO sparkplug_node (id, bd_seq) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET bd_seq = excluded.bd_seq');
  }

  /** The bdSeq for the next CONNECT, stored before it is used (0 on a fresh database). */
  next(): number {
    const last = this.read.get() as number | undefined;
    const next = last === undefined ? 0 : (last + 1) % 256;
    this.write.run(next);
    return next;
  }
}
