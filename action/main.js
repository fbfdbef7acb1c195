// The action's main step: resolve the binary, run `up`, and save what `post` needs
// before anything is created, so that post can clean up even if this step is killed.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const lib = require('./lib');

/** The state file's text, or null where there is none. */
function readState(stateFile) {
  try {
    return fs.readFileSync(stateFile, 'utf8');
  } catch {
    return null;
  }
}

/**
 * Whether this `up` recorded a service: only then can something exist. The file must be
 * one `up` wrote (not what an earlier run left); its run id is not compared, as `up`
 * records a shortened one for an input over 20 characters.
 */
function recordedServices(before, after) {
  if (after === null || after === before) return false;
  try {
    const state = JSON.parse(after);
    return Array.isArray(state.services) && state.services.length > 0;
  } catch {
    return false;
  }
}

async function main() {
  const runId = lib.input('run-id') || lib.randomRunId();
  // Each use of the action gets its own directory by default, so that two uses in one job
  // do not share a state file.
  const stateFile = path.resolve(lib.input('state-file') || path.join('.aiven-ephemeral', runId, 'state.json'));
  const envFile = path.resolve(lib.input('env-file') || path.join(path.dirname(stateFile), 'env'));
  // Known before anything runs: later steps (and `if: failure()` ones) can use them.
  lib.setOutput('run-id', runId);
  lib.setOutput('state-file', stateFile);
  lib.setOutput('env-file', envFile);

  const keepOnFailure = lib.booleanInput('keep-on-failure');
  // A pull request's environment outlives the job: post leaves it to the close.
  const reuse = lib.booleanInput('reuse');
  if (reuse && !lib.input('run-id')) throw new Error('input reuse: needs a run-id stable for the pull request, e.g. pr-${{ github.event.pull_request.number }}');
  const binary = await lib.resolveBinary();
  // Later steps can run `aiven-ephemeral status`, `check`, `up --reset`, ... themselves.
  lib.addPath(path.dirname(binary));
  const manifest = path.resolve(lib.input('manifest') || 'aiven-ephemeral.yaml');
  let project = lib.input('project');
  if (!project && fs.existsSync(manifest)) {
    const m = fs.readFileSync(manifest, 'utf8').match(/^project:\s*["']?([a-z][-a-z0-9]*)["']?\s*(#.*)?$/m);
    if (m) project = m[1];
  }
  // Saved before `up` starts: if this step is killed mid-create, post still has the run.
  lib.saveState('binary', binary);
  lib.saveState('run-id', runId);
  lib.saveState('state-file', stateFile);
  lib.saveState('project', project || '');
  lib.saveState('api-url', lib.input('api-url'));
  lib.saveState('keep-on-failure', String(keepOnFailure));
  lib.saveState('reuse', String(reuse));

  const args = ['up', '-f', manifest, '--run-id', runId, '--state-file', stateFile, '--env-file', envFile,
    '--timeout', lib.input('timeout') || '20m', '--teardown-timeout', lib.input('teardown-timeout') || '4m', '--github-env', lib.input('github-env') || 'all'];
  if (keepOnFailure) args.push('--keep-on-failure');
  if (reuse) args.push('--reuse');
  // What earlier steps set (another use of this action, say) is in this step's
  // environment; what `up` appends to $GITHUB_ENV overrides it for the steps after.
  const githubEnv = process.env.GITHUB_ENV;
  const envBefore = githubEnv && fs.existsSync(githubEnv) ? fs.statSync(githubEnv).size : 0;
  const stateBefore = readState(stateFile);
  const code = await lib.run(binary, args, lib.binaryEnv());
  if (githubEnv && fs.existsSync(githubEnv)) {
    const appended = fs.readFileSync(githubEnv).subarray(envBefore).toString('utf8');
    const overwritten = lib.namesSet(appended).filter((name) => process.env[name] !== undefined);
    if (overwritten.length) {
      lib.warn(`${overwritten.join(', ')} were set by an earlier step (another use of this action?) and are `
        + 'now this run\'s: the steps after see only these. Give the services of one use an `env_prefix` '
        + 'in its manifest, or set `github-env: none` on it and read its env-file');
    }
  }
  if (!recordedServices(stateBefore, readState(stateFile))) lib.saveState('created', 'nothing');
  if (code !== 0) lib.fail(`aiven-ephemeral up failed with exit code ${code}`);
  process.exitCode = code;
}

main().catch((e) => lib.fail(e.message));
