// The action's main step: resolve the binary, run `up`, and save what `post` needs
// before anything is created, so that post can clean up even if this step is killed.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const lib = require('./lib');

async function main() {
  const binary = await lib.resolveBinary();
  const runId = lib.input('run-id') || lib.randomRunId();
  const stateFile = path.resolve(lib.input('state-file') || '.aiven-ephemeral/state.json');
  const manifest = path.resolve(lib.input('manifest') || 'aiven-ephemeral.yaml');
  let project = lib.input('project');
  if (!project && fs.existsSync(manifest)) {
    const m = fs.readFileSync(manifest, 'utf8').match(/^project:\s*["']?([a-z][-a-z0-9]*)["']?\s*(#.*)?$/m);
    if (m) project = m[1];
  }
  lib.saveState('binary', binary);
  lib.saveState('run-id', runId);
  lib.saveState('state-file', stateFile);
  lib.saveState('project', project || '');
  lib.saveState('api-url', lib.input('api-url'));
  lib.saveState('keep-on-failure', lib.input('keep-on-failure'));

  const args = ['up', '-f', manifest, '--run-id', runId, '--state-file', stateFile,
    '--timeout', lib.input('timeout') || '20m', '--github-env', lib.input('github-env') || 'all'];
  if (lib.input('env-file')) args.push('--env-file', path.resolve(lib.input('env-file')));
  if (lib.input('keep-on-failure') === 'true') args.push('--keep-on-failure');
  const code = await lib.run(binary, args, lib.binaryEnv());
  if (code !== 0) lib.fail(`aiven-ephemeral up failed with exit code ${code}`);
  process.exitCode = code;
}

main().catch((e) => lib.fail(e.message));
