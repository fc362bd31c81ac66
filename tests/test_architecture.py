"""The architecture of src/offload: imports flow one way, modules keep their underscore names to
themselves, and ``import offload`` loads no optional part.

The first two rules are read from the source with :mod:`ast` (nothing is imported), so type-only
imports and imports inside functions count like any other. Each finder returns every finding, so a
failing test lists them all at once.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "offload"

# Optional dependencies, and the standard library parts that only the process executors need.
OPTIONAL_MODULES = (
    "_pytest",
    "concurrent.futures.process",
    "dask",
    "distributed",
    "ellar",
    "esmerald",
    "fastapi",
    "hypern",
    "lilya",
    "litestar",
    "multiprocessing",
    "opentelemetry",
    "prometheus_client",
    "pytest",
    "ravyn",
    "starlette",
)

TOP_LEVEL = "top level"
TYPE_ONLY = "type-only"
IN_FUNCTION = "in a function"

# Underscore names that are public API of every named tuple (namedtuple, typing.NamedTuple).
NAMED_TUPLE_API = frozenset({"_asdict", "_field_defaults", "_fields", "_make", "_replace"})


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed module; a package's ``__init__.py`` is the module named after the package."""

    name: str
    path: Path
    is_package: bool
    tree: ast.Module


@dataclass(frozen=True, slots=True, order=True)
class Import:
    """One import, by module ``importer``, of module ``imported`` of the same package.

    ``name`` is the name taken from ``imported`` ("" when the module itself is imported); ``binds``
    is the local name the import binds, and ``binds_module`` the module that name refers to ("" when
    it binds another name).
    """

    importer: str
    line: int
    imported: str
    name: str
    binds: str
    binds_module: str
    kind: str


@dataclass(frozen=True, slots=True, order=True)
class PrivateUse:
    """A use, in ``module`` at ``line``, of an underscore name that belongs elsewhere."""

    module: str
    line: int
    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.name}  ({self.why})"


def find_modules(src: Path, package: str) -> dict[str, Module]:
    """Parse every module of *package* under the source root *src*, keyed by dotted name."""
    modules: dict[str, Module] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = Module(name, path, is_package, tree)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.AST, str]]:
    """Yield each node below *node* with when it runs: at import, for type checkers, or later."""
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for statements, branch_kind in ((node.body, TYPE_ONLY), (node.orelse, kind)):
            for statement in statements:
                yield statement, branch_kind
                yield from _walk(statement, branch_kind)
        return
    if kind == TOP_LEVEL and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        kind = IN_FUNCTION
    for child in ast.iter_child_nodes(node):
        yield child, kind
        yield from _walk(child, kind)


def _in_package(dotted: str, modules: Collection[str]) -> bool:
    """Return whether *dotted* names the package or something in it (its top is in *modules*)."""
    return dotted.partition(".")[0] in modules


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """Return the absolute name of the module a ``from ... import`` statement names."""
    if node.level == 0:
        return node.module or ""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    parts = package.split(".")
    if node.level - 1 >= len(parts):
        return ""  # beyond the top-level package: Python raises, and it names no module of ours
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: Module, modules: Collection[str]) -> list[Import]:
    """Return every import of the package's modules by *module*, wherever it stands in the file.

    ``imported`` is not one of *modules* when the import names a module that does not exist.
    """
    found: list[Import] = []
    for node, kind in _walk(module.tree, TOP_LEVEL):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _in_package(alias.name, modules):
                    continue  # not the package's
                # `import offload.x as x` binds offload.x; `import offload.x` binds offload
                bound = alias.name if alias.asname else alias.name.partition(".")[0]
                binds = alias.asname or bound
                binds_module = bound if bound in modules else ""
                found.append(
                    Import(module.name, node.lineno, alias.name, "", binds, binds_module, kind)
                )
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            if not source or not _in_package(source, modules):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                binds = alias.asname or alias.name
                if submodule in modules:
                    found.append(
                        Import(module.name, node.lineno, submodule, "", binds, submodule, kind)
                    )
                elif alias.name == "*":
                    found.append(Import(module.name, node.lineno, source, "", "", "", kind))
                else:
                    found.append(
                        Import(module.name, node.lineno, source, alias.name, binds, "", kind)
                    )
    return found


def missing_imports(modules: Mapping[str, Module]) -> list[str]:
    """Return each import of a module of the package that does not exist: ``module:line: name``."""
    return sorted(
        f"{found.importer}:{found.line}: {found.imported}"
        for module in modules.values()
        for found in imports_of(module, modules)
        if found.imported not in modules
    )


