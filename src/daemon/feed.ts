import { EventEmitter } from 'node:events';
import { ReferenceStore, type NewReference } from '../knn/index.js';
import type { ReferenceFeed } from '../sync/index.js';

/**
 * The reference store, telling the fleet sync of every reference added or removed in this
 * process, whoever did it (a label, an enrollment, an import, a removal).
 */
export class AnnouncingReferenceStore extends ReferenceStore implements ReferenceFeed {
  private readonly changes = new EventEmitter();

  override addMany(modelKey: string, items: readonly { reference: NewReference; vector: Float32Array }[]): number[] {
    const ids = super.addMany(modelKey, items);
    this.changes.emit('added', ids);
    return ids;
  }

  override removeMany(ids: readonly number[]): number {
    const removed = super.removeMany(ids);
    if (removed > 0) this.changes.emit('removed', ids);
    return removed;
  }

  onAdded(listener: (ids: readonly number[]) => void): () => void {
    this.changes.on('added', listener);
    return () => this.changes.off('added', listener);
  }

  onRemoved(listener: (ids: readonly number[]) => void): () => void {
    this.changes.on('removed', listener);
    return () => this.changes.off('removed', listener);
  }
}
