/**
 * Credentials and TLS for NATS and the database, as the Nomad jobs configure
 * them (nomad/*.nomad.hcl): a real nats-server with TLS (a CA made here) and
 * user authorization, reached through the settings parseApiConfig reads; the
 * database URL's ssl-* parameters turned into mysql2's TLS options, and
 * refused by a server that offers no TLS.
 */
import test from "ava";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseApiConfig, parseNatsSecurity } from "../src/config.ts";
import { connectNats, natsConnectOptions } from "../src/nats/jetstream.ts";
import { mysqlConnection } from "../src/db/database.ts";
import { freePort, waitFor } from "../testing/index.ts";

const NATS_SERVER = "/usr/sbin/nats-server";
const dir = await mkdtemp(path.join(tmpdir(), "stockroom-tls-"));
const file = (name: string) => path.join(dir, name);
const children: ChildProcess[] = [];
test.after.always(async () => {
  for (const c of children) c.kill("SIGKILL");
  await rm(dir, { recursive: true, force: true });
});

function openssl(...args: string[]): void {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** makeCertificates writes a CA, a server certificate for 127.0.0.1 and localhost signed by it, and a second, unrelated CA. */
async function makeCertificates(): Promise<void> {
  for (const ca of ["ca", "other-ca"]) {
    openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      `/CN=stockroom test ${ca}`,
      "-keyout",
      `${ca}.key`,
      "-out",
      `${ca}.pem`,
    );
  }
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr");
  await writeFile(file("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "server.ext",
    "-out",
    "server.pem",
  );
}

/** startTlsNats runs nats-server with JetStream, TLS required and one user, as nats.nomad.hcl configures it. */
async function startTlsNats(): Promise<number> {
  const port = await freePort();
  await writeFile(
    file("nats.conf"),
    `listen: 127.0.0.1:${port}
jetstream { store_dir: "${file("js")}" }
tls {
  cert_file: "${file("server.pem")}"
  key_file: "${file("server.key")}"
  timeout: 2
}
authorization {
  users: [ { user: "stockroom", password: "s3cret pass" } ]
}
`,
  );
  const child = spawn(NATS_SERVER, ["-c", file("nats.conf")], { stdio: "ignore" });
  children.push(child);
  await waitFor(
    "nats-server with TLS",
    () =>
      connectNats({
        servers: `tls://127.0.0.1:${port}`,
        name: "probe",
        security: { user: "stockroom", password: "s3cret pass", tls: { caFile: file("ca.pem") } },
      }).then(
        (c) => c.close().then(() => true),
        () => undefined,
      ),
    15_000,
  );
  return port;
}

let natsPort: Promise<number> | undefined;
const tlsNats = () => (natsPort ??= makeCertificates().then(startTlsNats));

test("NATS over TLS with a user: the settings parseApiConfig reads connect, and JetStream answers", async (t) => {
  t.true(existsSync(NATS_SERVER), `${NATS_SERVER} is installed`);
  const port = await tlsNats();
  const config = parseApiConfig({
    NATS_URL: `tls://127.0.0.1:${port}`,
    NATS_USER: "stockroom",
    NATS_PASSWORD: "s3cret pass",
    NATS_TLS_CA: file("ca.pem"),
  });
  const nats = await connectNats({ servers: config.natsUrl.split(","), name: "tls-test", security: config.natsSecurity });
  t.teardown(() => nats.close());
  t.truthy((await nats.jsm.getAccountInfo()).limits, "JetStream answers over the TLS connection");
  t.is(nats.nc.info?.tls_required, true);
});

test("NATS refuses what production must refuse: a wrong password, no password, a server the CA did not sign", async (t) => {
  const port = await tlsNats();
  const servers = `tls://127.0.0.1:${port}`;
  const attempt = (security: Parameters<typeof parseNatsSecurity>[0]) =>
    connectNats({ servers, name: "tls-refused", security: parseNatsSecurity(security, servers) }).then(
      async (c) => {
        await c.close();
        return "connected";
      },
      (error: Error) => error.message,
    );
  t.regex(await attempt({ NATS_USER: "stockroom", NATS_PASSWORD: "wrong", NATS_TLS_CA: file("ca.pem") }), /authoriz/i);
  t.regex(await attempt({ NATS_TLS_CA: file("ca.pem") }), /authoriz/i);
  t.not(
    await attempt({ NATS_USER: "stockroom", NATS_PASSWORD: "s3cret pass", NATS_TLS_CA: file("other-ca.pem") }),
    "connected",
    "a certificate from another CA is refused",
  );
  t.not(await attempt({ NATS_USER: "stockroom", NATS_PASSWORD: "s3cret pass" }), "connected", "the system CAs do not know the test CA");
});

test("NATS security settings: what goes together, and the connection options they make", (t) => {
  t.deepEqual(parseNatsSecurity({}, "nats://127.0.0.1:4222"), {}, "local development: plain, no credentials");
  t.deepEqual(parseNatsSecurity({}, "tls://nats:4222"), { tls: {} }, "tls:// alone requires TLS, verified with the system CAs");
  t.deepEqual(parseNatsSecurity({ NATS_CREDS_FILE: "/secrets/nats.creds", NATS_TLS_CA: "/secrets/ca.pem" }, "tls://a:4222,tls://b:4222"), {
    credsFile: "/secrets/nats.creds",
    tls: { caFile: "/secrets/ca.pem" },
  });
  t.deepEqual(parseNatsSecurity({ NATS_TLS_CERT: "/c.pem", NATS_TLS_KEY: "/k.pem" }, "nats://a:4222"), {
    tls: { certFile: "/c.pem", keyFile: "/k.pem" },
  });
  t.throws(() => parseNatsSecurity({ NATS_USER: "u" }, "tls://a:4222"), { message: /NATS_USER and NATS_PASSWORD go together/ });
  t.throws(() => parseNatsSecurity({ NATS_CREDS_FILE: "/x", NATS_USER: "u", NATS_PASSWORD: "p" }, "tls://a:4222"), {
    message: /exclude each other/,
  });
  t.throws(() => parseNatsSecurity({ NATS_TLS_CERT: "/c.pem" }, "tls://a:4222"), { message: /go together/ });
  t.throws(() => parseNatsSecurity({}, "tls://a:4222,nats://b:4222"), { message: /mixes/ });
  t.throws(() => parseNatsSecurity({}, "ws://a:4222"), { message: /not nats:\/\/ or tls:\/\// });

  const plain = natsConnectOptions({ servers: "127.0.0.1:4222", name: "n" });
  t.is(plain.tls, undefined);
  t.is(plain.authenticator, undefined);
  t.is(plain.maxReconnectAttempts, -1);
  // The creds file is read at each connect (a rotated file is used on the next reconnect), not when the options are made.
  const creds = natsConnectOptions({ servers: "tls://a:4222", name: "n", security: { credsFile: file("missing.creds"), tls: {} } });
  t.deepEqual(creds.tls, {});
  t.is(typeof creds.authenticator, "function");
  t.is(creds.user, undefined);
  t.throws(() => (creds.authenticator as (nonce?: string) => unknown)("nonce"), { message: /ENOENT|no such file/ });
});

test("database TLS: ssl-mode and ssl-ca in the URL become mysql2's TLS options, and leave the URL", async (t) => {
  await tlsNats(); // the certificates
  const ca = file("ca.pem");
  const verified = mysqlConnection(`mysql://app:pw@vtgate:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=${encodeURIComponent(ca)}`);
  t.is(verified.uri, "mysql://app:pw@vtgate:15306/stockroom");
  t.like(verified.ssl, { rejectUnauthorized: true, verifyIdentity: true });
  t.regex(String(verified.ssl?.ca), /BEGIN CERTIFICATE/, "the CA file's contents");
  t.like(mysqlConnection(`mysql://a@h:1/d?ssl-ca=${encodeURIComponent(ca)}`).ssl, { rejectUnauthorized: true, verifyIdentity: true });
  t.like(mysqlConnection("mysql://a@h:1/d?ssl-mode=verify_ca").ssl, { rejectUnauthorized: true, verifyIdentity: false });
  t.like(mysqlConnection("mysql://a@h:1/d?ssl-mode=REQUIRED").ssl, { rejectUnauthorized: false });
  t.deepEqual(mysqlConnection("mysql://a@h:1/d?ssl-mode=DISABLED&charset=utf8mb4"), { uri: "mysql://a@h:1/d?charset=utf8mb4" });
  t.deepEqual(mysqlConnection("mysql://a@h:1/d"), { uri: "mysql://a@h:1/d" });
  const withClientCert = mysqlConnection(
    `mysql://a@h:1/d?ssl-mode=VERIFY_CA&ssl-ca=${encodeURIComponent(ca)}&ssl-cert=${encodeURIComponent(file("server.pem"))}&ssl-key=${encodeURIComponent(file("server.key"))}`,
  );
  t.regex(String(withClientCert.ssl?.key), /PRIVATE KEY/);
  t.throws(() => mysqlConnection("mysql://a@h:1/d?ssl-mode=PREFERRED"), { message: /ssl-mode must be one of/ });
  t.throws(() => mysqlConnection(`mysql://a@h:1/d?ssl-mode=DISABLED&ssl-ca=${ca}`), { message: /need TLS/ });
  t.throws(() => mysqlConnection("mysql://a@h:1/d?ssl-cert=/c.pem"), { message: /go together/ });
  t.notThrows(() => parseApiConfig({ DATABASE_URL: `mysql://app:pw@vtgate:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=${ca}` }));
});

test("database TLS is demanded, not hoped for: a server without TLS is refused; without ssl-mode the same server answers", async (t) => {
  // The local MariaDB has TLS off (have_ssl DISABLED): a client that requires TLS must not fall back to plain text.
  const { createConnection } = await import("mysql2/promise");
  const plain = await createConnection(mysqlConnection("mysql://root@127.0.0.1:3306/mysql"));
  const [rows] = await plain.query("SELECT @@have_ssl AS have_ssl");
  await plain.end();
  const haveSsl = (rows as { have_ssl: string }[])[0]?.have_ssl;
  if (haveSsl === "YES") {
    t.log("this MariaDB offers TLS; the refusal cannot be shown here");
    t.pass();
    return;
  }
  for (const mode of ["REQUIRED", "VERIFY_IDENTITY"]) {
    const error = await t.throwsAsync(createConnection(mysqlConnection(`mysql://root@127.0.0.1:3306/mysql?ssl-mode=${mode}`)));
    t.regex(String(error?.message), /secure connection|SSL|TLS/i, mode);
  }
});