def import_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    """Return, for each module, the modules of the package it imports."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module in modules.values():
        graph[module.name].update(
            found.imported for found in imports_of(module, modules) if found.imported in modules
        )
    return graph


def import_cycles(graph: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Return every group of modules that import each other, each sorted (Tarjan's algorithm).

    A group is a strongly connected component with two or more modules, or one module that imports
    itself.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def _shortest_cycle(graph: Mapping[str, Collection[str]], start: str) -> list[str]:
    """Return a shortest path from *start* back to itself, as modules from start to start."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if target not in previous:
                previous[target] = node
                queue.append(target)
    return []


def describe_cycles(modules: Mapping[str, Module]) -> str:
    """Describe each import cycle: its members, a shortest loop, and the imports inside it."""
    graph = import_graph(modules)
    imports = {
        (found.importer, found.line, found.imported, found.kind)
        for module in modules.values()
        for found in imports_of(module, modules)
    }
    lines: list[str] = []
    for group in import_cycles(graph):
        members = set(group)
        lines.append(f"cycle of {len(group)} module(s): {', '.join(group)}")
        lines.append(f"  for example: {' -> '.join(_shortest_cycle(graph, group[0]))}")
        for importer, line, imported, kind in sorted(imports):
            if importer in members and imported in members:
                lines.append(f"  {importer}:{line} imports {imported} ({kind})")
    return "\n".join(lines)


def is_private(name: str) -> bool:
    """Return whether *name* is an underscore name: not a dunder, and not ``_`` alone."""
    return (
        name.startswith("_") and name != "_" and not (name.startswith("__") and name.endswith("__"))
    )


Definition: TypeAlias = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
Function: TypeAlias = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True, slots=True)
class Scope:
    """The classes and functions around a node, innermost last."""

    classes: tuple[ast.ClassDef, ...] = ()
    functions: tuple[Function, ...] = ()


def _names_assigned(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _names_assigned(element)


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in {"self", "cls"}


@functools.cache
def class_attributes(node: ast.ClassDef) -> frozenset[str]:
    """Return the attribute names a class defines: its body's names and slots, ``self.x = ...``."""
    defined: set[str] = set()
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(statement.name)
        elif isinstance(statement, ast.AnnAssign):
            defined.update(_names_assigned(statement.target))
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                names = set(_names_assigned(target))
                defined.update(names)
                if "__slots__" in names:
                    defined.update(
                        slot.value
                        for slot in ast.walk(statement.value)
                        if isinstance(slot, ast.Constant) and isinstance(slot.value, str)
                    )
    for inner in ast.walk(node):
        if isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store):
            if _is_self(inner.value):
                defined.add(inner.attr)
        elif (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name | ast.Attribute)
            and (inner.func.id if isinstance(inner.func, ast.Name) else inner.func.attr)
            in {"setattr", "__setattr__"}
            and len(inner.args) >= 2
            and _is_self(inner.args[0])
            and isinstance(inner.args[1], ast.Constant)
            and isinstance(inner.args[1].value, str)
        ):  # setattr(self, "_x", ...), and object.__setattr__(self, "_x", ...) in frozen classes
            defined.add(inner.args[1].value)
    return frozenset(defined)


def _field_annotations(node: ast.ClassDef) -> dict[str, ast.expr]:
    """Return the annotated attributes of a class: ``x: T`` in its body, ``self.x: T = ...``."""
    fields: dict[str, ast.expr] = {}
    for inner in ast.walk(node):
        if isinstance(inner, ast.AnnAssign):
            if isinstance(inner.target, ast.Name) and inner in node.body:
                fields[inner.target.id] = inner.annotation
            elif isinstance(inner.target, ast.Attribute) and _is_self(inner.target.value):
                fields[inner.target.attr] = inner.annotation
    return fields


def _local_annotations(node: ast.Module | Function) -> dict[str, ast.expr]:
    """Return the annotated names of a function (parameters, ``x: T = ...``) or module."""
    annotations: dict[str, ast.expr] = {}
    if isinstance(node, ast.Module):
        statements: Iterable[ast.AST] = node.body
    else:
        arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        annotations.update((arg.arg, arg.annotation) for arg in arguments if arg.annotation)
        statements = ast.walk(node)
    for statement in statements:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            annotations[statement.target.id] = statement.annotation
    return annotations


