/**
 * Finds dead exports: an `export` of src/ (or of the test helpers:
 * test/helpers/*.ts, test/fixtures/*.ts and the conformance suites'
 * shared modules) that no other file of src, test, bench, scripts or
 * bin uses. Run it with Node 24 (`node scripts/dead-exports.ts`): it prints
 * one line per dead export and exits 1 if there is any; test/unit/
 * dead-exports.test.ts runs it, so a new dead export fails the suite.
 *
 * What counts as a use, with the TypeScript compiler's symbols (imports
 * renamed, re-exported or reached through a namespace or a dynamic import
 * are followed to the declaration):
 * - any reference from another file: an import, a re-export (which is then
 *   checked itself in its own module), a property of an `import()`, a type;
 *   a `const { A } = await import(...)` of a path the compiler cannot type
 *   (a URL into dist/) counts for the src/ module it names;
 * - everything exported by the public entry modules: the package's
 *   `exports` (coffer/sdk and all it re-exports, for plugin authors), the
 *   CLI's main.ts and run.ts, and vitest's global setup; src/plugins is not
 *   checked (example plugins);
 * - the type rule: an exported type (or value named by `typeof`) that a
 *   used export of the same module names in its signature (parameter,
 *   return, property or heritage types, not bodies or initialisers) is used,
 *   so that callers can name what they pass.
 * Each finding says whether its module uses the name itself (then drop the
 * `export`) or not at all (then delete the code).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import ts from "typescript";

export interface DeadExport {
  /** The module, relative to the root, with "/" separators. */
  file: string;
  line: number;
  name: string;
  /** The module refers to it itself: drop the `export` keyword rather than the code. */
  usedInModule: boolean;
}

