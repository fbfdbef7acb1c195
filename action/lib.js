// Shared by main.js, post.js and setup.js. Node's built-in modules only: nothing to install,
// no node_modules to commit.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');
const { spawn } = require('node:child_process');

const REPO = 'aiven-ephemeral/aiven-ephemeral';

/**
 * What the release workflow commits into the action: the release this revision of the
 * action runs, and the SHA-256 of every asset of every release up to it. Whatever ref the
 * action is used at (v1, v1.2.3, a commit, a branch), the binary is checked against this.
 */
const RELEASE_FILE = path.join(__dirname, 'release.json');

/** An input as the runner passes it: INPUT_<NAME>, spaces to `_`, upper case, hyphens kept. */
function input(name) {
  const value = process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] || '';
  return value.trim();
}

/** A boolean input, as the Actions toolkit's getBooleanInput reads it. */
function booleanInput(name) {
  const value = input(name);
  if (['true', 'True', 'TRUE'].includes(value)) return true;
  if (['false', 'False', 'FALSE'].includes(value)) return false;
  throw new Error(`input ${name}: ${JSON.stringify(value)} is not a boolean; use true | True | TRUE | false | False | FALSE`);
}

/** Workflow-command escaping, as the runner expects it. */
function escapeData(s) {
  return String(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function warn(message) {
  process.stdout.write(`::warning::${escapeData(message)}\n`);
}

function fail(message) {
  process.stdout.write(`::error::${escapeData(message)}\n`);
  process.exitCode = 1;
}

/** Appends NAME<<DELIM ... DELIM to a runner file ($GITHUB_STATE, $GITHUB_OUTPUT). */
function appendKeyValue(file, name, value) {
  if (!file) return;
  const delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  fs.appendFileSync(file, `${name}<<${delimiter}${os.EOL}${value}${os.EOL}${delimiter}${os.EOL}`, { encoding: 'utf8' });
}

function saveState(name, value) {
  appendKeyValue(process.env.GITHUB_STATE, name, value);
}

function setOutput(name, value) {
  appendKeyValue(process.env.GITHUB_OUTPUT, name, value);
}

/** Later steps find `dir`'s programs by name: the runner prepends $GITHUB_PATH's lines to PATH. */
function addPath(dir) {
  if (process.env.GITHUB_PATH) fs.appendFileSync(process.env.GITHUB_PATH, `${dir}${os.EOL}`, { encoding: 'utf8' });
}

/** What main saved, as the runner hands it to post: STATE_<name>. */
function getState(name) {
  return (process.env[`STATE_${name}`] || '').trim();
}

/** The Rust target triple of this runner, as release assets are named. */
function target() {
  const arch = { x64: 'x86_64', arm64: 'aarch64' }[process.arch];
  if (!arch) throw new Error(`unsupported runner architecture ${process.arch}`);
  switch (process.platform) {
    case 'linux': return `${arch}-unknown-linux-musl`;
    case 'darwin': return `${arch}-apple-darwin`;
    case 'win32': return `${arch}-pc-windows-msvc`;
    default: throw new Error(`unsupported runner platform ${process.platform}`);
  }
}

/**
 * The proxy for a URL, as the Actions toolkit (@actions/http-client) reads it:
 * https_proxy/HTTPS_PROXY or http_proxy/HTTP_PROXY, unless NO_PROXY lists the host
 * (`host`, `host:port`, a domain suffix, or `*`) or the host is a loopback address.
 */
function proxyFor(url) {
  const target = new URL(url);
  const host = target.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.startsWith('127.') || host === '::1') return null;
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  const noProxy = (process.env.no_proxy || process.env.NO_PROXY || '').split(',')
    .map((e) => e.trim().toLowerCase()).filter(Boolean);
  const bypass = noProxy.some((e) => e === '*' || e === host || e === `${host}:${port}`
    || host.endsWith(e.startsWith('.') ? e : `.${e}`));
  if (bypass) return null;
  const proxy = target.protocol === 'https:'
    ? process.env.https_proxy || process.env.HTTPS_PROXY
    : process.env.http_proxy || process.env.HTTP_PROXY;
  return proxy ? new URL(proxy) : null;
}

function proxyAuthorization(proxy) {
  if (!proxy.username) return {};
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` };
}

/** An https agent whose connections are tunnelled through the proxy with CONNECT. */
function tunnel(proxy) {
  const agent = new https.Agent({ keepAlive: false });
  agent.createConnection = (options, done) => {
    const authority = `${options.host}:${options.port}`;
    http.request({
      host: proxy.hostname, port: proxy.port || 80, method: 'CONNECT', path: authority,
      headers: { host: authority, ...proxyAuthorization(proxy) },
    }).on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        done(new Error(`proxy ${proxy.host} refused CONNECT ${authority}: HTTP ${res.statusCode}`));
        return;
      }
      done(null, tls.connect({ socket, servername: options.servername || options.host }));
    }).on('error', done).end();
  };
  return agent;
}

/** The download's idle limit: no byte for this long ends the attempt. */
function downloadTimeoutMs() {
  const seconds = Number(process.env.AIVEN_EPHEMERAL_DOWNLOAD_TIMEOUT || 60);
  if (!(seconds > 0)) throw new Error(`AIVEN_EPHEMERAL_DOWNLOAD_TIMEOUT: ${process.env.AIVEN_EPHEMERAL_DOWNLOAD_TIMEOUT} is not a number of seconds`);
  return seconds * 1000;
}

/** One GET: { redirect } or { status } or { body }; a stalled or cut-off body rejects. */
function get(url) {
  const target = new URL(url);
  const proxy = proxyFor(url);
  const headers = { 'user-agent': 'aiven-ephemeral-action' };
  let request;
  if (proxy && target.protocol === 'http:') {
    // A plain-HTTP target: the whole URL to the proxy.
    request = http.request({
      host: proxy.hostname, port: proxy.port || 80, path: url,
      headers: { ...headers, host: target.host, ...proxyAuthorization(proxy) },
    });
  } else {
    const client = target.protocol === 'http:' ? http : https;
    request = client.request(url, { headers, agent: proxy ? tunnel(proxy) : undefined });
  }
  const timeout = downloadTimeoutMs();
  return new Promise((resolve, reject) => {
    request.setTimeout(timeout, () => request.destroy(new Error(`no answer for ${timeout / 1000} s`)));
    request.on('error', reject);
    request.on('response', (res) => {
      if ([301, 302, 303, 307, 308].includes(res.statusCode) && res.headers.location) {
        res.resume();
        resolve({ redirect: new URL(res.headers.location, url).toString() });
        return;
      }
      if (res.statusCode !== 200) {
        res.resume();
        resolve({ status: res.statusCode });
        return;
      }
      const chunks = [];
      let received = 0;
      res.on('data', (c) => { chunks.push(c); received += c.length; });
      res.on('close', () => {
        const length = Number(res.headers['content-length']);
        if (!res.complete || (length && received !== length)) {
          reject(new Error(`the download was cut off after ${received} of ${length || 'unknown'} bytes`));
        } else {
          resolve({ body: Buffer.concat(chunks) });
        }
      });
    });
    request.end();
  });
}

const ATTEMPTS = 3;

/**
 * GET with redirects, retried as the Actions toolkit's tool-cache retries: on a network
 * error, a stall, a cut-off body, HTTP 5xx, 408 or 429; never on another status.
 */
async function download(url) {
  let last;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt += 1) {
    let at = url;
    try {
      for (let redirects = 0; ; redirects += 1) {
        const answer = await get(at);
        if (answer.body) return answer.body;
        if (answer.status) {
          const retryable = answer.status >= 500 || answer.status === 408 || answer.status === 429;
          if (!retryable) throw Object.assign(new Error(`GET ${at}: HTTP ${answer.status}`), { final: true });
          throw new Error(`HTTP ${answer.status}`);
        }
        if (redirects === 5) throw Object.assign(new Error(`GET ${url}: more than 5 redirects`), { final: true });
        at = answer.redirect;
      }
    } catch (e) {
      if (e.final) throw e;
      last = `GET ${at}: ${e.message}`;
    }
    if (attempt < ATTEMPTS) {
      console.log(`aiven-ephemeral: ${last}; trying again in ${attempt} s (attempt ${attempt + 1} of ${ATTEMPTS})`);
      await new Promise((r) => { setTimeout(r, attempt * 1000); });
    }
  }
  throw new Error(`${last} (gave up after ${ATTEMPTS} attempts)`);
}

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/** The files that make up the action's code, as release-file.js hashes them. */
const ACTION_FILES = ['action.yml', 'action/lib.js', 'action/main.js', 'action/post.js', 'action/setup.js', 'setup/action.yml'];

/** SHA-256 over the action's code: what a release records, and what runs compares. */
function actionCodeHash(root = path.join(__dirname, '..')) {
  const hash = crypto.createHash('sha256');
  for (const file of ACTION_FILES) {
    hash.update(`${file}\0`).update(fs.readFileSync(path.join(root, file))).update('\0');
  }
  return hash.digest('hex');
}

function releaseFile() {
  let text;
  try {
    text = fs.readFileSync(RELEASE_FILE, 'utf8');
  } catch {
    const ref = process.env.GITHUB_ACTION_REF || 'this revision';
    throw new Error(`the action at ${ref} has no action/release.json (it predates the first release): `
      + 'use it at a release tag such as @v1, or set input `binary`');
  }
  return JSON.parse(text);
}

/** The binary: input `binary`, else the release `version` (default: the action's own). */
async function resolveBinary() {
  const local = input('binary');
  if (local) {
    const resolved = path.resolve(local);
    if (!fs.existsSync(resolved)) throw new Error(`input binary: ${resolved} does not exist`);
    return resolved;
  }
  const release = releaseFile();
  // At a branch or a commit after the release, the code is newer than the binary it runs.
  if (!input('version') && release.action_sha256 && release.action_sha256 !== actionCodeHash()) {
    const ref = process.env.GITHUB_ACTION_REF || 'this revision';
    warn(`the action at ${ref} is not the code released as ${release.version}, yet runs `
      + `${release.version}'s binary (the last release it knows): they may not match. Use the action at a `
      + 'release tag such as @v1, or set input `binary` to a build of the same revision');
  }
  const version = input('version') || release.version;
  const checksums = (release.releases || {})[version];
  if (!checksums) {
    throw new Error(`release ${version} is not among those this action knows (${Object.keys(release.releases || {}).join(', ')}): `
      + 'use the action at a ref that includes it');
  }
  const exe = process.platform === 'win32' ? '.exe' : '';
  const asset = `aiven-ephemeral-${target()}${exe}`;
  const expected = checksums[asset];
  if (!expected) throw new Error(`release ${version} has no ${asset}: set input \`binary\``);
  const dir = path.join(process.env.RUNNER_TOOL_CACHE || os.tmpdir(), 'aiven-ephemeral', version, target());
  const binary = path.join(dir, `aiven-ephemeral${exe}`);
  if (fs.existsSync(binary) && sha256(fs.readFileSync(binary)) === expected) return binary;
  // GitHub, or a server laid out like its releases (a mirror, or the tests' own).
  const server = (process.env.AIVEN_EPHEMERAL_DOWNLOAD_URL || 'https://github.com').replace(/\/+$/, '');
  const body = await download(`${server}/${REPO}/releases/download/${version}/${asset}`);
  const actual = sha256(body);
  if (actual !== expected) {
    throw new Error(`checksum mismatch for ${asset} of ${version}: the action's release.json says ${expected}, the download is ${actual}; not running it`);
  }
  fs.mkdirSync(dir, { recursive: true });
  // Written aside and renamed, so that a concurrent step never runs a half-written file.
  const partial = `${binary}.${process.pid}`;
  fs.writeFileSync(partial, body, { mode: 0o755 });
  fs.renameSync(partial, binary);
  return binary;
}

