// The schemas under schemas/ (dumped from the services' pydantic models by dump_schemas.py)
// as TypeScript under src/generated/, with json-schema-to-typescript.
//
//   node scripts/gen-types.mjs           rewrite src/generated/*.ts
//   node scripts/gen-types.mjs --check   exit 1 when they differ from what the schemas give
import { readFileSync, writeFileSync, readdirSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const schemas = join(root, 'schemas');
const out = join(root, 'src', 'generated');
const check = process.argv.includes('--check');

const banner = (file) =>
  `/* eslint-disable */\n// Generated from schemas/${file} by scripts/gen-types.mjs (json-schema-to-typescript).\n` +
  '// Do not edit: change the pydantic models, then run `make sdk-types`.\n';

mkdirSync(out, { recursive: true });
const stale = [];
for (const file of readdirSync(schemas).filter((f) => f.endsWith('.schema.json')).sort()) {
  const schema = JSON.parse(readFileSync(join(schemas, file), 'utf8'));
  const ts = await compile(schema, schema.title, {
    bannerComment: banner(file),
    additionalProperties: false,
    unreachableDefinitions: true,
    declareExternallyReferenced: true,
    ignoreMinAndMaxItems: true,
    format: true,
    style: { singleQuote: true, printWidth: 110 },
  });
  const target = join(out, file.replace('.schema.json', '.ts'));
  if (check) {
    if (!existsSync(target) || readFileSync(target, 'utf8') !== ts) stale.push(target);
  } else {
    writeFileSync(target, ts);
  }
}
if (stale.length) {
  console.error(`stale generated types (run \`make sdk-types\`): ${stale.join(', ')}`);
  process.exit(1);
}