/** The folders whose files may use an export. */
const SCANNED = ["src", "test", "bench", "scripts", "bin"];
/** The modules whose exports are checked (the brief's scope); entries and src/plugins are not. */
const CHECKED = [/^src\/.*\.ts$/, /^test\/(helpers|fixtures)\/[^/]*\.ts$/, /^test\/conformance\/[^/]*(?<!\.test)\.ts$/];
const UNCHECKED = [/^src\/plugins\//, /\.d\.ts$/];
/** Entry modules besides the package's `exports`: the CLI's, and vitest's global setup. */
const ENTRIES = ["src/cli/main.ts", "src/cli/run.ts", "test/helpers/global-cache.ts"];
const SOURCE = /\.(ts|mts|js|mjs)$/;

function walk(root: string, dir: string, out: string[]): void {
  const abs = path.join(root, dir);
  if (!existsSync(abs)) return;
  for (const e of readdirSync(abs, { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) {
      if (e.name !== "node_modules" && e.name !== "results") walk(root, rel, out);
    } else if (SOURCE.test(e.name)) out.push(rel);
  }
}

/** A module under dist/ (the build of src/) as its source: dist/a/b.js is src/a/b.ts. */
function sourceOfBuilt(root: string, abs: string): string | undefined {
  const rel = path.relative(root, abs).split(path.sep).join("/");
  if (!rel.startsWith("dist/")) return undefined;
  const src = path.join(root, "src", rel.slice("dist/".length).replace(/\.js$/, ".ts"));
  return existsSync(src) ? src : undefined;
}

/** The src/ modules the package.json `exports` map publishes (their dist/ targets mapped back to src/). */
function packageEntries(root: string): string[] {
  const file = path.join(root, "package.json");
  if (!existsSync(file)) return [];
  const targets: string[] = [];
  const collect = (v: unknown): void => {
    if (typeof v === "string") targets.push(v);
    else if (v !== null && typeof v === "object") for (const x of Object.values(v)) collect(x);
  };
  collect((JSON.parse(readFileSync(file, "utf8")) as { exports?: unknown }).exports);
  const out = new Set<string>();
  for (const t of targets) {
    const src = sourceOfBuilt(root, path.join(root, t));
    if (src !== undefined) out.add(path.relative(root, src).split(path.sep).join("/"));
  }
  return [...out];
}

function compilerOptions(root: string): ts.CompilerOptions {
  const file = path.join(root, "tsconfig.json");
  const base: ts.CompilerOptions = { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2024 };
  let options = base;
  if (existsSync(file)) {
    const read = ts.readConfigFile(file, (f) => ts.sys.readFile(f));
    options = ts.parseJsonConfigFileContent(read.config, ts.sys, root).options;
  }
  return { ...options, allowJs: true, checkJs: false, noEmit: true, skipLibCheck: true, allowImportingTsExtensions: true };
}

/** A compiler host that resolves dist/ imports (bin/, the .mjs fixtures) to the src/ modules they are built from. */
function hostFor(root: string, options: ts.CompilerOptions): ts.CompilerHost {
  const host = ts.createCompilerHost(options, true);
  host.resolveModuleNameLiterals = (literals, containingFile, _redirect, opts) =>
    literals.map((lit) => {
      const name = lit.text;
      if (name.startsWith(".")) {
        const src = sourceOfBuilt(root, path.resolve(path.dirname(containingFile), name));
        if (src !== undefined) return { resolvedModule: { resolvedFileName: src, extension: ts.Extension.Ts, isExternalLibraryImport: false } };
      }
      return ts.resolveModuleName(name, containingFile, opts, host);
    });
  return host;
}

/** Whether `node` lies in a part of a declaration that its signature (its .d.ts) leaves out: a body or an initialiser. */
function outsideSignature(node: ts.Node, decl: ts.Node): boolean {
  for (let n: ts.Node = node; n !== decl; n = n.parent) {
    const p = n.parent;
    if (ts.isFunctionLike(p) && "body" in p && p.body === n) return true;
    if ((ts.isVariableDeclaration(p) || ts.isPropertyDeclaration(p) || ts.isParameter(p) || ts.isEnumMember(p)) && p.initializer === n) return true;
    if (ts.isClassStaticBlockDeclaration(p)) return true;
    if (ts.isClassElement(n) && ts.getCombinedModifierFlags(n as ts.Declaration) & ts.ModifierFlags.Private) return true;
    if (ts.isClassElement(n) && n.name !== undefined && ts.isPrivateIdentifier(n.name)) return true;
  }
  return false;
}

export function findDeadExports(root: string): DeadExport[] {
  root = path.resolve(root);
  const files: string[] = [];
  for (const d of SCANNED) walk(root, d, files);
  const options = compilerOptions(root);
  const program = ts.createProgram(
    files.map((f) => path.join(root, f)),
    options,
    hostFor(root, options),
  );
  const checker = program.getTypeChecker();
  const relOf = (sf: ts.SourceFile) => path.relative(root, sf.fileName).split(path.sep).join("/");
  const sources = program.getSourceFiles().filter((sf) => !sf.fileName.includes("/node_modules/") && !path.relative(root, sf.fileName).startsWith(".."));
  const byRel = new Map(sources.map((sf) => [relOf(sf), sf]));
  const fileOf = (s: ts.Symbol) => s.declarations?.[0]?.getSourceFile();
  const exportsOf = (sf: ts.SourceFile): ts.Symbol[] => {
    const m = checker.getSymbolAtLocation(sf);
    return m === undefined ? [] : checker.getExportsOfModule(m);
  };
  /** A module's own name for an exported declaration, as its module's exports list it. */
  const exportSymbolOf = (s: ts.Symbol | undefined): ts.Symbol | undefined => (s !== undefined && s.flags & ts.SymbolFlags.ExportValue ? checker.getExportSymbolOfSymbol(s) : s);
  /** What a name finally denotes: `export { X }` of an imported X and X itself denote the same declaration. */
  const target = (s: ts.Symbol | undefined): ts.Symbol | undefined => {
    s = exportSymbolOf(s);
    return s !== undefined && s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
  };

  const usedElsewhere = new Set<ts.Symbol>();
  const usedInOwnFile = new Set<ts.Symbol>();
  /** Records a use of `s` from `from` (null: from outside, for an entry), through each alias hop to its declaration. */
  const use = (s: ts.Symbol | undefined, from: ts.SourceFile | null, at?: ts.Node): void => {
    const seen = new Set<ts.Symbol>();
    for (s = exportSymbolOf(s); s !== undefined && !seen.has(s); s = s.flags & ts.SymbolFlags.Alias ? exportSymbolOf(checker.getImmediateAliasedSymbol(s)) : undefined) {
      seen.add(s);
      const own = fileOf(s);
      if (own !== undefined && own !== from) usedElsewhere.add(s);
      else if (!(at !== undefined && s.declarations?.some((d) => ts.getNameOfDeclaration(d) === at))) usedInOwnFile.add(s);
    }
  };
  const bindingNames = (pattern: ts.ObjectBindingPattern): string[] =>
    pattern.elements.flatMap((el) => {
      const key = el.propertyName ?? el.name;
      return ts.isIdentifier(key) ? [key.text] : [];
    });

  /** Source modules named by string literals in `expr`: a path relative to the file (into src/ or dist/), or one below a helper's base (`dist("util/hex.js")`). */
  const modulesNamedIn = (expr: ts.Node, sf: ts.SourceFile): ts.SourceFile[] => {
    const out: ts.SourceFile[] = [];
    const visit = (n: ts.Node): void => {
      if ((ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) && /\.(js|ts)$/.test(n.text)) {
        if (n.text.startsWith(".")) {
          const abs = path.resolve(path.dirname(sf.fileName), n.text);
          const src = sourceOfBuilt(root, abs) ?? [abs, abs.replace(/\.js$/, ".ts")].find((f) => existsSync(f));
          const hit = src === undefined ? undefined : byRel.get(path.relative(root, src).split(path.sep).join("/"));
          if (hit !== undefined) out.push(hit);
        } else {
          const tail = `/${n.text.replace(/^dist\//, "").replace(/\.js$/, ".ts")}`;
          for (const [rel, f] of byRel) if (rel.startsWith("src/") && `/${rel}`.endsWith(tail)) out.push(f);
        }
      }
      ts.forEachChild(n, visit);
    };
    visit(expr);
    return out;
  };

  for (const sf of sources) {
    const visit = (node: ts.Node): void => {
      if (ts.isIdentifier(node)) {
        use(checker.getSymbolAtLocation(node), sf, node);
        const p = node.parent;
        if (ts.isShorthandPropertyAssignment(p) && p.name === node) use(checker.getShorthandAssignmentValueSymbol(p), sf);
      } else if (ts.isObjectBindingPattern(node) && ts.isVariableDeclaration(node.parent) && node.parent.initializer !== undefined) {
        // `const { A } = await import(...)`: A of the module's namespace, or, when the compiler cannot type the import, of the module its path names.
        const init = node.parent.initializer;
        const type = checker.getTypeAtLocation(node);
        for (const name of bindingNames(node)) use(type.getProperty(name), sf);
        if (checker.getTypeAtLocation(init).flags & ts.TypeFlags.Any) {
          for (const mod of modulesNamedIn(init, sf)) {
            const exports = exportsOf(mod);
            for (const name of bindingNames(node)) use(exports.find((e) => e.name === name), sf);
          }
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  const entries = new Set([...packageEntries(root), ...ENTRIES]);
  for (const rel of entries) {
    const sf = byRel.get(rel);
    if (sf !== undefined) for (const e of exportsOf(sf)) use(e, null);
  }

  /** The exports of a module used from elsewhere, and (the type rule) those their signatures name, to a fixpoint. */
  const liveExports = (own: ts.Symbol[]): Set<ts.Symbol> => {
    const live = new Set(own.filter((e) => usedElsewhere.has(e)));
    const byTarget = new Map(own.map((e) => [target(e), e]));
    const pending = [...live];
    for (let e = pending.pop(); e !== undefined; e = pending.pop()) {
      for (const decl of e.declarations ?? []) {
        const visit = (n: ts.Node): void => {
          if (ts.isIdentifier(n) && n !== ts.getNameOfDeclaration(decl) && !outsideSignature(n, decl)) {
            const named = byTarget.get(target(checker.getSymbolAtLocation(n)));
            if (named !== undefined && !live.has(named)) {
              live.add(named);
              pending.push(named);
            }
          }
          ts.forEachChild(n, visit);
        };
        visit(decl);
      }
    }
    return live;
  };

  const found: DeadExport[] = [];
  for (const sf of sources) {
    const rel = relOf(sf);
    if (entries.has(rel) || !CHECKED.some((r) => r.test(rel)) || UNCHECKED.some((r) => r.test(rel))) continue;
    // The exports declared here, not those an `export *` brings in.
    const own = exportsOf(sf).filter((e) => fileOf(e) === sf);
    const live = liveExports(own);
    for (const e of own) {
      if (live.has(e)) continue;
      const decl = e.declarations![0]!;
      found.push({ file: rel, line: sf.getLineAndCharacterOfPosition(decl.getStart()).line + 1, name: e.name, usedInModule: usedInOwnFile.has(e) });
    }
  }
  return found.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
}

if (import.meta.main) {
  const dead = findDeadExports(process.argv[2] ?? process.cwd());
  for (const d of dead) process.stdout.write(`${d.file}:${d.line}: ${d.name} ${d.usedInModule ? "is used only in its module (drop `export`)" : "is not used (delete it)"}\n`);
  process.exitCode = dead.length > 0 ? 1 : 0;
}
