"""The file graph of core/src: a .c file points at another when it calls a function defined
there, a file at a header it includes. Fails, naming the files, on a cycle: each file of the
library sits above the ones it uses, so each can be read (and changed) knowing only those.
Usage: call_graph.py CORE_SRC_DIR"""
import os
import re
import sys

DEF = re.compile(r"^(?!static\b)[A-Za-z_][\w \*]*?\b(cuipc_\w+)\s*\([^;]*$", re.M)
CALL = re.compile(r"\b(cuipc_\w+)\s*\(")
INCLUDE = re.compile(r'^#include "([^"]+)"', re.M)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def graph(src):
    files = sorted(f for f in os.listdir(src) if f.endswith((".c", ".h", ".cu")))
    text = {f: strip_comments(open(os.path.join(src, f)).read()) for f in files}
    defined = {}
    for f in files:
        if f.endswith(".h"):
            continue
        for name in DEF.findall(text[f]):
            defined.setdefault(name, f)
    edges = {f: set() for f in files}
    for f in files:
        for inc in INCLUDE.findall(text[f]):
            if inc in edges and inc != f:
                edges[f].add(inc)
        if f.endswith(".h"):
            continue
        for name in CALL.findall(text[f]):
            g = defined.get(name)
            if g and g != f:
                edges[f].add(g)
    return edges


def cycles(edges):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    edges = graph(sys.argv[1])
    found = cycles(edges)
    for comp in found:
        links = [f"{a} -> {b}" for a in comp for b in sorted(edges[a]) if b in comp]
        print("cycle among " + ", ".join(comp) + ": " + "; ".join(links))
    calls = sum(len(e) for e in edges.values())
    print(f"{len(edges)} files, {calls} edges, {len(found)} cycle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
