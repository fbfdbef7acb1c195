// The action's post step (runs always): `down` the run main started. It uses the state
// file if it still exists, and the services' tags otherwise (a later actions/checkout
// may have cleaned the workspace).
'use strict';

const lib = require('./lib');

async function post() {
  const binary = lib.getState('binary');
  const runId = lib.getState('run-id');
  if (!binary || !runId) {
    console.log('aiven-ephemeral: main did not start a run; nothing to tear down');
    return;
  }
  if (lib.getState('keep-on-failure') === 'true') {
    console.log('aiven-ephemeral: keep-on-failure is set; a kept run is only deleted by `down --force` or `reap`');
  }
  const args = ['down', '--run-id', runId, '--missing-ok', '--state-file', lib.getState('state-file')];
  if (lib.getState('project')) args.push('--project', lib.getState('project'));
  const env = lib.binaryEnv();
  if (lib.getState('api-url')) env.AIVEN_API_URL = lib.getState('api-url');
  const code = await lib.run(binary, args, env);
  if (code !== 0) lib.fail(`aiven-ephemeral down failed with exit code ${code}: services may be left; run \`aiven-ephemeral reap\``);
  process.exitCode = code;
}

post().catch((e) => lib.fail(e.message));
