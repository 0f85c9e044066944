import { randomBytes } from 'node:crypto';
import { migrate } from '@mesh/db';
import postgres from 'postgres';

/** The migrated template every test database is cloned from. */
export const templateDatabase = 'mesh_template';

/** Replaces the database name in a PostgreSQL URL. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

const admin = (adminUrl: string) => postgres(adminUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });

/** Creates the template database and migrates it (global setup, once per run). */
export async function prepareTemplate(adminUrl: string): Promise<void> {
  const sql = admin(adminUrl);
  try {
    await sql.unsafe(`drop database if exists ${templateDatabase} with (force)`);
    await sql.unsafe(`create database ${templateDatabase}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
  await migrate(withDatabase(adminUrl, templateDatabase), { appliedBy: 'testkit' });
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/**
 * A fresh database for one test file: a clone of the migrated template, or an
 * empty one (`migrated: false`) for tests of migration itself.
 */
export async function createDatabase(
  adminUrl: string,
  options: { migrated?: boolean } = {},
): Promise<TestDatabase> {
  const name = `t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const template = options.migrated === false ? 'template0' : templateDatabase;
  const sql = admin(adminUrl);
  try {
    await sql.unsafe(`create database ${name} template ${template}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
  return {
    name,
    url: withDatabase(adminUrl, name),
    async drop() {
      const s = admin(adminUrl);
      try {
        await s.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await s.end({ timeout: 5 });
      }
    },
  };
}
