import { readFileSync, statSync } from 'node:fs';

/**
 * Names for uids and gids from /etc/passwd and /etc/group, re-read only when the file's identity
 * (device, inode, size, mtime) changes: tools that edit these files (useradd, vipw) replace or
 * rewrite them, which changes at least one of those. A stat per lookup replaces a read and parse.
 */
class IdNameFile {
  private key: string | undefined;
  private names = new Map<number, string>();

  constructor(private readonly path: string) {}

  /** The names as the file is now (one stat; a read and parse only when it changed). */
  current(): ReadonlyMap<number, string> {
    let key: string;
    try {
      const st = statSync(this.path, { bigint: true });
      key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      // no database: no name selector
      this.key = undefined;
      this.names = new Map();
      return this.names;
    }
    if (key !== this.key) {
      this.names = parse(this.path);
      this.key = key;
    }
    return this.names;
  }
}

/** name:x:id:… lines; the first line for an id wins, as getpwuid/getgrgid answer. */
function parse(path: string): Map<number, string> {
  const out = new Map<number, string>();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const parts = line.split(':');
    if (parts.length < 3 || parts[0] === '' || !/^\d+$/.test(parts[2]!)) continue;
    const id = Number(parts[2]);
    if (!out.has(id)) out.set(id, parts[0]!);
  }
  return out;
}

export class AccountNames {
  private readonly users: IdNameFile;
  private readonly groups: IdNameFile;

  constructor(options: { passwdFile?: string | undefined; groupFile?: string | undefined } = {}) {
    this.users = new IdNameFile(options.passwdFile ?? '/etc/passwd');
    this.groups = new IdNameFile(options.groupFile ?? '/etc/group');
  }

  user(uid: number): string | undefined {
    return this.users.current().get(uid);
  }

  group(gid: number): string | undefined {
    return this.groups.current().get(gid);
  }

  /** Both databases as they are now, for the several lookups of one caller (one stat each). */
  snapshot(): { user(uid: number): string | undefined; group(gid: number): string | undefined } {
    const users = this.users.current();
    const groups = this.groups.current();
    return { user: (uid) => users.get(uid), group: (gid) => groups.get(gid) };
  }
}
