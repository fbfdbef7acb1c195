// The release workflow's steps that talk to GitHub's releases API (GITHUB_API_URL,
// GITHUB_REPOSITORY and GH_TOKEN, as the runner and the workflow set them):
//   node .github/scripts/github-release.js state vX.Y.Z        published | draft | none
//   node .github/scripts/github-release.js draft vX.Y.Z DIR    a draft with DIR's assets
//   node .github/scripts/github-release.js publish vX.Y.Z      the draft made public
// A draft and its assets are invisible to users: the assets are all there before the
// release (and its download URLs) is.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const api = (process.env.GITHUB_API_URL || 'https://api.github.com').replace(/\/+$/, '');
const repo = process.env.GITHUB_REPOSITORY;
const headers = {
  accept: 'application/vnd.github+json',
  authorization: `Bearer ${process.env.GH_TOKEN || ''}`,
  'x-github-api-version': '2022-11-28',
  'user-agent': 'aiven-ephemeral-release',
};

async function call(method, url, body, contentType = 'application/json') {
  const res = await fetch(url.startsWith('http') ? url : `${api}${url}`, {
    method,
    headers: body === undefined ? headers : { ...headers, 'content-type': contentType },
    body: body === undefined || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${url}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The release of this tag, drafts included (the list shows them to who may push). */
async function find(tag) {
  const releases = await call('GET', `/repos/${repo}/releases?per_page=100`);
  return releases.find((r) => r.tag_name === tag);
}

async function main() {
  const [command, tag, dir] = process.argv.slice(2);
  if (!repo || !/^v\d+\.\d+\.\d+$/.test(tag || '')) {
    throw new Error('usage: github-release.js state|draft|publish vMAJOR.MINOR.PATCH [DIR] (GITHUB_REPOSITORY set)');
  }
  const release = await find(tag);
  if (command === 'state') {
    console.log(release ? (release.draft ? 'draft' : 'published') : 'none');
  } else if (command === 'draft' && dir) {
    if (release && !release.draft) throw new Error(`release ${tag} is published already`);
    // A draft of an attempt that did not finish is started over.
    if (release) await call('DELETE', `/repos/${repo}/releases/${release.id}`);
    const draft = await call('POST', `/repos/${repo}/releases`, {
      tag_name: tag, name: tag, draft: true, generate_release_notes: true,
    });
    const upload = draft.upload_url.replace(/\{.*\}$/, '');
    for (const name of fs.readdirSync(dir).filter((n) => n.startsWith('aiven-ephemeral-')).sort()) {
      const bytes = fs.readFileSync(path.join(dir, name));
      await call('POST', `${upload}?name=${encodeURIComponent(name)}`, bytes, 'application/octet-stream');
      console.log(`${tag}: ${name} uploaded to the draft`);
    }
  } else if (command === 'publish') {
    if (!release || !release.draft) throw new Error(`release ${tag} has no draft to publish`);
    await call('PATCH', `/repos/${repo}/releases/${release.id}`, { draft: false, make_latest: 'true' });
    console.log(`${tag}: published`);
  } else {
    throw new Error(`unknown command ${command}`);
  }
}

main().catch((e) => {
  console.log(`::error::${e.message}`);
  process.exitCode = 1;
});
