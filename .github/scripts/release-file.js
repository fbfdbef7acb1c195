// The release workflow's step that writes action/release.json: the release the action
// runs by default, the SHA-256 of every asset of every release so far (input `version`
// may pick an earlier one), and that of the action's code. The action trusts only these
// committed checksums.
//   node .github/scripts/release-file.js v1.2.3 dist/
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const [version, dist] = process.argv.slice(2);
if (!/^v\d+\.\d+\.\d+$/.test(version || '') || !dist) {
  console.error('usage: release-file.js vMAJOR.MINOR.PATCH DIR');
  process.exit(2);
}
const file = path.join(__dirname, '..', '..', 'action', 'release.json');
const release = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : { releases: {} };
const checksums = {};
for (const name of fs.readdirSync(dist).sort()) {
  if (!name.startsWith('aiven-ephemeral-') || name.endsWith('.sha256')) continue;
  checksums[name] = crypto.createHash('sha256').update(fs.readFileSync(path.join(dist, name))).digest('hex');
}
if (!Object.keys(checksums).length) {
  console.error(`no aiven-ephemeral-* assets in ${dist}`);
  process.exit(1);
}
release.version = version;
// The code this release's binary goes with: the action warns when it runs other code
// (at a branch or commit after the release) with this binary.
release.action_sha256 = require('../../action/lib.js').actionCodeHash();
release.releases = { ...release.releases, [version]: checksums };
fs.writeFileSync(file, `${JSON.stringify(release, null, 2)}\n`);
console.log(`${file}: ${version} with ${Object.keys(checksums).join(', ')}`);
