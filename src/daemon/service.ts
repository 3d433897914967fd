import { errorText, isUserError, modeBeyond, restrictUmask, STATE_DIR_MODE, type Logger } from '../common/index.js';
import type { Config } from '../config/index.js';
import { Daemon } from './daemon.js';
import { SystemdNotifier, Watchdog } from './notify.js';

/** How long work still running after a stop during start-up may take before the process ends anyway (below the CLI's exit grace). */
const uninterruptibleGraceMs = 1500;

/**
 * The daemon as a service: started, told to systemd as ready once frames arrive, kept alive by
 * the watchdog while frames are decided, reloaded on SIGHUP, stopped cleanly on SIGTERM/SIGINT.
 * `reloadConfig` reads the configuration file again (it throws a ConfigError naming what is wrong).
 */
export async function runService(config: Config, log: Logger, reloadConfig: () => Config): Promise<number> {
  // Whatever umask the shell gave us, what the daemon and its libraries write stays private (0750/0640).
  restrictUmask();
  const notifier = SystemdNotifier.fromEnvironment(log);
  let daemon: Daemon | null = null;
  let reloading: Promise<void> = Promise.resolve();
  // Without a handler SIGHUP would kill Node; before the daemon runs there is nothing to reload.
  const onHangup = () => {
    if (!daemon) {
      log.warn('reload requested while starting: ignored, the configuration is read at start anyway');
      return;
    }
    const running = daemon;
    reloading = reloading.then(() => reload(running, log, reloadConfig, notifier));
  };
  process.on('SIGHUP', onHangup);
  let stopRequested: string | null = null;
  let wake: (() => void) | null = null;
  // Start-up can take long (a model to load, references to embed): a stop must not wait for it.
  const starting = new AbortController();
  const onStop = (signal: string) => {
    log.info('signal received', { signal });
    stopRequested = signal;
    process.off('SIGTERM', onStop).off('SIGINT', onStop);
    starting.abort(new Error(`stopped by ${signal} while starting`));
    wake?.();
  };
  // With a handler installed Node no longer exits on the signal: finish the job, then exit.
  process.on('SIGTERM', onStop).on('SIGINT', onStop);
  // Only now that a stop is handled: a supervisor may stop us as soon as it reads the first line.
  warnIfOpen(config.stateDir, log);
  let watchdog: Watchdog | null = null;
  try {
    try {
      daemon = await Daemon.start(config, log, { reloadConfig, signal: starting.signal });
    } catch (err) {
      if (stopRequested) {
        log.info('stopped while starting', { signal: stopRequested });
        // What cannot be interrupted (ONNX Runtime opening a session inside a worker) can hold the
        // process, and process.exit too (it joins worker threads): end it as the signal would have.
        const signal = stopRequested;
        setTimeout(() => process.kill(process.pid, signal), uninterruptibleGraceMs).unref();
        return 0;
      }
      notifier?.notify({ STATUS: `failed to start: ${errorText(err)}` });
      throw err;
    }
    const running = daemon;
    const stopped = new Promise<void>((resolve) => {
      wake = resolve;
      if (stopRequested) resolve();
      // A play-once replay ends by itself.
      running.finished().then(resolve, resolve);
    });
    let over = false;
    void stopped.then(() => (over = true));
    if (notifier) {
      // Ready means the camera delivers: wait for the first frame (or a stop) before saying so.
      await Promise.race([stopped, untilFirstFrame(running, () => over)]);
      if (!stopRequested) {
        notifier.notify({ READY: '1', STATUS: `running: ${running.status().model.name} on ${running.status().model.provider}` });
        if (notifier.watchdog) {
          watchdog = new Watchdog(notifier, notifier.watchdog.intervalMs, () => running.framesFinished);
          watchdog.start();
          log.info('systemd watchdog on', { intervalMs: notifier.watchdog.intervalMs });
        }
      }
    }
    await stopped;
    notifier?.notify({ STOPPING: '1' });
    watchdog?.stop();
    await reloading;
    await running.stop();
    return 0;
  } finally {
    watchdog?.stop();
    notifier?.close();
    process.off('SIGHUP', onHangup).off('SIGTERM', onStop).off('SIGINT', onStop);
  }
}

async function untilFirstFrame(daemon: Daemon, cancelled: () => boolean): Promise<void> {
  while (daemon.status().capture.framesReceived === 0 && !cancelled()) await new Promise((resolve) => setTimeout(resolve, 100));
}

/** A bad new file is refused with the reason; the configuration in force stays. */
async function reload(daemon: Daemon, log: Logger, reloadConfig: () => Config, notifier: SystemdNotifier | null): Promise<void> {
  notifier?.notify({ RELOADING: '1' });
  try {
    let next: Config;
    try {
      next = reloadConfig();
    } catch (err) {
      log.error('new configuration refused; the one in force stays', { error: errorText(err), ...(isUserError(err) && err.hint ? { fix: err.hint } : {}) });
      return;
    }
    try {
      const result = await daemon.reload(next);
      log.info('configuration reloaded', { changed: result.changed });
      if (result.needRestart.length > 0) log.warn('configuration keys that apply only after a restart', { keys: result.needRestart, fix: 'systemctl restart linewatch' });
    } catch (err) {
      log.error('new configuration not fully applied',  { error: errorText(err), ...(isUserError(err) && err.hint ? { fix: err.hint } : {}) });
    }
  } finally {
    notifier?.notify({ READY: '1' });
  }
}

/**
 * A state folder others can read is the user's to close: it may be shared with other things
 * (a folder made by hand, /var/lib itself), so it is not changed behind their back.
 */
function warnIfOpen(stateDir: string, log: Logger): void {
  const mode = modeBeyond(stateDir, STATE_DIR_MODE);
  if (mode === undefined) return;
  log.warn('the state folder is open to other users: it holds images of the product and every reference', {
    stateDir,
    mode: mode.toString(8).padStart(4, '0'),
    fix: `chmod 750 ${stateDir}`,
  });
}