def _module_level_definitions(statements: Iterable[ast.AST]) -> Iterator[Definition]:
    """Yield the classes and functions a module defines at top level (under ``if``/``try`` too)."""
    for statement in statements:
        if isinstance(statement, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield statement
        else:
            for field in ("body", "orelse", "handlers", "finalbody"):
                yield from _module_level_definitions(getattr(statement, field, ()))


def _attributes(node: ast.AST, scope: Scope) -> Iterator[tuple[ast.Attribute, Scope]]:
    """Yield every attribute access below *node*, with the classes and functions around it."""
    for child in ast.iter_child_nodes(node):
        inner = scope
        if isinstance(child, ast.ClassDef):
            inner = Scope((*scope.classes, child), scope.functions)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = Scope(scope.classes, (*scope.functions, child))
        elif isinstance(child, ast.Attribute):
            yield child, scope
        yield from _attributes(child, inner)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class Package:
    """What the source of a package tells about its names: imports, classes, functions, types.

    :param modules: the package's modules, from :func:`find_modules`
    """

    def __init__(self, modules: Mapping[str, Module]) -> None:
        self.modules = modules
        self.imports = {name: imports_of(module, modules) for name, module in modules.items()}
        self.definitions = {
            name: {node.name: node for node in _module_level_definitions(module.tree.body)}
            for name, module in modules.items()
        }
        self.classes = {
            name: [node for node in ast.walk(module.tree) if isinstance(node, ast.ClassDef)]
            for name, module in modules.items()
        }
        self._owned: dict[str, frozenset[str]] = {}

    def aliases(self, module: str) -> dict[str, str]:
        """Return the names *module* binds to modules of the package."""
        return {
            found.binds: found.binds_module for found in self.imports[module] if found.binds_module
        }

    def module_of(self, module: str, node: ast.expr) -> str | None:
        """Return the module of the package that *node*, in *module*, refers to, if it names one."""
        if isinstance(node, ast.Name):
            return self.aliases(module).get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.module_of(module, node.value)
            if base is not None and f"{base}.{node.attr}" in self.modules:
                return f"{base}.{node.attr}"
        return None

    def find(self, module: str, name: str) -> tuple[str, Definition] | None:
        """Return where the class or function that *name* means in *module* is defined."""
        seen: set[tuple[str, str]] = set()
        while (module, name) not in seen:
            seen.add((module, name))
            if name in self.definitions.get(module, {}):
                return module, self.definitions[module][name]
            imported = [found for found in self.imports.get(module, ()) if found.binds == name]
            if not imported or not imported[0].name:
                return None
            module, name = imported[0].imported, imported[0].name  # follow a re-export
        return None

    def resolve(self, module: str, node: ast.expr) -> tuple[str, Definition] | None:
        """Return the definition that the expression *node* (``Name`` or ``alias.Name``) names."""
        if isinstance(node, ast.Name):
            return self.find(module, node.id)
        if isinstance(node, ast.Attribute):
            owner = self.module_of(module, node.value)
            if owner is not None:
                return self.find(owner, node.attr)
        return None

    def class_of(self, module: str, annotation: ast.expr) -> tuple[str, ast.ClassDef] | None:
        """Return the class of the package an annotation in *module* names (``T | None`` too)."""
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                annotation = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
            return self.class_of(module, annotation.left) or self.class_of(module, annotation.right)
        if isinstance(annotation, ast.Subscript):  # Supervisor[T], Optional[Runtime]
            inner = annotation.slice
            arguments = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            for candidate in (annotation.value, *arguments):
                found = self.class_of(module, candidate)
                if found is not None:
                    return found
            return None
        definition = self.resolve(module, annotation)
        if definition is not None and isinstance(definition[1], ast.ClassDef):
            return definition[0], definition[1]
        return None

    def lineage(self, module: str, cls: ast.ClassDef) -> list[tuple[str, ast.ClassDef]]:
        """Return the class and its ancestors that the package defines, depth first."""
        found: list[tuple[str, ast.ClassDef]] = []
        pending = [(module, cls)]
        while pending:
            module, cls = pending.pop()
            if all(cls is not seen for _, seen in found):
                found.append((module, cls))
                bases = [self.class_of(module, base) for base in cls.bases]
                pending.extend(base for base in reversed(bases) if base is not None)
        return found

    def owner(self, module: str, cls: ast.ClassDef, attribute: str) -> str | None:
        """Return ``module.Class`` of the most basic class of the lineage defining *attribute*."""
        owners = [
            f"{owner}.{ancestor.name}"
            for owner, ancestor in self.lineage(module, cls)
            if attribute in class_attributes(ancestor)
        ]
        return owners[-1] if owners else None

    def owned(self, module: str) -> frozenset[str]:
        """Return the attributes *module* defines and no class of another module defined first."""
        if module not in self._owned:
            self._owned[module] = frozenset(
                attribute
                for cls in self.classes[module]
                for attribute in class_attributes(cls)
                if (self.owner(module, cls, attribute) or "").rpartition(".")[0] == module
            )
        return self._owned[module]

    def receiver(
        self, module: str, node: ast.expr, scope: Scope
    ) -> tuple[str, ast.ClassDef] | None:
        """Return the class of the package that *node* is an instance of (or is), when the code
        tells: ``self``, ``super()``, an annotated name or field, a call's return annotation.
        """
        if isinstance(node, ast.Name):
            if _is_self(node) and scope.classes:
                return module, scope.classes[-1]
            for around in (*reversed(scope.functions), self.modules[module].tree):
                annotation = _local_annotations(around).get(node.id)
                if annotation is not None:
                    return self.class_of(module, annotation)
            definition = self.find(module, node.id)
        elif isinstance(node, ast.Attribute):
            outer = self.receiver(module, node.value, scope)
            for owner, ancestor in self.lineage(*outer) if outer is not None else ():
                annotation = _field_annotations(ancestor).get(node.attr)
                if annotation is not None:
                    return self.class_of(owner, annotation)
            definition = self.resolve(module, node)
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "super" and scope.classes:
                return module, scope.classes[-1]
            called = self.resolve(module, node.func)
            if called is not None and isinstance(called[1], ast.ClassDef):
                return called[0], called[1]  # an instance of it
            if called is None and isinstance(node.func, ast.Attribute):
                outer = self.receiver(module, node.func.value, scope)
                for owner, ancestor in self.lineage(*outer) if outer is not None else ():
                    methods = _module_level_definitions(ancestor.body)
                    called = next(((owner, m) for m in methods if m.name == node.func.attr), None)
                    if called is not None:
                        break
            if called is not None and not isinstance(called[1], ast.ClassDef) and called[1].returns:
                return self.class_of(called[0], called[1].returns)
            return None
        else:
            return None
        if definition is not None and isinstance(definition[1], ast.ClassDef):
            return definition[0], definition[1]  # the class itself: Runtime._x
        return None

    def private_uses(self, module: str) -> list[PrivateUse]:
        """Return every use, in *module*, of an underscore name that another module owns.

        Decidable cases only: (a) ``from <module> import _name``; (b) ``<module alias>._name``;
        (c) ``obj._name`` where ``self`` or annotations show that ``obj`` is an instance of a
        class of the package, and a class of another module defines ``_name`` first (so a
        subclass that sets its base's ``_name`` counts); (d) otherwise, ``obj._name`` where
        *module* defines no attribute ``_name`` (attributes of modules from outside the package,
        like ``os._exit``, are left alone). Importing a private *module* (``_worker``) is fine.
        """
        uses = [
            PrivateUse(module, found.line, found.name, f"imported from {found.imported}")
            for found in self.imports[module]
            if found.name and is_private(found.name) and found.imported != module
        ]
        outside = _names_from_other_packages(self.modules[module], self.modules)
        outside -= set(self.aliases(module))
        for node, scope in _attributes(self.modules[module].tree, Scope()):
            name = node.attr
            if not is_private(name) or name in NAMED_TUPLE_API:
                continue
            owner_module = self.module_of(module, node.value)
            if owner_module is not None:
                if owner_module != module and f"{owner_module}.{name}" not in self.modules:
                    uses.append(PrivateUse(module, node.lineno, name, f"a name of {owner_module}"))
                continue
            receiver = self.receiver(module, node.value, scope)
            owner = self.owner(*receiver, name) if receiver is not None else None
            if owner is not None:
                if owner.rpartition(".")[0] != module:
                    uses.append(PrivateUse(module, node.lineno, name, f"an attribute of {owner}"))
                continue
            if name not in self.owned(module) and _root_name(node.value) not in outside:
                others = [other for other in self.modules if name in self.owned(other)]
                why = f"an attribute of {', '.join(others)}" if others else "not defined here"
                uses.append(PrivateUse(module, node.lineno, name, why))
        return sorted(set(uses))  # one line per name and line


def _names_from_other_packages(module: Module, modules: Collection[str]) -> set[str]:
    """Return the names *module* binds by importing from outside the package (``os``, ``sys``)."""
    names: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _in_package(alias.name, modules):
                    names.add(alias.asname or alias.name.partition(".")[0])
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and not _in_package(node.module or "", modules)
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def all_private_uses(modules: Mapping[str, Module]) -> list[PrivateUse]:
    """Return the uses of other modules' underscore names in every module of *modules*."""
    package = Package(modules)
    return [use for module in modules for use in package.private_uses(module)]


_IMPORT_TIME = re.compile(r"^import time:\s*\d+ \|\s*\d+ \| (?P<indent> *)(?P<name>\S+)\s*$")

_PROBE = """\
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
__import__(sys.argv[2])  # importlib.import_module would hide the package itself from -X importtime
module = sys.modules[sys.argv[2]]
new = sorted(set(sys.modules) - before)
print(json.dumps({"file": module.__file__, "new": new}))
"""


@dataclass(frozen=True, slots=True)
class ImportProbe:
    """What importing a package in a fresh interpreter loaded."""

    file: str
    loaded: frozenset[str]  # every module the import loaded
    offenders: dict[str, list[str]]  # each unwanted module with the chain of imports that loaded it


def _import_chains(stderr: str) -> dict[str, list[str]]:
    """Return, for each module in ``-X importtime`` output, the imports that led to it."""
    rows = [
        (len(match["indent"]) // 2, match["name"])
        for line in stderr.splitlines()
        if (match := _IMPORT_TIME.match(line))
    ]
    chains: dict[str, list[str]] = {}
    for index, (depth, name) in enumerate(rows):
        chain, level = [name], depth
        for outer_depth, outer_name in rows[index + 1 :]:  # a module is listed after its imports
            if outer_depth < level:
                chain.append(outer_name)
                level = outer_depth
        chains.setdefault(name, chain[::-1])
    return chains


def probe_import(package: str, path: Path, unwanted: Collection[str]) -> ImportProbe:
    """Import *package* from *path* in a new interpreter; report the *unwanted* modules it loads."""
    env = {
        key: value
        for key, value in os.environ.items()
        # Coverage's startup hook would import multiprocessing before the package does.
        if key not in {"COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"}
    }
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _PROBE, str(path), package],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    if result.returncode != 0:
        errors = [
            line for line in result.stderr.splitlines() if not line.startswith("import time:")
        ]
        raise AssertionError(f"import {package} failed:\n" + "\n".join(errors[-20:]))
    outcome = json.loads(result.stdout.splitlines()[-1])
    chains = _import_chains(result.stderr)
    offenders = {
        name: chains.get(name, [name]) for name in sorted(set(outcome["new"]) & set(unwanted))
    }
    return ImportProbe(outcome["file"], frozenset(outcome["new"]), offenders)


def importers(modules: Mapping[str, Module], name: str) -> list[str]:
    """Return ``module:line`` of each import of module *name* (or of a submodule of it) that runs
    when its module is imported: not in a function, not for type checkers only.
    """
    found: list[str] = []
    for module in modules.values():
        for node, kind in _walk(module.tree, TOP_LEVEL):
            if kind != TOP_LEVEL:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            if any(target == name or target.startswith(f"{name}.") for target in targets):
                found.append(f"{module.name}:{node.lineno}")
    return found


def describe_optional_imports(probe: ImportProbe, modules: Mapping[str, Module]) -> str:
    """Describe each unwanted module: the chain that loaded it first, and every module, among those
    the import loaded, that imports it when loaded.
    """
    lines: list[str] = []
    for name, chain in probe.offenders.items():
        lines.append(f"{name}: first loaded by {' > '.join(chain)}")
        loaded = [
            where for where in importers(modules, name) if where.split(":")[0] in probe.loaded
        ]
        if loaded:
            lines.append(f"  imported at load time by {', '.join(loaded)}")
    return "\n".join(lines)


def test_the_import_graph_has_no_cycle() -> None:
    modules = find_modules(SRC, PACKAGE)
    graph = import_graph(modules)
    assert PACKAGE in modules
    assert any(graph.values()), "found no import between modules of the package: is SRC right?"
    missing = [f"{where}  (no such module)" for where in missing_imports(modules)]
    report = "\n".join([*missing, describe_cycles(modules)]).strip()
    assert not report, report


def test_no_module_uses_another_modules_private_names() -> None:
    uses = all_private_uses(find_modules(SRC, PACKAGE))
    assert not uses, "underscore names used outside their module:\n" + "\n".join(map(str, uses))


def test_import_offload_imports_no_optional_part() -> None:
    probe = probe_import(PACKAGE, SRC, OPTIONAL_MODULES)
    assert Path(probe.file).is_relative_to(SRC / PACKAGE)
    report = describe_optional_imports(probe, find_modules(SRC, PACKAGE))
    assert not probe.offenders, f"import {PACKAGE} loads optional parts:\n{report}"
