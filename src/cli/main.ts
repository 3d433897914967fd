#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { errorText, isUserError, setLogFormat, setLogLevel } from '../common/index.js';
import { commands, type CommandName } from './commands.js';

const usage = `linewatch: edge inspection daemon (camera frames -> kNN anomaly events over MQTT)

Usage: linewatch <command> [options]

Commands:
  run                      run the daemon
  enroll <folder>          add labeled references (one subfolder per label; "good" is good)
  classify <image...>      classify images against the references
  eval <folder>            precision/recall/F1, confusion matrix, AUROC on a labeled folder
  status                   status of the running daemon (or of its database when stopped)

Options:
  --config FILE            configuration file (default /etc/linewatch/config.yml, or $LINEWATCH_CONFIG)
  --json                   print one JSON document
  --chart FILE             eval: write the confusion matrix and PR curve as PNG
  --label LABEL            enroll: treat <folder> as images of this one label
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
  if (process.env['LINEWATCH_LOG_LEVEL'] === 'debug') setLogLevel('debug');
  return commands[name as CommandName]({
    args,
    configPath: values.config,
    json: values.json,
    chart: values.chart,
    label: values.label,
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // User errors get their message and what to do; anything else is a bug and keeps its stack.
    if (isUserError(err)) {
      process.stderr.write(`linewatch: ${err.message}\n${err.hint ? `  fix: ${err.hint}\n` : ''}`);
    } else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`linewatch: ${errorText(err)}\n\n${usage}`);
    } else {
      process.stderr.write(`linewatch: internal error (please report it): ${(err as Error)?.stack ?? String(err)}\n`);
    }
    process.exitCode = isUserError(err) ? 1 : 70;
  },
);
