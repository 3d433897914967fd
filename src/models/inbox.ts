import { readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorText, isUserError, makeStateDir, readRegularFile, RequestError, type Logger } from '../common/index.js';
import type { ModelManager } from './manager.js';

const archive = /\.(tar|tar\.gz|tgz)$/;
const pollMs = 2_000;

/**
 * The way in for a plant without a broker: a bundle archive dropped (copied, scp'd) into
 * `<stateDir>/inbox/` goes through the same push as MQTT and HTTP. A file is taken once its size
 * has held still for one poll (a copy in progress is not read half), then moved to `done/` or to
 * `refused/` beside a `.reason.txt` that says why.
 */
export class ModelInbox {
  private timer: NodeJS.Timeout | null = null;
  private readonly sizes = new Map<string, number>();
  private working: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly models: ModelManager,
    private readonly log: Logger,
  ) {}

  start(): void {
    for (const sub of ['', 'done', 'refused']) makeStateDir(join(this.dir, sub), 'stateDir');
    this.timer = setInterval(() => {
      this.working = this.working.then(() => this.poll());
    }, pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.working;
  }

  private async poll(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => archive.test(n)).sort();
    } catch (err) {
      this.log.warn('cannot read the model inbox', { dir: this.dir, error: errorText(err) });
      return;
    }
    for (const name of names) {
      const path = join(this.dir, name);
      let size: number;
      try {
        size = statSync(path).size;
      } catch {
        continue;
      }
      if (this.sizes.get(name) !== size) {
        this.sizes.set(name, size);
        continue;
      }
      this.sizes.delete(name);
      await this.take(name, path);
    }
  }

  private async take(name: string, path: string): Promise<void> {
    this.log.info('model bundle found in the inbox', { file: path });
    try {
      const archive = await readRegularFile(path, { what: 'bundle archive', maxBytes: this.models.maxBundleBytes, hint: 'drop a .tar.gz of a bundle folder into the inbox' });
      const result = await this.models.push(archive, { via: 'inbox' });
      renameSync(path, join(this.dir, 'done', name));
      this.log.info('model from the inbox installed', { file: name, model: result.key, previous: result.previous });
    } catch (err) {
      // Another change is under way: the file waits for the next poll.
      if (err instanceof RequestError && err.code === 'busy') return;
      const reason = isUserError(err) ? `${err.message}${err.hint ? `\nfix: ${err.hint}` : ''}` : `internal error: ${errorText(err)}`;
      try {
        renameSync(path, join(this.dir, 'refused', name));
        writeFileSync(join(this.dir, 'refused', `${name}.reason.txt`), `${reason}\n`);
      } catch (moveErr) {
        this.log.error('cannot move a refused bundle out of the inbox', { file: path, error: errorText(moveErr) });
      }
    }
  }
}
