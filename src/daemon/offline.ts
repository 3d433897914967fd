import { RequestError, type Logger } from '../common/index.js';
import type { Config } from '../config/index.js';
import { ControlApi, controlCommands } from '../control/index.js';
import { AnomalyImages, Outbox } from '../events/index.js';
import { OverrideStore, ReferenceStore } from '../knn/index.js';
import { ModelManager } from '../models/index.js';
import { openDatabase } from '../storage/index.js';
import { databasePath, deviceName } from './daemon.js';

/**
 * The control API of a stopped daemon: the same commands, acting on its database, so a change
 * made while linewatch is not running is there when it starts (status and reload need it running).
 */
export async function withOfflineControl<T>(config: Config, log: Logger, use: (api: ControlApi) => Promise<T>): Promise<T> {
  const db = openDatabase(databasePath(config));
  let models: ModelManager | null = null;
  try {
    const store = new ReferenceStore(db, deviceName(config));
    const overrides = new OverrideStore(db);
    models = await ModelManager.open(db, store, overrides, config, log, 'command');
    const notRunning = () => {
      throw new RequestError('not_running', 'linewatch is not running', 'start it: systemctl start linewatch (or linewatch run)', 503);
    };
    const api = new ControlApi(
      controlCommands({
        status: notRunning,
        models,
        store,
        overrides,
        images: new AnomalyImages(db, config.images),
        applyOverrides: () => models!.reconfigure(config),
        reload: notRunning,
      }),
      log,
    );
    // Opening the outbox migrates its table, so a database made here is whole for the daemon.
    new Outbox(db);
    return await use(api);
  } finally {
    await models?.close();
    db.close();
  }
}
