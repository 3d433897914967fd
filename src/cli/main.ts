#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { errorText, isUserError, setLogFormat } from '../common/index.js';
import { commands, type CommandName } from './commands.js';

const usage = `linewatch: edge inspection daemon (camera frames -> kNN anomaly events over MQTT)

Usage: linewatch <command> [options]

Commands:
  run                      run the daemon
  enroll <folder>          add labeled references (one subfolder per label; "good" is good)
  classify <image...>      classify images against the references
  eval <folder>            precision/recall/F1, confusion matrix, AUROC on a labeled folder
  status                   status of the running daemon (or of its database when stopped)
  bench                    measure this machine: encoder, preprocess, end to end, kNN, memory, model swap pause
  experiment drift         self-training under a drifting line: F1 per window, learning off/on, poisoned (--drift KIND, --chart FILE, --seed N)
  keys generate            make an ed25519 key pair for signing model bundles
  keys sign <folder>       sign a model bundle folder (writes signature.json)

Control (the running daemon through its HTTP API; when it is stopped, its database):
  token                    print the control token (as root or the service user)
  classifier set           set --k, --threshold, --unknown-distance ("default" clears one)
  label <event-id> <label> make an anomaly's item a reference with this label
  references list          references with provenance, newest first (--label, --source, --older-than, --newer-than, --limit)
  references remove <ids>  remove references by id
  references prune         remove every reference matching --label, --source, --older-than, --newer-than
  references export        references with provenance, image and vector (base64) as JSON (same filters)
  model push <bundle>      install a signed bundle (folder or .tar.gz): verify, gate, swap
  model list               installed models, the active one, the history
  model activate <key>     make an installed model active
  model rollback           bring the previous model back

Web UI:
  user add <name> --role viewer|technician   add an account (password from a prompt or stdin's first line)

Options:
  --config FILE            configuration file (default /etc/linewatch/config.yml, or $LINEWATCH_CONFIG)
  --json                   print one JSON document
  --chart FILE             eval: write the confusion matrix and PR curve as PNG; experiment: F1 over time
  --label LABEL            enroll: treat <folder> as images of this one label; references: only this label
  --source SOURCE          references: only human, auto or peer references
  --older-than HOURS, --newer-than HOURS   references: only those created more / less than HOURS ago
  --limit N                references list: at most N (default 100)
  --quick                  bench: a short run that only proves the bench works
  --duration SECONDS       bench: length of the full-rate end-to-end run (default 60; 600 for memory drift)
  --fp32 DIR, --int8 DIR   bench: model bundles (default models/default-fp32, models/default-int8); experiment: the fp32 bundle
  --seed N                 experiment: the stream's shuffle (default 7)
  --drift KIND             experiment: what drifts, lighting (default), focus or noise
  --frames DIR             bench: sample frames (default samples/line/frames)
  --references DIR         bench: the line's labelled references for the sample-line run (default samples/line/references with the default frames)
  --name NAME              keys generate: file name of the key pair (default linewatch-signing)
  --out DIR                keys generate: folder for the key pair (default the current folder)
  --key FILE               keys sign: the private key (.key)
  --k N, --threshold X, --unknown-distance X   classifier set: the values
  --force                  model push: install even when the accuracy gate refuses (logged)
  -h, --help               this help
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string' },
      json: { type: 'boolean', default: false },
      chart: { type: 'string' },
      label: { type: 'string' },
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      fp32: { type: 'string' },
      int8: { type: 'string' },
      frames: { type: 'string' },
      references: { type: 'string' },
      seed: { type: 'string' },
      drift: { type: 'string' },
      name: { type: 'string' },
      out: { type: 'string' },
      key: { type: 'string' },
      k: { type: 'string' },
      threshold: { type: 'string' },
      'unknown-distance': { type: 'string' },
      force: { type: 'boolean', default: false },
      role: { type: 'string' },
      source: { type: 'string' },
      'older-than': { type: 'string' },
      'newer-than': { type: 'string' },
      limit: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [name, ...args] = positionals;
  if (values.help || !name) {
    process.stdout.write(usage);
    return name || values.help ? 0 : 2;
  }
  if (!(name in commands)) {
    process.stderr.write(`linewatch: unknown command "${name}"\n\n${usage}`);
    return 2;
  }
  if (values.json) setLogFormat('json');
  return commands[name as CommandName]({
    args,
    configPath: values.config,
    json: values.json,
    chart: values.chart,
    label: values.label,
    bench: { quick: values.quick, duration: values.duration, fp32: values.fp32, int8: values.int8, frames: values.frames, references: values.references, seed: values.seed, drift: values.drift },
    keys: { name: values.name, out: values.out, key: values.key },
    control: { k: values.k, threshold: values.threshold, unknownDistance: values['unknown-distance'], force: values.force },
    role: values.role,
    references: { source: values.source, olderThan: values['older-than'], newerThan: values['newer-than'], limit: values.limit },
  });
}

/**
 * Once a command has finished and closed what it opened, nothing should keep the process alive;
 * if something does (a read blocked on a FIFO in libuv's pool, say), exit anyway after a grace
 * period rather than hang until systemd kills us.
 */
function exitSoon(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
}

main(process.argv.slice(2)).then(
  (code) => exitSoon(code),
  (err: unknown) => {
    // User errors get their message and what to do; anything else is a bug and keeps its stack.
    if (isUserError(err)) {
      process.stderr.write(`linewatch: ${err.message}\n${err.hint ? `  fix: ${err.hint}\n` : ''}`);
      exitSoon(1);
    } else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      // A misspelt option is a usage mistake, like an unknown command.
      process.stderr.write(`linewatch: ${errorText(err)}\n\n${usage}`);
      exitSoon(2);
    } else {
      process.stderr.write(`linewatch: internal error (please report it): ${(err as Error)?.stack ?? String(err)}\n`);
      exitSoon(70);
    }
  },
);
