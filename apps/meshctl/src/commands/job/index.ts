// `meshctl job …`: registers the subcommands, one module each (shared.ts
// holds what they share; resolve-id.ts turns an id prefix into an id).

import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { UsageError } from '../../cli/errors.ts';
import { cancelCommand } from './cancel.ts';
import { eventsCommand } from './events.ts';
import { inputCommand } from './input.ts';
import { listCommand } from './list.ts';
import { reclaimCommand } from './reclaim.ts';
import { statusCommand } from './status.ts';
import { submitCommand } from './submit.ts';
import { waitCommand } from './wait.ts';

export const jobCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'job',
  describe: 'Jobs: status, list, submit, cancel, reclaim, events, wait, input',
  builder: (y) =>
    y
      .command(statusCommand)
      .command(listCommand)
      .command(submitCommand)
      .command(cancelCommand)
      .command(reclaimCommand)
      .command(eventsCommand)
      .command(waitCommand)
      .command(inputCommand)
      .demandCommand(1, 'name a job command'),
  handler: () => {
    throw new UsageError('name a job command');
  },
};
