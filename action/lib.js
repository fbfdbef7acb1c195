// Shared by main.js and post.js. Node's built-in modules only: nothing to install,
// no node_modules to commit.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
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
  const client = new URL(url).protocol === 'http:' ? http : https;
  return new Promise((resolve, reject) => {
    client.get(url, { headers: { 'user-agent': 'aiven-ephemeral-action' } }, (res) => {
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

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
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

module.exports = {
  binaryEnv, booleanInput, fail, getState, input, randomRunId, resolveBinary, run, saveState, setOutput,
};
