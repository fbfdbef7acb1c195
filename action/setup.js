// The setup action (uses: aiven-ephemeral/aiven-ephemeral/setup@v1): the same checked
// binary as the main action, put on PATH for the job's own steps, with no `up` and no
// post. For jobs that only run `reap` or `down` (a schedule, a pull request's close).
'use strict';

const path = require('node:path');
const lib = require('./lib');

async function main() {
  const binary = await lib.resolveBinary();
  lib.addPath(path.dirname(binary));
  lib.setOutput('path', binary);
  const code = await lib.run(binary, ['--version'], process.env);
  if (code !== 0) lib.fail(`${binary} --version failed with exit code ${code}`);
}

main().catch((e) => lib.fail(e.message));