/**
 * Runs the binary with the inherited stdio, forwarding SIGINT and SIGTERM so that it
 * tears down within the runner's cancellation budget. Resolves to its exit code.
 */
function run(binary, args, env) {
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: 'inherit', env });
    const forward = (signal) => () => child.kill(signal);
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    child.on('error', (e) => {
      fail(`cannot run ${binary}: ${e.message}`);
      resolve(1);
    });
    child.on('close', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(code === null ? 128 + (os.constants.signals[signal] || 0) : code);
    });
  });
}

/** The environment for the binary: the token from the input, never on a command line. */
function binaryEnv() {
  const env = { ...process.env };
  const token = input('token');
  if (token) env.AIVEN_TOKEN = token;
  for (const [name, variable] of [['api-url', 'AIVEN_API_URL'], ['project', 'AIVEN_PROJECT']]) {
    if (input(name)) env[variable] = input(name);
  }
  return env;
}

function randomRunId() {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(crypto.randomBytes(8), (b) => alphabet[b % alphabet.length]).join('');
}

/** The names a runner key-value file text sets (`NAME<<DELIM` heredocs, `NAME=value`). */
function namesSet(text) {
  const names = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i += 1) {
    const heredoc = lines[i].match(/^([^=<]+)<<(.+)$/);
    if (heredoc) {
      names.push(heredoc[1]);
      while (i + 1 < lines.length && lines[i + 1] !== heredoc[2]) i += 1;
      i += 1;
    } else if (lines[i].includes('=')) {
      names.push(lines[i].slice(0, lines[i].indexOf('=')));
    }
  }
  return names;
}

module.exports = {
  actionCodeHash, addPath, binaryEnv, booleanInput, fail, getState, input, namesSet, randomRunId, resolveBinary, run,
  saveState, setOutput, warn,
};
