// Shared by main.js and post.js. Node's built-in modules only: nothing to install,
// no node_modules to commit.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const REPO = 'aiven-ephemeral/aiven-ephemeral';

/** An input as the runner passes it: INPUT_<NAME>, upper case, hyphens kept. */
function input(name) {
  const value = process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] || '';
  return value.trim();
}

/** Workflow-command escaping, as the runner expects it. */
function escapeData(s) {
  return String(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
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

function download(url, redirects = 5) {
  return new Promise((resolve, reject) => {
    https.get(url, { headers: { 'user-agent': 'aiven-ephemeral-action' } }, (res) => {
      if ([301, 302, 303, 307, 308].includes(res.statusCode) && res.headers.location && redirects > 0) {
        res.resume();
        resolve(download(new URL(res.headers.location, url).toString(), redirects - 1));
        return;
      }
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
        return;
      }
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** Checksums pinned in the action at release time, when present. */
function pinnedChecksum(version, asset) {
  try {
    const pinned = JSON.parse(fs.readFileSync(path.join(__dirname, 'checksums.json'), 'utf8'));
    return (pinned[version] || {})[asset];
  } catch {
    return undefined;
  }
}

/** The binary: input `binary`, else the release `version` (default: this action's). */
async function resolveBinary() {
  const local = input('binary');
  if (local) {
    const resolved = path.resolve(local);
    if (!fs.existsSync(resolved)) throw new Error(`input binary: ${resolved} does not exist`);
    return resolved;
  }
  let version = input('version');
  if (!version && /^v\d/.test(process.env.GITHUB_ACTION_REF || '')) version = process.env.GITHUB_ACTION_REF;
  if (!version) throw new Error('set input `version` (a release such as v1.0.0) or `binary`');
  const exe = process.platform === 'win32' ? '.exe' : '';
  const asset = `aiven-ephemeral-${target()}${exe}`;
  const dir = path.join(process.env.RUNNER_TOOL_CACHE || os.tmpdir(), 'aiven-ephemeral', version, target());
  const binary = path.join(dir, `aiven-ephemeral${exe}`);
  if (fs.existsSync(binary)) return binary;
  const base = `https://github.com/${REPO}/releases/download/${version}`;
  const [body, published] = await Promise.all([
    download(`${base}/${asset}`),
    pinnedChecksum(version, asset) ? Promise.resolve(null) : download(`${base}/${asset}.sha256`),
  ]);
  const expected = (pinnedChecksum(version, asset) || published.toString('utf8').trim().split(/\s+/)[0]).toLowerCase();
  const actual = crypto.createHash('sha256').update(body).digest('hex');
  if (actual !== expected) throw new Error(`checksum mismatch for ${asset}: expected ${expected}, got ${actual}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(binary, body, { mode: 0o755 });
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

module.exports = {
  appendKeyValue, binaryEnv, escapeData, fail, getState, input, randomRunId, resolveBinary, run, saveState,
};
