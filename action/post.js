// The action's post step (runs always): `down` the run main started. It uses the state
// file if it still exists, and the services' tags otherwise (a later actions/checkout
// may have cleaned the workspace).
'use strict';

const lib = require('./lib');

async function post() {
  const binary = lib.getState('binary');
  const runId = lib.getState('run-id');
  if (!binary || !runId || lib.getState('created') === 'nothing') {
    console.log('aiven-ephemeral: main created no service; nothing to tear down');
    return;
  }
  if (lib.getState('reuse') === 'true') {
    console.log(`aiven-ephemeral: run ${runId} is the pull request's environment (reuse): it stays for later pushes; `
      + 'the workflow on `pull_request: closed` deletes it, `reap` once it expires');
    return;
  }
  // job-status defaults to ${{ job.status }}, which the runner evaluates again for post.
  if (lib.getState('keep-on-failure') === 'true' && lib.input('job-status') === 'failure') {
    console.log(`::warning::aiven-ephemeral: the job failed and keep-on-failure is set: run ${runId} is kept for debugging. `
      + `It is deleted by \`aiven-ephemeral down --force --run-id ${runId}\`, or by \`reap\` once its ttl passes.`);
    return;
  }
  const args = ['down', '--run-id', runId, '--missing-ok', '--state-file', lib.getState('state-file'),
    '--teardown-timeout', lib.input('teardown-timeout') || '4m'];
  // `up` marked the run kept when it failed, yet the job did not fail (continue-on-error):
  // keep-on-failure is about the job, so the run goes.
  if (lib.getState('keep-on-failure') === 'true') args.push('--force');
  if (lib.getState('project')) args.push('--project', lib.getState('project'));
  const env = lib.binaryEnv();
  if (lib.getState('api-url')) env.AIVEN_API_URL = lib.getState('api-url');
  const code = await lib.run(binary, args, env);
  if (code !== 0) lib.fail(`aiven-ephemeral down failed with exit code ${code}: services may be left; run \`aiven-ephemeral reap\``);
  process.exitCode = code;
}

post().catch((e) => lib.fail(e.message));
