// `meshctl registry …`: registers the subcommands, one module each (status,
// drain and its wait, resume, replicas, forget; shared.ts holds what they share).

import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../../cli/connection.ts';
import { UsageError } from '../../cli/errors.ts';
import { drainCommand } from './drain.ts';
import { forgetCommand } from './forget.ts';
import { replicasCommand } from './replicas.ts';
import { resumeCommand } from './resume.ts';
import { statusCommand } from './status.ts';

export const registryCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'registry',
  describe: 'Registry replicas: status, drain, resume, the fleet',
  builder: (y) =>
    y
      .command(statusCommand)
      .command(drainCommand)
      .command(resumeCommand)
      .command(replicasCommand)
      .command(forgetCommand)
      .demandCommand(1, 'name a registry command'),
  handler: () => {
    throw new UsageError('name a registry command');
  },
};
