import { createInterface } from 'node:readline';
import { UserError } from '../common/index.js';
import { loadConfig } from '../config/index.js';
import { databasePath } from '../daemon/index.js';
import { openDatabase } from '../storage/index.js';
import { Accounts, roles, type Role } from '../ui/index.js';

/** `linewatch user add <name> --role viewer|technician`: a web UI account, its password from stdin or a prompt. */
export async function userCommand(args: string[], options: { configPath: string | undefined; role: string | undefined }): Promise<number> {
  const [action, name, ...rest] = args;
  const usage = 'linewatch user add <name> --role viewer|technician (the password from a prompt, or the first line of stdin)';
  if (action !== 'add' || !name || rest.length > 0) throw new UserError('user takes: add <name>', usage);
  if (!roles.includes(options.role as Role)) throw new UserError(options.role ? `unknown role "${options.role}"` : 'give the account a role', usage);
  const { config } = loadConfig({ path: options.configPath });
  const password = process.stdin.isTTY ? await prompt(name) : await firstLine();
  // The daemon may be running: SQLite (WAL) takes the row, and its next login sees it.
  const db = openDatabase(databasePath(config));
  try {
    const accounts = new Accounts(db);
    await accounts.add(name, options.role as Role, password);
    process.stdout.write(`added ${name} (${options.role}); the web UI now asks everyone to log in\n`);
  } finally {
    db.close();
  }
  return 0;
}

async function firstLine(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  return text.split(/\r?\n/)[0] ?? '';
}

/** Asks twice without echoing what is typed. */
async function prompt(name: string): Promise<string> {
  const ask = (question: string) =>
    new Promise<string>((resolve) => {
      const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true });
      const write = (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput;
      (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => write.call(rl, s.startsWith(question) ? s : '');
      rl.question(question, (answer) => {
        rl.close();
        process.stdout.write('\n');
        resolve(answer);
      });
    });
  const first = await ask(`password for ${name}: `);
  if ((await ask('again: ')) !== first) throw new UserError('the two passwords differ', 'run the command again');
  return first;
}
