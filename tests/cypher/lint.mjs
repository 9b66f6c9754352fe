// Lint Cypher statements with Neo4j's own Cypher front end (@neo4j-cypher/language-support).
//
// stdin:  a JSON array of {name, query, parameters}, or
//         {"schema": {labels, relationshipTypes, propertyKeys}, "statements": [...]}
// stdout: {"tool": {...}, "results": [{name, diagnostics: [{severity, message, line, column}]}]}
//         severity 1 = error, 2 = warning (LSP numbering).
//
// Each statement's parameters become dbSchema.parameters, so "Parameter $x is not defined"
// means the statement really uses a parameter its builder does not pass. The built-in
// function and procedure signatures (Neo4j 5) come from the package's own data, so calls are
// type-checked and deprecated functions are reported.
//
// Analysis costs ~0.1 s per statement, so the statements are split over worker threads
// (one per core, at most 4) to keep the whole run within a few seconds.
//
// The package's semantic analysis swallows its own internal failures (it then reports
// nothing), so before trusting an empty result we check that known-bad queries are caught.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { lintCypherQuery, testData } from '@neo4j-cypher/language-support';

// The package does not export its package.json; read the installed copy beside this script.
const { version } = JSON.parse(
  readFileSync(
    new URL('./node_modules/@neo4j-cypher/language-support/package.json', import.meta.url),
    'utf8',
  ),
);

function baseSchema(extra) {
  const mock = testData.mockSchema;
  return {
    functions: mock.functions,
    procedures: mock.procedures,
    defaultLanguage: 'CYPHER 5',
    ...extra,
  };
}

function lint(query, parameters, extra) {
  const { diagnostics } = lintCypherQuery(query, baseSchema({ ...extra, parameters }));
  return diagnostics.map((d) => ({
    severity: d.severity,
    message: d.message,
    line: d.range.start.line + 1,
    column: d.range.start.character + 1,
  }));
}

function selfCheck() {
  const mustFail = [
    ['undefined variable', 'MATCH (n) RETURN m', {}],
    ['undefined parameter', 'MATCH (n) WHERE n.id = $nope RETURN n', {}],
    ['syntax error', 'MATCH (n RETURN n', {}],
    ['type error', 'RETURN 1 + true AS x', {}],
  ];
  for (const [what, query, params] of mustFail) {
    if (!lint(query, params, {}).some((d) => d.severity === 1)) {
      throw new Error(`linter self-check failed: ${what} not reported for: ${query}`);
    }
  }
  if (lint('MATCH (n) RETURN n.id AS id', {}, {}).some((d) => d.severity === 1)) {
    throw new Error('linter self-check failed: a valid query was reported as an error');
  }
}

function lintAll(statements, extra) {
  return statements.map(({ name, query, parameters }) => ({
    name,
    diagnostics: lint(query, parameters ?? {}, extra),
  }));
}

function inWorkers(statements, extra, count) {
  const size = Math.ceil(statements.length / count);
  const parts = [];
  for (let i = 0; i < statements.length; i += size) parts.push(statements.slice(i, i + size));
  return Promise.all(
    parts.map(
      (part) =>
        new Promise((resolve, reject) => {
          const worker = new Worker(new URL(import.meta.url), {
            workerData: { statements: part, extra },
          });
          worker.once('message', resolve);
          worker.once('error', reject);
          worker.once('exit', (code) => {
            if (code !== 0) reject(new Error(`lint worker exited with code ${code}`));
          });
        }),
    ),
  ).then((results) => results.flat());
}

async function main() {
  const input = JSON.parse(readFileSync(0, 'utf8'));
  const statements = Array.isArray(input) ? input : input.statements;
  const extra = Array.isArray(input) ? {} : (input.schema ?? {});
  selfCheck();
  const count = Math.min(4, availableParallelism(), Math.ceil(statements.length / 16));
  const results =
    count > 1 ? await inWorkers(statements, extra, count) : lintAll(statements, extra);
  process.stdout.write(
    JSON.stringify({
      tool: { package: '@neo4j-cypher/language-support', version, node: process.version },
      results,
    }),
  );
}

if (isMainThread) {
  main().catch((error) => {
    process.stderr.write(`${error.stack ?? error}\n`);
    process.exit(2);
  });
} else {
  parentPort.postMessage(lintAll(workerData.statements, workerData.extra));
}
