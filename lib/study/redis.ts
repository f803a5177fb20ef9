// Redis connection settings for the trial queue. A URL such as
// `rediss://user:password@redis.example.org:6380/2` becomes ioredis options: TLS for rediss://,
// ACL user and password, database number. Passwords never reach a log: every message that shows
// the URL uses maskRedisUrl.
import net from 'node:net';

export const DEFAULT_REDIS_PORT = 6379;

/** Environment variable read when no --redis option is given; it keeps a password out of `ps` output. */
export const REDIS_URL_ENV = 'CLIPFREEZE_REDIS_URL';

/** ioredis options derived from a Redis URL (a subset of ioredis' RedisOptions). */
export interface RedisConnectionOptions {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  /**
   * Present for rediss:// URLs. The server certificate is checked against Node's CA store plus
   * NODE_EXTRA_CA_CERTS. servername (SNI) is set for host names only, because RFC 6066 allows no
   * IP address there.
   */
  tls?: { servername?: string };
  /** null: commands wait for a reconnect instead of failing, which BullMQ requires for workers. */
  maxRetriesPerRequest: null;
}

/**
 * Parses `redis://[user[:password]@]host[:port][/db]` or the same with `rediss://` (TLS).
 * Throws for other schemes, a missing host, a bad port or database, or query parameters;
 * the error shows the URL with its password masked.
 */
export function parseRedisUrl(url: string): RedisConnectionOptions {
  const shown = maskRedisUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`Invalid Redis URL '${shown}'. Expected redis://[user:password@]host[:port][/db] or rediss://... for TLS.`);
  }

  const scheme = parsed.protocol.replace(/:$/, '');
  if (scheme !== 'redis' && scheme !== 'rediss') {
    throw new Error(`Invalid Redis URL '${shown}': scheme '${scheme}' is not supported. Use redis:// or rediss:// (TLS).`);
  }
  if (!parsed.hostname) {
    throw new Error(`Invalid Redis URL '${shown}': the host is missing. Example: redis://127.0.0.1:6379`);
  }
  if (parsed.search) {
    throw new Error(`Invalid Redis URL '${shown}': query parameters are not supported. Put the database number in the path (/2) and use rediss:// for TLS.`);
  }

  const port = parsed.port ? Number(parsed.port) : DEFAULT_REDIS_PORT;
  const dbText = parsed.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0 || !/^\d*$/.test(dbText)) {
    throw new Error(`Invalid Redis URL '${shown}': database '${dbText}' is not a non-negative integer.`);
  }

  // WHATWG URL keeps brackets around IPv6 hosts; net.connect expects the bare address.
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  const options: RedisConnectionOptions = { host, port, db, maxRetriesPerRequest: null };
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  if (scheme === 'rediss') options.tls = net.isIP(host) === 0 ? { servername: host } : {};
  return options;
}

/**
 * Returns the URL with its password replaced by `***`, for logs and error messages. Works on
 * strings that are not valid URLs too, so that an error about a bad URL cannot leak a password.
 */
export function maskRedisUrl(url: string): string {
  // The userinfo part runs from '//' to the last '@': a host or database never contains '@',
  // and a password may contain '/' or '@' when a user did not percent-encode it.
  const withScheme = /^([a-z][a-z0-9+.-]*:\/\/)(.*)@/is;
  if (!withScheme.test(url)) {
    // Without a scheme, the user and the password cannot be distinguished, so all before the last '@' is masked.
    return url.replace(/^.*@/s, '***@');
  }
  return url.replace(withScheme, (_match, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    if (colon === -1) return `${scheme}${userinfo}@`;
    return `${scheme}${userinfo.slice(0, colon)}:***@`;
  });
}

/** Returns the Redis URL from the option or the CLIPFREEZE_REDIS_URL variable, or throws naming both. */
export function resolveRedisUrl(option: string | undefined): string {
  const url = option ?? process.env[REDIS_URL_ENV];
  if (!url) {
    throw new Error(`No Redis URL given. Pass --redis redis://host:6379 or set ${REDIS_URL_ENV} (keeps a password out of the process list).`);
  }
  return url;
}

/** Errors after which reconnecting cannot help: a wrong password or user, or a server that wants one. */
const AUTH_ERROR = /WRONGPASS|NOAUTH|invalid password|invalid username-password|AUTH.*(without any password|failed)/i;

/**
 * Waits until a BullMQ queue, worker or event listener is connected. Rejects after `timeoutMs`,
 * or at once on an authentication error, with a message that shows the masked URL.
 */
export async function waitForRedis(
  client: { waitUntilReady(): Promise<void>; on(event: 'error', listener: (err: Error) => void): unknown },
  url: string,
  timeoutMs: number,
): Promise<void> {
  const shown = maskRedisUrl(url);
  let timer: NodeJS.Timeout | undefined;
  let onError: ((err: Error) => void) | undefined;
  const failure = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new Error(
          `Failed to connect to Redis at ${shown} within ${timeoutMs / 1000} s. Check that redis-server runs there and that the host, port and TLS setting (rediss://) are right.`,
        ),
      );
    }, timeoutMs);
    onError = (err: Error) => {
      if (AUTH_ERROR.test(err?.message ?? '')) {
        reject(new Error(`Redis at ${shown} rejected the credentials: ${err.message}. Check the user and password in the URL.`));
      }
    };
    client.on('error', onError);
  });
  try {
    await Promise.race([client.waitUntilReady(), failure]);
  } finally {
    clearTimeout(timer);
  }
}
