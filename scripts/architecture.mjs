#!/usr/bin/env node
// `node scripts/architecture.mjs [--json]`: the measures of issue 36 over the
// source of apps/*/src and packages/*/src (tests and generated files aside),
// parsed with the TypeScript compiler: import cycles (type-only imports
// included), functions and methods longer than 120 lines, files longer than
// 600 lines. Exits 1 when any is found. test/architecture.test.ts keeps it so.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const limits = { functionLines: 120, fileLines: 600 };
const root = fileURLToPath(new URL('..', import.meta.url));

function sourceFiles() {
  const out = [];
  for (const group of ['apps', 'packages']) {
    for (const pkg of readdirSync(join(root, group))) {
      const src = join(root, group, pkg, 'src');
      try {
        if (!statSync(src).isDirectory()) continue;
      } catch {
        continue;
      }
      const walk = (dir) => {
        for (const entry of readdirSync(dir)) {
          const p = join(dir, entry);
          if (statSync(p).isDirectory()) walk(p);
          else if (/\.(ts|tsx)$/.test(entry) && !/\.test\.tsx?$/.test(entry) && !entry.endsWith('.d.ts'))
            out.push(p);
        }
      };
      walk(src);
    }
  }
  return out.sort();
}

/** Every measure, for the given files (default: the repository's source). */
export function measure(files = sourceFiles()) {
  const known = new Set(files);
  const graph = new Map();
  const longFunctions = [];
  const longFiles = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
    const lines = sf.getLineAndCharacterOfPosition(sf.end).line + 1;
    if (lines > limits.fileLines) longFiles.push({ file: relative(root, file), lines });
    const deps = new Set();
    const addSpecifier = (spec) => {
      if (!spec.startsWith('.')) return;
      let target = resolve(dirname(file), spec);
      if (!target.match(/\.(ts|tsx)$/)) {
        for (const c of [`${target}.ts`, `${target}.tsx`, join(target, 'index.ts')]) {
          if (known.has(c)) {
            target = c;
            break;
          }
        }
      }
      if (target.endsWith('.js')) target = target.replace(/\.js$/, '.ts');
      if (known.has(target)) deps.add(target);
    };
    const visit = (node) => {
      if (
        (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
        node.moduleSpecifier &&
        ts.isStringLiteral(node.moduleSpecifier)
      ) {
        addSpecifier(node.moduleSpecifier.text);
      }
      if (
        ts.isCallExpression(node) &&
        node.expression.kind === ts.SyntaxKind.ImportKeyword &&
        node.arguments[0] &&
        ts.isStringLiteral(node.arguments[0])
      ) {
        addSpecifier(node.arguments[0].text);
      }
      if (
        ts.isImportTypeNode(node) &&
        ts.isLiteralTypeNode(node.argument) &&
        ts.isStringLiteral(node.argument.literal)
      ) {
        addSpecifier(node.argument.literal.text);
      }
      const isFunction =
        ts.isFunctionDeclaration(node) ||
        ts.isMethodDeclaration(node) ||
        ts.isFunctionExpression(node) ||
        ts.isArrowFunction(node) ||
        ts.isConstructorDeclaration(node) ||
        ts.isGetAccessorDeclaration(node) ||
        ts.isSetAccessorDeclaration(node);
      if (isFunction && node.body) {
        const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
        const end = sf.getLineAndCharacterOfPosition(node.end).line;
        const n = end - start + 1;
        if (n > limits.functionLines) {
          longFunctions.push({
            file: relative(root, file),
            line: start + 1,
            name: functionName(node, sf),
            lines: n,
          });
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
    graph.set(file, deps);
  }
  return {
    files: files.length,
    cycles: cycles(graph).map((c) => c.map((f) => relative(root, f))),
    longFunctions,
    longFiles,
  };
}

function functionName(node, sf) {
  if (node.name) return node.name.getText(sf);
  const parent = node.parent;
  if (
    parent &&
    (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))
  )
    return parent.name.getText(sf);
  if (parent && ts.isCallExpression(parent))
    return `(callback of ${parent.expression.getText(sf).slice(0, 40)})`;
  return '(anonymous)';
}

/** The strongly connected components of more than one file (Tarjan), each a cycle of imports. */
function cycles(graph) {
  let index = 0;
  const stack = [];
  const on = new Set();
  const idx = new Map();
  const low = new Map();
  const out = [];
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index += 1;
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || graph.get(v)?.has(v)) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) strong(v);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const m = measure();
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(m, null, 2)}\n`);
  } else {
    console.log(`${m.files} source files`);
    console.log(`import cycles: ${m.cycles.length}`);
    for (const c of m.cycles) console.log(`  ${c.length} files: ${c.join(', ')}`);
    console.log(`functions over ${limits.functionLines} lines: ${m.longFunctions.length}`);
    for (const f of m.longFunctions) console.log(`  ${f.file}:${f.line} ${f.name} (${f.lines} lines)`);
    console.log(`files over ${limits.fileLines} lines: ${m.longFiles.length}`);
    for (const f of m.longFiles) console.log(`  ${f.file} (${f.lines} lines)`);
  }
  process.exit(m.cycles.length + m.longFunctions.length + m.longFiles.length > 0 ? 1 : 0);
}
